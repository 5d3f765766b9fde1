import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectClient, httpCall, MCP_HEADERS, startGateway, type Gateway } from "../e2e/harness.js";
import { demoRegistry } from "./support.js";

/**
 * The aggregated endpoint's refusals after the body was parsed answer the request's id (each
 * request's, for a batch), as /mcp/<server>'s do: MCP clients match answers by id (docs/REASONS.md).
 */
describe("aggregated endpoint: refusals carry the request's id", () => {
  let demo: Awaited<ReturnType<typeof demoRegistry>>;
  let gw: Gateway;
  let token: string;
  beforeAll(async () => {
    demo = await demoRegistry();
    gw = await startGateway({
      servers: demo.servers,
      roles: { all: { rules: [{ effect: "allow", tools: ["*/*"] }] } },
      agents: { tester: { roles: ["all"] } },
    });
    token = await gw.token("tester");
  });
  afterAll(async () => {
    await gw?.close();
    await demo?.close();
  });

  const post = (body: unknown, headers: Record<string, string> = {}) =>
    httpCall(`${gw.edge.url}/mcp`, {
      headers: { ...MCP_HEADERS, authorization: `Bearer ${token}`, ...headers },
      body: JSON.stringify(body),
    });
  const ids = (messages: unknown[]) =>
    (messages[0] as { id: unknown; error: { data: { reason: string } } }[]).map((m) => [
      m.id,
      m.error.data.reason,
    ]);

  it("a batch for an unknown session: one error per request, under its id (0 and '' kept)", async () => {
    const r = await post(
      [
        { jsonrpc: "2.0", id: 0, method: "tools/list" },
        { jsonrpc: "2.0", method: "notifications/progress", params: { progressToken: 1, progress: 1 } },
        { jsonrpc: "2.0", id: "", method: "ping" },
      ],
      { "mcp-session-id": "not-a-session", "mcp-protocol-version": "2025-03-26" },
    );
    expect(r.status).toBe(404);
    expect(ids(r.messages)).toEqual([
      [0, "session_unknown"],
      ["", "session_unknown"],
    ]);
  });

  it("the SDK transport's own refusal (a second initialize) answers the request's id, not null", async () => {
    const c = await connectClient(`${gw.edge.url}/mcp`, token);
    try {
      const r = await post(
        {
          jsonrpc: "2.0",
          id: "",
          method: "initialize",
          params: {
            protocolVersion: "2025-06-18",
            capabilities: {},
            clientInfo: { name: "t", version: "1" },
          },
        },
        { "mcp-session-id": c.transport.sessionId!, "mcp-protocol-version": "2025-06-18" },
      );
      expect(r.status).toBe(400);
      expect(r.messages[0]).toMatchObject({
        id: "",
        error: {
          message: expect.stringContaining("Server already initialized"),
          data: { reason: "invalid_request" },
        },
      });
    } finally {
      await c.close();
    }
  });

  it("a message that is not JSON-RPC but has a readable id is refused under it", async () => {
    const r = await post({ jsonrpc: "1.0", id: 0, method: "tools/list" });
    expect(r.status).toBe(400);
    expect(r.messages[0]).toMatchObject({ id: 0, error: { data: { reason: "invalid_request" } } });
  });
});
