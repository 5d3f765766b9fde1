import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { httpCall, MCP_HEADERS, rpc, startGateway, waitFor, type Gateway } from "../e2e/harness.js";
import { describeWithRedis, startRedis, type TestRedis } from "../state/redis-server.js";
import { connect2025, demoRegistry } from "./support.js";

/**
 * The end of an aggregated 2025 session: a DELETE on one edge replica makes the sealed id unknown
 * (404) on every replica sharing the state store (real redis-server), until the id expires
 * (`broker.sessionTtl`); while the store cannot be reached, a session request is refused
 * (`session_unavailable`, fail closed) rather than served on a session that may have ended.
 */
const KEY_ENV = "MCP_GW_TEST_REVOCATION_KEY";

/** Each SDK major's client in the 2025 era, as the tests name it. */
const clients = [
  ["SDK 1.x", "1.x"],
  ["SDK 2.x (2025 era)", "2.x"],
] as const;

async function listWith(gw: Gateway, sessionId: string) {
  return httpCall(`${gw.edge.url}/mcp`, {
    headers: {
      ...MCP_HEADERS,
      authorization: `Bearer ${await gw.token("tester")}`,
      "mcp-session-id": sessionId,
      "mcp-protocol-version": "2025-11-25",
    },
    body: rpc("tools/list"),
  });
}

describeWithRedis("aggregated sessions ended on one replica, with the shared store", () => {
  let redis: TestRedis;
  let demo: Awaited<ReturnType<typeof demoRegistry>>;
  let a: Gateway;
  let b: Gateway;
  beforeAll(async () => {
    process.env[KEY_ENV] = "revocation-test-key-0123456789-abcdefghijk";
    [redis, demo] = await Promise.all([startRedis(), demoRegistry()]);
    const spec = {
      servers: demo.servers,
      sessions: { keys: [{ env: KEY_ENV }] },
      config: { state: { store: "redis", redis: { url: redis.url, keyPrefix: `r${Date.now()}:` } } },
    };
    [a, b] = await Promise.all([startGateway(spec), startGateway(spec)]);
  });
  afterAll(async () => {
    await Promise.allSettled([a?.close(), b?.close()]);
    await Promise.allSettled([demo?.close(), redis?.close()]);
    delete process.env[KEY_ENV];
  });

  describe.each(clients)("%s", (_name, sdk) => {
    it("a DELETE on one replica is a 404 on both", async () => {
      const mcp = await connect2025(sdk, `${a.edge.url}/mcp`, await a.token("tester"));
      try {
        expect(await mcp.tools()).toContain("kb__search_articles");
        // The other replica serves the session until it ends.
        expect((await listWith(b, mcp.sessionId)).status).toBe(200);
        await mcp.terminate();
        for (const gw of [b, a]) {
          const r = await listWith(gw, mcp.sessionId);
          expect(r.status).toBe(404);
          expect(r.messages[0]).toMatchObject({ error: { data: { reason: "session_unknown" } } });
        }
      } finally {
        await mcp.close();
      }
    });
  });

  it("while the store is down a session request is refused (session_unavailable), then served again", async () => {
    const mcp = await connect2025("1.x", `${a.edge.url}/mcp`, await a.token("tester"));
    try {
      await redis.stop();
      await waitFor(() => !b.edge.ready(), 5_000, "the replica sees Redis down");
      const down = await listWith(b, mcp.sessionId);
      expect(down.status).toBe(503);
      expect(down.messages[0]).toMatchObject({ error: { data: { reason: "session_unavailable" } } });
      const end = await httpCall(`${b.edge.url}/mcp`, {
        method: "DELETE",
        headers: {
          authorization: `Bearer ${await b.token("tester")}`,
          "mcp-session-id": mcp.sessionId,
          "mcp-protocol-version": "2025-11-25",
        },
      });
      expect(end.status).toBe(503);
      expect(
        await b.metrics.registry.getSingleMetricAsString("mcp_gateway_state_store_errors_total"),
      ).toMatch(/feature="sessions"} [1-9]/);
      await redis.start();
      await waitFor(() => b.edge.ready(), 10_000, "the replica sees Redis again");
      // The refused DELETE ended nothing: the session still works.
      expect((await listWith(b, mcp.sessionId)).status).toBe(200);
    } finally {
      await mcp.close();
    }
  });
});

describe("aggregated sessions without a shared store", () => {
  let demo: Awaited<ReturnType<typeof demoRegistry>>;
  let gw: Gateway;
  beforeAll(async () => {
    demo = await demoRegistry();
    gw = await startGateway({ servers: demo.servers, config: { broker: { sessionTtl: "1500ms" } } });
  });
  afterAll(async () => {
    await gw?.close();
    await demo?.close();
  });

  it("the id stops opening after broker.sessionTtl: 404, and the client starts a new session", async () => {
    const mcp = await connect2025("1.x", `${gw.edge.url}/mcp`, await gw.token("tester"));
    try {
      expect((await listWith(gw, mcp.sessionId)).status).toBe(200);
      await new Promise((resolve) => setTimeout(resolve, 1_700));
      const r = await listWith(gw, mcp.sessionId);
      expect(r.status).toBe(404);
      expect(r.messages[0]).toMatchObject({ error: { data: { reason: "session_unknown" } } });
    } finally {
      await mcp.close();
    }
  });
});
