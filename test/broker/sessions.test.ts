import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  connectClient,
  httpCall,
  MCP_HEADERS,
  rpc,
  startGateway,
  waitFor,
  type Gateway,
} from "../e2e/harness.js";
import { demoRegistry } from "./support.js";

/**
 * Gateway-owned sessions of the aggregated endpoint and the hop identity: two edge replicas with
 * the same sessions.keys serve one session; another agent's id is unknown; a hop identity works
 * only for its server and only on /mcp/<server>; every hop is audited like a direct call.
 */
const KEY_ENV = "MCP_GW_TEST_BROKER_KEY";

describe("aggregated sessions and hops", () => {
  let demo: Awaited<ReturnType<typeof demoRegistry>>;
  let a: Gateway;
  let b: Gateway;
  beforeAll(async () => {
    process.env[KEY_ENV] = "broker-test-key-0123456789-abcdefghijklmnop";
    demo = await demoRegistry();
    const spec = {
      servers: demo.servers,
      roles: {
        all: { rules: [{ effect: "allow", tools: ["*/*"], prompts: ["*/*"], resources: ["*/**"] }] },
        kb: { rules: [{ effect: "allow", tools: ["kb/*"], prompts: ["kb/*"], resources: ["kb/**"] }] },
      },
      agents: { tester: { roles: ["all"] }, reader: { roles: ["kb"] } },
      sessions: { keys: [{ env: KEY_ENV }] },
      config: {
        broker: {
          views: {
            search: { servers: ["kb", "tickets"], tools: ["kb/search_articles", "tickets/*"] },
            kb: { servers: ["kb"], prefix: false },
          },
        },
      },
    };
    [a, b] = await Promise.all([startGateway(spec), startGateway(spec)]);
  });
  afterAll(async () => {
    await Promise.allSettled([a?.close(), b?.close()]);
    await demo?.close();
    delete process.env[KEY_ENV];
  });

  it("two agents see different views; a view narrows further", async () => {
    const tester = await connectClient(`${a.edge.url}/mcp`, await a.token("tester"));
    const reader = await connectClient(`${a.edge.url}/mcp`, await a.token("reader"));
    const view = await connectClient(`${a.edge.url}/mcp/views/search`, await a.token("tester"));
    try {
      const names = async (c: typeof tester) => (await c.client.listTools()).tools.map((t) => t.name).sort();
      expect(await names(tester)).toEqual(
        expect.arrayContaining(["deploy__deploy_service", "kb__get_article", "tickets__delete_ticket"]),
      );
      expect(await names(reader)).toEqual(["kb__get_article", "kb__search_articles"]);
      expect(await names(view)).toEqual([
        "kb__search_articles",
        "tickets__create_ticket",
        "tickets__delete_ticket",
        "tickets__get_ticket",
        "tickets__list_tickets",
      ]);
      // Not in the reader's view: unknown, as at /mcp/<server>.
      await expect(
        reader.client.callTool({ name: "tickets__list_tickets", arguments: {} }),
      ).rejects.toMatchObject({ data: { reason: "tool_unknown" } });
      await expect(
        view.client.callTool({ name: "kb__get_article", arguments: { id: "kb-101" } }),
      ).rejects.toMatchObject({ data: { reason: "tool_unknown" } });
    } finally {
      await Promise.all([tester.close(), reader.close(), view.close()]);
    }
  });

  it("a session opened on one replica is served by the other; another agent's id is unknown", async () => {
    const first = await connectClient(`${a.edge.url}/mcp`, await a.token("tester"));
    const sessionId = first.transport.sessionId!;
    expect(sessionId).toMatch(/^g1\./);
    await first.client.callTool({ name: "tickets__create_ticket", arguments: { title: "moved session" } });

    const moved = new Client({ name: "moved", version: "1.0.0" });
    const transport = new StreamableHTTPClientTransport(new URL(`${b.edge.url}/mcp`), {
      sessionId,
      requestInit: { headers: { authorization: `Bearer ${await b.token("tester")}` } },
    });
    await moved.connect(transport);
    const r = await moved.listTools();
    expect(r.tools.map((t) => t.name)).toContain("kb__search_articles");
    const listed = await moved.callTool({ name: "tickets__list_tickets", arguments: {} });
    expect(JSON.stringify(listed.content)).toContain("moved session");

    const foreign = await httpCall(`${b.edge.url}/mcp`, {
      headers: {
        ...MCP_HEADERS,
        authorization: `Bearer ${await b.token("reader")}`,
        "mcp-session-id": sessionId,
        "mcp-protocol-version": "2025-11-25",
      },
      body: rpc("tools/list"),
    });
    expect(foreign.status).toBe(404);
    expect(foreign.messages[0]).toMatchObject({ error: { data: { reason: "session_unknown" } } });
    await Promise.all([first.close(), moved.close()]);
  });

  it("each hop is decided and audited at /mcp/<server>: server and unprefixed tool", async () => {
    const mcp = await connectClient(`${a.edge.url}/mcp`, await a.token("tester"));
    try {
      await mcp.client.callTool({ name: "kb__search_articles", arguments: { query: "refund" } });
      await waitFor(() => a.log.audits.some((r) => r.server === "kb" && r.tools.includes("search_articles")));
      const hop = a.log.audits.find((r) => r.server === "kb" && r.tools.includes("search_articles"))!;
      expect(hop).toMatchObject({ agent: "tester", decision: "allow", counters: { via_broker: 1 } });
    } finally {
      await mcp.close();
    }
  });

  it("a hop identity opens only on its own server's route, never on /mcp; forgeries are refused", async () => {
    const principal = {
      agent: "tester",
      roles: ["all"],
      claims: {},
      issuer: "mcp-gateway-dev",
      anonymous: false,
    };
    const forKb = a.engine.hopTokens.mint(principal, "kb");
    const call = (path: string, token: string) =>
      httpCall(`${a.edge.url}${path}`, {
        headers: { ...MCP_HEADERS, authorization: `Bearer ${token}` },
        body: rpc("initialize", {
          protocolVersion: "2025-11-25",
          capabilities: {},
          clientInfo: { name: "t", version: "1" },
        }),
      });
    expect((await call("/mcp/kb", forKb)).status).toBe(200);
    for (const [path, token] of [
      ["/mcp/tickets", forKb],
      ["/mcp", forKb],
      ["/mcp/kb", `${forKb.slice(0, -2)}AA`],
      ["/mcp/kb", "g1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"],
    ] as const) {
      const r = await call(path, token);
      expect(r.status, path).toBe(401);
      expect(r.messages[0], path).toMatchObject({ error: { data: { reason: "hop_token_invalid" } } });
    }
  });

  it("a one-server view with prefix: false serves the server's own names, still per agent", async () => {
    const tester = await connectClient(`${a.edge.url}/mcp/views/kb`, await a.token("tester"));
    try {
      expect((await tester.client.listTools()).tools.map((t) => t.name).sort()).toEqual([
        "get_article",
        "search_articles",
      ]);
      const r = await tester.client.callTool({ name: "search_articles", arguments: { query: "refund" } });
      expect(JSON.stringify(r.content)).toContain("kb-102");
      expect((await tester.client.listResources()).resources.map((r) => r.uri)).toContain("kb://style-guide");
      const read = await tester.client.readResource({ uri: "kb://style-guide" });
      expect(read.contents[0]!.uri).toBe("kb://style-guide");
      // A prefixed name is no name of this view's server.
      await expect(
        tester.client.callTool({ name: "kb__search_articles", arguments: { query: "x" } }),
      ).rejects.toMatchObject({ data: { reason: "tool_unknown" } });
    } finally {
      await tester.close();
    }
  });

  it("an unknown view is 404 like an unknown server", async () => {
    const r = await httpCall(`${a.edge.url}/mcp/views/nope`, {
      headers: { ...MCP_HEADERS, authorization: `Bearer ${await a.token("tester")}` },
      body: rpc("tools/list"),
    });
    expect(r.status).toBe(404);
    expect(r.messages[0]).toMatchObject({ error: { data: { reason: "server_unknown" } } });
  });
});
