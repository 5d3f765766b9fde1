import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  REFERENCE_SERVER_INFO,
  REFERENCE_TOOLS,
  REPORT_TEXT,
  startReferenceServer,
  type RunningServer,
} from "../../bench/reference-server.js";

let server: RunningServer;
let origin: string;

beforeAll(async () => {
  server = await startReferenceServer();
  origin = `http://127.0.0.1:${server.port}`;
});

afterAll(async () => {
  await server.close();
});

describe.each([
  ["/mcp", "application/json"],
  ["/mcp-sse", "text/event-stream"],
])("reference server at %s, through the MCP SDK client", (path, contentType) => {
  let client: Client;

  beforeAll(async () => {
    client = new Client({ name: "bench-test", version: "1.0.0" });
    await client.connect(new StreamableHTTPClientTransport(new URL(origin + path)));
  });

  afterAll(async () => {
    await client.close();
  });

  it("initializes", () => {
    expect(client.getServerVersion()).toEqual(REFERENCE_SERVER_INFO);
    expect(client.getServerCapabilities()).toEqual({ tools: { listChanged: false } });
  });

  it("lists the 50 tools", async () => {
    const { tools } = await client.listTools();
    expect(tools).toHaveLength(50);
    expect(tools.map((t) => t.name)).toEqual(REFERENCE_TOOLS.map((t) => t.name));
    expect(new Set(tools.map((t) => t.name)).size).toBe(50);
  });

  it("calls echo, a CRUD tool and the 64 KB report", async () => {
    const echo = await client.callTool({ name: "echo", arguments: { text: "hello" } });
    expect(echo.content).toEqual([{ type: "text", text: "hello" }]);
    const count = await client.callTool({ name: "count_orders", arguments: {} });
    expect(count.content).toEqual([{ type: "text", text: "count_orders: ok" }]);
    const report = await client.callTool({ name: "get_report", arguments: { week: "2026-W10" } });
    expect(report.content).toEqual([{ type: "text", text: REPORT_TEXT }]);
    expect(REPORT_TEXT.length).toBe(65_536);
  });

  it("answers an unknown tool with a JSON-RPC error", async () => {
    await expect(client.callTool({ name: "nope", arguments: {} })).rejects.toThrow(/Unknown tool: nope/);
  });

  it(`answers with ${contentType}`, async () => {
    const res = await fetch(origin + path, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json, text/event-stream" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 7, method: "ping" }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe(contentType);
    const text = await res.text();
    const expected = '{"jsonrpc":"2.0","id":7,"result":{}}';
    expect(text).toBe(
      contentType === "application/json" ? expected : `event: message\ndata: ${expected}\n\n`,
    );
  });
});

describe("reference server, raw JSON-RPC", () => {
  const post = async (body: string, path = "/mcp") => {
    const res = await fetch(origin + path, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json, text/event-stream" },
      body,
    });
    const text = await res.text();
    return { status: res.status, text, json: text ? (JSON.parse(text) as unknown) : undefined };
  };

  it("rejects invalid JSON with -32700 and a non-message with -32600", async () => {
    expect(await post("{nope")).toMatchObject({
      status: 400,
      json: { jsonrpc: "2.0", id: null, error: { code: -32700 } },
    });
    expect(await post('{"id":1,"method":"ping"}')).toMatchObject({
      status: 400,
      json: { id: 1, error: { code: -32600 } },
    });
    expect(await post("[]")).toMatchObject({ status: 400, json: { error: { code: -32600 } } });
  });

  it("answers unknown methods with -32601 and bad tools/call params with -32602", async () => {
    expect(await post('{"jsonrpc":"2.0","id":"a","method":"resources/list"}')).toMatchObject({
      status: 200,
      json: { id: "a", error: { code: -32601 } },
    });
    expect(await post('{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{}}')).toMatchObject({
      status: 200,
      json: { id: 2, error: { code: -32602 } },
    });
  });

  it("accepts notifications and client responses with 202 and no body", async () => {
    expect(await post('{"jsonrpc":"2.0","method":"notifications/initialized"}')).toEqual({
      status: 202,
      text: "",
      json: undefined,
    });
    expect(await post('{"jsonrpc":"2.0","id":5,"result":{}}')).toMatchObject({ status: 202, text: "" });
  });

  it("answers a batch with one response per request, invalid members included", async () => {
    const batch = JSON.stringify([
      { jsonrpc: "2.0", id: 1, method: "ping" },
      { jsonrpc: "2.0", method: "notifications/initialized" },
      { nope: true },
      { jsonrpc: "2.0", id: 2, method: "tools/call", params: { name: "echo", arguments: { text: "x" } } },
    ]);
    const { status, json } = await post(batch);
    expect(status).toBe(200);
    expect(json).toEqual([
      { jsonrpc: "2.0", id: 1, result: {} },
      { jsonrpc: "2.0", id: null, error: { code: -32600, message: "Invalid Request" } },
      { jsonrpc: "2.0", id: 2, result: { content: [{ type: "text", text: "x" }] } },
    ]);
  });

  it("offers no GET stream, no session to DELETE, and no other paths", async () => {
    expect((await fetch(origin + "/mcp")).status).toBe(405);
    expect((await fetch(origin + "/mcp", { method: "DELETE" })).status).toBe(405);
    expect((await fetch(origin + "/other", { method: "POST", body: "{}" })).status).toBe(404);
  });

  it("negotiates the protocol version", async () => {
    const init = (v: string) =>
      post(JSON.stringify({ jsonrpc: "2.0", id: 1, method: "initialize", params: { protocolVersion: v } }));
    expect(await init("2025-03-26")).toMatchObject({ json: { result: { protocolVersion: "2025-03-26" } } });
    expect(await init("1999-01-01")).toMatchObject({ json: { result: { protocolVersion: "2025-11-25" } } });
  });
});
