import {
  Client as ClientV2,
  StreamableHTTPClientTransport as TransportV2,
} from "@modelcontextprotocol/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEnvoyRoleFront, type EnvoyRoleFront } from "../../ext-service/src/envoy/envoy-role-front.js";
import {
  connectClient,
  fakeUpstream,
  httpCall,
  MCP_HEADERS,
  rpc,
  startGateway,
  type Gateway,
} from "../e2e/harness.js";

/**
 * A gateway relays the server's tools/call result as the server sent it, once the per-server
 * policy has inspected it: the broker's hop takes it with broker/call-result.ts's shallow check,
 * not the SDK client's schema of the method, and the aggregate's SDK server sends it as it is
 * (handlers.ts AggregateServer). Before, both parsed every result again (a deep walk of a large
 * one) and the server's dropped what its schema does not name: a content part's own fields, and a
 * content part of a kind it does not know refused the whole call. An agent speaking JSON-RPC
 * itself sees the difference; the SDK clients (which drop such fields themselves) must still get
 * what a client of /mcp/raw gets.
 */

const RESULT = {
  content: [{ type: "text", text: "hello", annotations: { audience: ["user"] }, "x-vendor-part": 7 }],
  structuredContent: { answer: 42, deep: { list: [1, { two: 2 }] } },
  _meta: { "example.com/trace": "t-1" },
  vendorField: { kept: true, list: ["a", "b"] },
};

/** A result with a content part of a kind no SDK schema knows (a newer revision's, or a vendor's). */
const FUTURE = {
  content: [
    { type: "text", text: "a chart follows" },
    { type: "x-vendor/chart", series: [{ x: 1, y: 2 }] },
  ],
  _meta: { "example.com/trace": "t-2" },
};

/**
 * A 2025 server (stateless, JSON answers) that sends RESULT and FUTURE as they are: the SDK's own
 * server checks its results against its schema, and would refuse FUTURE before it left.
 */
function rawServer(): ReturnType<typeof fakeUpstream> {
  return fakeUpstream((req, res) => {
    if (req.method !== "POST") return void res.writeHead(405).end();
    let body = "";
    req.on("data", (chunk: Buffer) => (body += chunk.toString()));
    req.on("end", () => {
      const message = JSON.parse(body) as { id?: unknown; method: string; params?: { name?: string } };
      if (message.id === undefined) return void res.writeHead(202).end();
      const result =
        message.method === "initialize"
          ? {
              protocolVersion: "2025-06-18",
              capabilities: { tools: {} },
              serverInfo: { name: "raw", version: "1" },
            }
          : message.method === "tools/list"
            ? {
                tools: [
                  { name: "raw", inputSchema: { type: "object" } },
                  { name: "future", inputSchema: { type: "object" } },
                ],
              }
            : message.method === "tools/call"
              ? message.params?.name === "future"
                ? FUTURE
                : RESULT
              : undefined;
      res.writeHead(200, { "content-type": "application/json" });
      res.end(
        JSON.stringify(
          result === undefined
            ? { jsonrpc: "2.0", id: message.id, error: { code: -32601, message: "Method not found" } }
            : { jsonrpc: "2.0", id: message.id, result },
        ),
      );
    });
  });
}

describe.each(["edge", "envoy"] as const)("tools/call results relayed raw, %s plane", (plane) => {
  let upstream: Awaited<ReturnType<typeof fakeUpstream>>;
  let gw: Gateway;
  let front: EnvoyRoleFront | undefined;
  beforeAll(async () => {
    upstream = await rawServer();
    gw = await startGateway({
      servers: [{ name: "raw", upstreams: [upstream.url], tools: [{ name: "raw" }, { name: "future" }] }],
      security: { pins: { enforce: false, verifyBeforeCall: false } },
    });
    if (plane === "envoy")
      front = await startEnvoyRoleFront({
        extService: { engine: gw.engine, logger: gw.log.logger, metrics: gw.metrics },
      });
  });
  afterAll(async () => {
    await front?.close();
    await gw?.close();
    await upstream?.close();
  });
  const origin = () => front?.url ?? gw.edge.url;

  /**
   * What of RESULT the agent must see: what the server sent, as a client of /mcp/raw gets it
   * (`direct`; the agent's own SDK may drop a content part's fields it does not know).
   */
  function expectRaw(result: Record<string, unknown>, direct: Record<string, unknown>): void {
    expect(direct.vendorField).toEqual(RESULT.vendorField);
    // The aggregate's own identity (2026-07-28 `_meta` serverInfo) aside.
    const meta = { ...(result._meta as Record<string, unknown>) };
    delete meta["io.modelcontextprotocol/serverInfo"];
    const directMeta = { ...(direct._meta as Record<string, unknown>) };
    delete directMeta["io.modelcontextprotocol/serverInfo"];
    expect({ ...result, _meta: meta }).toEqual({ ...direct, _meta: directMeta });
    expect(result.structuredContent).toEqual(RESULT.structuredContent);
    expect(result.vendorField).toEqual(RESULT.vendorField);
    expect((result._meta as Record<string, unknown> | undefined)?.["example.com/trace"]).toBe("t-1");
  }

  it("1.x client (2025 session): what a client of /mcp/raw gets", async () => {
    const mcp = await connectClient(`${origin()}/mcp`, await gw.token("tester"));
    try {
      const direct = await connectClient(`${origin()}/mcp/raw`, await gw.token("tester"));
      try {
        expectRaw(
          (await mcp.client.callTool({ name: "raw__raw", arguments: {} })) as never,
          (await direct.client.callTool({ name: "raw", arguments: {} })) as never,
        );
      } finally {
        await direct.close();
      }
    } finally {
      await mcp.close();
    }
  });

  it("v2 client (2026-07-28, the hop falls back to a 2025 session): what a client of /mcp/raw gets", async () => {
    // The aggregate speaks 2026-07-28; the server itself only 2025.
    const connect = async (path: string) => {
      const client = new ClientV2(
        { name: "v2", version: "1.0.0" },
        { versionNegotiation: { mode: path === "/mcp" ? { pin: "2026-07-28" } : "auto" } },
      );
      await client.connect(
        new TransportV2(new URL(`${origin()}${path}`), {
          requestInit: { headers: { authorization: `Bearer ${await gw.token("tester")}` } },
        }),
      );
      return client;
    };
    const client = await connect("/mcp");
    const direct = await connect("/mcp/raw");
    try {
      expectRaw(
        (await client.callTool({ name: "raw__raw", arguments: {} })) as never,
        (await direct.callTool({ name: "raw", arguments: {} })) as never,
      );
    } finally {
      await Promise.allSettled([client.close(), direct.close()]);
    }
  });

  it("an agent speaking JSON-RPC itself (2025 session) gets the result exactly as the server sent it", async () => {
    const token = await gw.token("tester");
    /** tools/call `name` on `path` in a session of its own: the result as the gateway sent it. */
    const call = async (path: string, name: string): Promise<unknown> => {
      const headers = { ...MCP_HEADERS, authorization: `Bearer ${token}` };
      const init = await httpCall(`${origin()}${path}`, {
        headers,
        body: rpc("initialize", {
          protocolVersion: "2025-06-18",
          capabilities: {},
          clientInfo: { name: "raw", version: "1" },
        }),
      });
      // The server is stateless: its own route opens no session; the aggregate does.
      const session = init.headers["mcp-session-id"];
      const sessionHeaders = {
        ...headers,
        ...(typeof session === "string" ? { "mcp-session-id": session } : {}),
        "mcp-protocol-version": "2025-06-18",
      };
      await httpCall(`${origin()}${path}`, {
        headers: sessionHeaders,
        body: JSON.stringify({ jsonrpc: "2.0", method: "notifications/initialized" }),
      });
      const answer = await httpCall(`${origin()}${path}`, {
        headers: sessionHeaders,
        body: rpc("tools/call", { name, arguments: {} }, 2),
      });
      await httpCall(`${origin()}${path}`, { method: "DELETE", headers: sessionHeaders });
      return (answer.messages.find((m) => (m as { id?: unknown }).id === 2) as { result?: unknown }).result;
    };
    // As the server's own route relays it (the per-server path passed what it passes).
    const direct = (await call("/mcp/raw", "raw")) as Record<string, unknown>;
    expect(direct).toMatchObject({ vendorField: RESULT.vendorField, _meta: RESULT._meta });
    expect(await call("/mcp", "raw__raw")).toEqual(direct);
    // A content part the SDK's schema does not know: the server's route relays it, so does /mcp
    // (the SDK client's schema refused the whole result: upstream_invalid_response).
    const future = await call("/mcp/raw", "future");
    expect(future).toEqual(FUTURE);
    expect(await call("/mcp", "raw__future")).toEqual(future);
  });
});
