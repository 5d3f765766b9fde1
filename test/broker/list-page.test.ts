import {
  Client as ClientV2,
  StreamableHTTPClientTransport as TransportV2,
} from "@modelcontextprotocol/client";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { ListPromptsRequestSchema, ListToolsRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { listPageProblem } from "../../ext-service/src/broker/list-page.js";
import type { AuditRecord } from "../../ext-service/src/telemetry/audit.js";
import { serveMcp, type RunningServer } from "../../examples/servers/http.js";
import { connectClient, startGateway, waitFor, type Gateway } from "../e2e/harness.js";

/**
 * The broker checks each page of a server's list by hand (broker/list-page.ts) instead of by the
 * SDK client's schema of the method, which walked every tool definition and was half the cost of
 * an uncached tools/list through /mcp. A page the per-server path passes but that is malformed
 * (fields it does not look at: not pinned, not filtered) must still be refused as a whole: the
 * server is left out of the aggregate, the log says what was wrong and where, the broker's audit
 * record counts the server left out, and the per-server path's own record of the hop is there.
 */

const SCHEMA = { type: "object", properties: { q: { type: "string" } } };
const TOOLS = [
  { name: "search", description: "Searches.", inputSchema: SCHEMA },
  { name: "fetch", description: "Fetches.", inputSchema: SCHEMA },
];

/** A 2025 server (SDK 1.x) whose lists are what the test says; good or not. */
async function listServer(lists: { tools: unknown[]; prompts: unknown[] }): Promise<RunningServer> {
  return serveMcp(() => {
    const mcp = new McpServer({ name: "lists", version: "1.0.0" });
    mcp.server.registerCapabilities({ tools: {}, prompts: {} });
    mcp.server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: lists.tools }) as never);
    mcp.server.setRequestHandler(ListPromptsRequestSchema, () => ({ prompts: lists.prompts }) as never);
    return mcp;
  }, 0);
}

describe("list pages checked by the broker (broker/list-page.ts)", () => {
  let good: RunningServer;
  let bad: RunningServer;
  let gw: Gateway;
  beforeAll(async () => {
    good = await listServer({ tools: TOOLS, prompts: [{ name: "summary", arguments: [{ name: "topic" }] }] });
    bad = await listServer({
      // Pinned fields as registered (the pin matches); `execution` is not pinned, and malformed.
      tools: [TOOLS[0], { ...TOOLS[1], execution: { taskSupport: "sometimes" } }],
      // Prompts are neither pinned nor checked beyond their names by the per-server path.
      prompts: [{ name: "summary", arguments: [{ description: "no name" }] }],
    });
    gw = await startGateway({
      servers: [
        { name: "good", upstreams: [good.url], tools: TOOLS },
        { name: "bad", upstreams: [bad.url], tools: TOOLS },
      ],
      config: { broker: { lists: { ttl: 0 } } },
    });
  });
  afterAll(async () => {
    await gw?.close();
    await Promise.allSettled([good?.close(), bad?.close()]);
  });

  /** The log's word on `bad` left out of a `kind` list, from line `from` on. */
  async function leftOut(from: number, kind: string): Promise<Record<string, unknown>> {
    let line: Record<string, unknown> | undefined;
    await waitFor(() => {
      line = gw.log.lines
        .slice(from)
        .find((l) => l.msg === "aggregated endpoint: server left out of the view" && l.method === kind);
      return line !== undefined;
    });
    return line!;
  }

  /** The broker's own audit records (the aggregated endpoint's, not a hop's) from `from` on. */
  const brokerRecords = (from: number): AuditRecord[] =>
    gw.log.lines
      .slice(from)
      .filter((l) => l.audit === true && (l.counters as Record<string, number>).aggregated === 1) as never;

  /** The per-server path's records of the hops' lists to `bad`, from `from` on. */
  const hopRecords = (from: number, method: string): AuditRecord[] =>
    gw.log.lines
      .slice(from)
      .filter(
        (l) => l.audit === true && l.server === "bad" && (l.methods as string[]).includes(method),
      ) as never;

  async function expectLeftOut(from: number, list: () => Promise<string[]>): Promise<void> {
    expect(await list()).toEqual(["good__fetch", "good__search"]);
    const tools = await leftOut(from, "tools");
    expect(tools).toMatchObject({ server: "bad", error: "The MCP server sent an invalid response" });
    expect(tools.cause).toContain("Invalid result for tools/list");
    expect(tools.cause).toContain('tools[1].execution.taskSupport must be one of "required", "optional"');
    await waitFor(() => brokerRecords(from).some((r) => r.counters["left_out:bad"] === 1));
    const record = brokerRecords(from).find((r) => r.counters["left_out:bad"] === 1)!;
    expect(record).toMatchObject({ decision: "allow", methods: ["tools/list"], server: null });
    // The per-server path passed the page (its checks hold: names, pins), and said so.
    expect(hopRecords(from, "tools/list")).toMatchObject([{ decision: "allow", status: 200 }]);
  }

  it("1.x client: a malformed tools/list or prompts/list page leaves its server out, logged and audited", async () => {
    const from = gw.log.lines.length;
    const mcp = await connectClient(`${gw.edge.url}/mcp`, await gw.token("tester"));
    try {
      await expectLeftOut(from, async () => (await mcp.client.listTools()).tools.map((t) => t.name).sort());
      const prompts = (await mcp.client.listPrompts()).prompts.map((p) => p.name);
      expect(prompts).toEqual(["good__summary"]);
      const line = await leftOut(from, "prompts");
      expect(line.cause).toContain("prompts[0].arguments[0].name is missing");
      expect(hopRecords(from, "prompts/list")).toMatchObject([{ decision: "allow" }]);
    } finally {
      await mcp.close();
    }
  });

  it("2.x client at 2026-07-28: the same (the hop falls back to a 2025 session of the server)", async () => {
    const from = gw.log.lines.length;
    const client = new ClientV2(
      { name: "v2", version: "1.0.0" },
      { versionNegotiation: { mode: { pin: "2026-07-28" } } },
    );
    await client.connect(
      new TransportV2(new URL(`${gw.edge.url}/mcp`), {
        requestInit: { headers: { authorization: `Bearer ${await gw.token("tester")}` } },
      }),
    );
    try {
      await expectLeftOut(from, async () => (await client.listTools()).tools.map((t) => t.name).sort());
    } finally {
      await client.close();
    }
  });
});

describe("listPageProblem", () => {
  const tool = { name: "t", inputSchema: { type: "object" } };
  it("takes a page the SDK's 2025-11-25 schema takes, optional fields included", () => {
    const full = {
      ...tool,
      title: "T",
      description: "d",
      icons: [{ src: "https://x/i.png", mimeType: "image/png", sizes: ["16x16"], theme: "dark" }],
      inputSchema: { type: "object", properties: { a: { type: ["string", "null"] } }, required: ["a"] },
      outputSchema: { type: "object" },
      annotations: { title: "T", readOnlyHint: true, openWorldHint: false },
      execution: { taskSupport: "optional" },
      _meta: { k: 1 },
      extra: "not named by the schema: passed on",
    };
    expect(listPageProblem("tools", { tools: [full], nextCursor: "c", _meta: {} })).toBeUndefined();
    expect(
      listPageProblem("resources", {
        resources: [
          {
            uri: "file:///a",
            name: "a",
            size: 3,
            annotations: { audience: ["user"], priority: 0.5, lastModified: "2024-02-29T10:00:00.5+02:00" },
          },
        ],
      }),
    ).toBeUndefined();
    expect(
      listPageProblem("resourceTemplates", {
        resourceTemplates: [{ uriTemplate: "file:///{x}", name: "x" }],
      }),
    ).toBeUndefined();
    expect(
      listPageProblem("prompts", { prompts: [{ name: "p", arguments: [{ name: "a", required: true }] }] }),
    ).toBeUndefined();
  });

  it("names the first problem and where it is", () => {
    const cases: [Parameters<typeof listPageProblem>[0], unknown, string][] = [
      ["tools", [], "the result must be an object"],
      ["tools", {}, "tools is missing"],
      ["tools", { tools: {} }, "tools must be an array"],
      ["tools", { tools: [tool], nextCursor: 2 }, "nextCursor must be a string"],
      ["tools", { tools: [tool, null] }, "tools[1] must be an object"],
      ["tools", { tools: [{ name: "t" }] }, "tools[0].inputSchema is missing"],
      ["tools", { tools: [{ ...tool, name: 5 }] }, "tools[0].name must be a string"],
      [
        "tools",
        { tools: [{ ...tool, inputSchema: { type: "string" } }] },
        'tools[0].inputSchema.type must be "object"',
      ],
      [
        "tools",
        { tools: [{ ...tool, inputSchema: { type: "object", required: [1] } }] },
        "tools[0].inputSchema.required[0] must be a string",
      ],
      ["tools", { tools: [{ ...tool, description: null }] }, "tools[0].description must be a string"],
      [
        "tools",
        { tools: [{ ...tool, icons: [{ mimeType: "image/png" }] }] },
        "tools[0].icons[0].src is missing",
      ],
      [
        "tools",
        { tools: [{ ...tool, annotations: { readOnlyHint: "yes" } }] },
        "tools[0].annotations.readOnlyHint must be a boolean",
      ],
      ["resources", { resources: [{ uri: "a:b" }] }, "resources[0].name is missing"],
      [
        "resources",
        { resources: [{ uri: "a:b", name: "b", annotations: { priority: 2 } }] },
        "resources[0].annotations.priority must be a number from 0 to 1",
      ],
      [
        "resources",
        { resources: [{ uri: "a:b", name: "b", annotations: { lastModified: "2025-02-29T10:00:00Z" } }] },
        "resources[0].annotations.lastModified must be an RFC 3339 date-time",
      ],
      [
        "resources",
        { resources: [{ uri: "a:b", name: "b", annotations: { audience: ["bot"] } }] },
        'resources[0].annotations.audience[0] must be one of "user", "assistant"',
      ],
      [
        "resourceTemplates",
        { resourceTemplates: [{ name: "x", uriTemplate: 1 }] },
        "resourceTemplates[0].uriTemplate must be a string",
      ],
      ["prompts", { prompts: [{ name: "p", arguments: {} }] }, "prompts[0].arguments must be an array"],
    ];
    for (const [kind, page, problem] of cases) expect(listPageProblem(kind, page), problem).toBe(problem);
  });
});
