import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEnvoyRoleFront, type EnvoyRoleFront } from "../../ext-service/src/envoy/envoy-role-front.js";
import { startGateway, type Gateway } from "../e2e/harness.js";
import { demoRegistry } from "./support.js";

/**
 * The agent's rate limit on the aggregated endpoint, the same on both planes: each request to
 * /mcp takes one token from the agent's bucket (the one its /mcp/<server> requests take from),
 * its hops take none, and over the limit the answer is the gateway's 429 `rate_limited` with
 * Retry-After. Behind Envoy the /mcp routes run no rate limit (no ext_authz, so no agent), and
 * the hops through the per-server routes were what the agent's bucket counted: /mcp answers from
 * the list cache, server/discover and the broker's own refusals were not limited at all.
 */
describe.each(["edge", "envoy"] as const)("rate limit on /mcp, %s plane", (plane) => {
  let demo: Awaited<ReturnType<typeof demoRegistry>>;
  let gw: Gateway;
  let front: EnvoyRoleFront | undefined;
  beforeAll(async () => {
    demo = await demoRegistry();
    gw = await startGateway({
      servers: demo.servers,
      // Three requests, then one every 100 s: nothing refills during the test.
      edge: { rateLimit: { requestsPerSecond: 0.01, burst: 3 } },
    });
    if (plane === "envoy")
      front = await startEnvoyRoleFront({
        extService: { engine: gw.engine, logger: gw.log.logger, metrics: gw.metrics },
      });
  }, 30_000);
  afterAll(async () => {
    await front?.close();
    await gw?.close();
    await demo?.close();
  });

  const origin = () => front?.url ?? gw.edge.url;

  async function post(
    path: string,
    token: string,
    body: Record<string, unknown>,
    session?: string,
  ): Promise<Response> {
    return fetch(`${origin()}${path}`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${token}`,
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
        ...(session ? { "mcp-session-id": session, "mcp-protocol-version": "2025-06-18" } : {}),
      },
      body: JSON.stringify({ jsonrpc: "2.0", ...body }),
    });
  }

  it("each /mcp request takes one token, its hops none; over the limit: 429 rate_limited with Retry-After", async () => {
    const token = await gw.token("tester");
    const init = await post("/mcp", token, {
      id: 1,
      method: "initialize",
      params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "raw", version: "1" } },
    });
    expect(init.status).toBe(200);
    await init.text();
    const session = init.headers.get("mcp-session-id")!;
    expect(session).toBeTruthy();
    // Two lists: every server's tools, each list a hop to each server (none of them refused).
    for (const id of [2, 3]) {
      const listed = await post("/mcp", token, { id, method: "tools/list" }, session);
      expect(listed.status).toBe(200);
      const text = await listed.text();
      for (const server of ["kb", "tickets", "deploy"]) expect(text).toContain(`"${server}__`);
    }
    // The fourth request of the agent: over its limit, before the broker.
    const refused = await post("/mcp", token, { id: 4, method: "tools/list" }, session);
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    const body = (await refused.json()) as {
      id: unknown;
      error: { code: number; data: Record<string, unknown> };
    };
    // Refused before the body is read, as /mcp/<server> refuses it: no id to answer.
    expect(body.id).toBeNull();
    expect(body.error.code).toBe(-32029);
    expect(body.error.data).toMatchObject({ reason: "rate_limited" });
    expect(typeof body.error.data.request_id).toBe("string");
    const record = gw.log.lines.find((l) => l.audit === true && l.request_id === body.error.data.request_id);
    expect(record).toMatchObject({ decision: "deny", reasons: ["rate_limited"], status: 429 });
    // The same bucket as the agent's requests to /mcp/<server>.
    const direct = await post("/mcp/kb", token, {
      id: 5,
      method: "initialize",
      params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "raw", version: "1" } },
    });
    expect(direct.status).toBe(429);
    await direct.text();
    // Another agent has its own.
    const other = await post("/mcp", await gw.token("other"), {
      id: 6,
      method: "initialize",
      params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "raw", version: "1" } },
    });
    expect(other.status).toBe(200);
    await other.text();
  }, 30_000);
});
