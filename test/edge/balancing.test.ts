import type { IncomingMessage, ServerResponse } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  fakeUpstream,
  httpCall,
  MCP_HEADERS,
  readJsonBody,
  rpc,
  startGateway,
  waitFor,
  type Gateway,
} from "../e2e/harness.js";

/** A replica that names itself in each answer and can hold requests until released. */
async function replica(name: string) {
  const held: (() => void)[] = [];
  let hold = false;
  let hits = 0;
  const fake = await fakeUpstream(async (req: IncomingMessage, res: ServerResponse) => {
    hits++;
    const msg = (await readJsonBody(req)) as { id: number; method: string };
    if (hold) await new Promise<void>((r) => held.push(r));
    const headers: Record<string, string> = { "content-type": "application/json", "x-replica": name };
    if (msg.method === "initialize") headers["mcp-session-id"] = `sess-${name}-${hits}`;
    res.writeHead(200, headers).end(JSON.stringify({ jsonrpc: "2.0", id: msg.id, result: {} }));
  });
  return {
    ...fake,
    name,
    get hits() {
      return hits;
    },
    get waiting() {
      return held.length;
    },
    hold(on: boolean) {
      hold = on;
    },
    release() {
      held.splice(0).forEach((r) => r());
    },
  };
}

describe("several upstream URLs per server", () => {
  let gw: Gateway;
  let a: Awaited<ReturnType<typeof replica>>;
  let b: Awaited<ReturnType<typeof replica>>;
  let token: string;

  beforeAll(async () => {
    a = await replica("a");
    b = await replica("b");
    gw = await startGateway({
      servers: [{ name: "pair", upstreams: [a.url, b.url] }],
      edge: {
        breaker: { consecutiveFailures: 1, cooldown: "60s" },
        rateLimit: { requestsPerSecond: 1000, burst: 1000 },
      },
    });
    token = await gw.token("tester");
  });
  afterAll(async () => {
    a.release();
    b.release();
    await gw?.close();
    await a?.close();
    await b?.close();
  });

  const call = (body = rpc("ping"), headers: Record<string, string> = {}) =>
    httpCall(gw.url("pair"), {
      headers: { ...MCP_HEADERS, authorization: `Bearer ${token}`, ...headers },
      body,
    });

  it("sends a new request to the endpoint with fewer requests in flight", async () => {
    a.hold(true);
    b.hold(true);
    const first = call();
    await waitFor(() => a.waiting + b.waiting === 1);
    const busy = a.waiting === 1 ? a : b;
    const idle = busy === a ? b : a;
    const second = call();
    await waitFor(() => idle.waiting === 1, 5_000, "the second request to reach the idle replica");
    expect(busy.waiting).toBe(1);
    const inflight = () => gw.metrics.registry.getSingleMetricAsString("mcp_gateway_inflight_requests");
    expect(await inflight()).toContain('mcp_gateway_inflight_requests{plane="edge"} 2');
    a.hold(false);
    b.hold(false);
    a.release();
    b.release();
    const replicas = [(await first).headers["x-replica"], (await second).headers["x-replica"]];
    expect(replicas).toEqual([busy.name, idle.name]);
    // Each exchange closes just after its answer went out.
    let settled = false;
    for (let i = 0; i < 100 && !settled; i++) {
      settled = (await inflight()).includes('mcp_gateway_inflight_requests{plane="edge"} 0');
      if (!settled) await new Promise((r) => setTimeout(r, 10));
    }
    expect(settled).toBe(true);
  });

  it("keeps a session on the replica that created it, even when that one is busier", async () => {
    const init = rpc("initialize", {
      protocolVersion: "2025-06-18",
      capabilities: {},
      clientInfo: { name: "t", version: "1" },
    });
    const s1 = await call(init);
    const owner = s1.headers["x-replica"] === "a" ? a : b;
    const sessionId = s1.headers["mcp-session-id"] as string;
    // The client holds the gateway's sealed id, which names the owning replica; never the raw one.
    expect(sessionId).not.toContain("sess-");
    owner.hold(true);
    const pending = call(rpc("ping", undefined, 2), { "mcp-session-id": sessionId });
    await waitFor(() => owner.waiting === 1);
    const second = call(rpc("ping", undefined, 3), { "mcp-session-id": sessionId });
    await waitFor(() => owner.waiting === 2, 5_000, "the session's second request to reach its owner");
    owner.hold(false);
    owner.release();
    expect((await pending).headers["x-replica"]).toBe(owner.name);
    expect((await second).headers["x-replica"]).toBe(owner.name);
  });

  it("ejects a failing endpoint: once its breaker opens, traffic goes to the healthy one", async () => {
    await b.close();
    const statuses: number[] = [];
    const replicas: unknown[] = [];
    for (let i = 0; i < 6; i++) {
      const r = await call(rpc("ping", undefined, 10 + i));
      statuses.push(r.status);
      replicas.push(r.headers["x-replica"]);
    }
    // Picks alternate between equally idle endpoints, so b is tried within the first two
    // requests: exactly that one fails, and b's breaker (threshold 1) keeps it out afterwards.
    const failedAt = statuses.findIndex((s) => s !== 200);
    expect(failedAt).toBeLessThan(2);
    expect(statuses.filter((s) => s !== 200)).toEqual([503]);
    expect(replicas.filter((r) => r !== undefined).every((r) => r === "a")).toBe(true);
    const gauge = (await gw.metrics.breakerOpen.get()).values.find((v) => v.labels.upstream === b.url);
    expect(gauge?.value).toBe(1);
  });
});

describe("per-agent rate limit", () => {
  let gw: Gateway;
  let upstream: Awaited<ReturnType<typeof fakeUpstream>>;
  beforeAll(async () => {
    upstream = await fakeUpstream((req, res) => {
      req.resume();
      req.on("end", () =>
        res
          .writeHead(200, { "content-type": "application/json" })
          .end('{"jsonrpc":"2.0","id":1,"result":{}}'),
      );
    });
    gw = await startGateway({
      servers: [{ name: "svc", upstreams: [upstream.url] }],
      edge: { rateLimit: { requestsPerSecond: 0.5, burst: 2 } },
    });
  });
  afterAll(async () => {
    await gw?.close();
    await upstream?.close();
  });

  it("answers 429 with Retry-After and a JSON-RPC error once an agent's burst is spent", async () => {
    const send = async (agent: string) =>
      httpCall(gw.url("svc"), {
        headers: { ...MCP_HEADERS, authorization: `Bearer ${await gw.token(agent)}` },
        body: rpc("ping"),
      });
    expect((await send("tester")).status).toBe(200);
    expect((await send("tester")).status).toBe(200);
    const limited = await send("tester");
    expect(limited.status).toBe(429);
    expect(limited.headers["retry-after"]).toBe("2");
    expect(limited.messages[0]).toMatchObject({ error: { code: -32029, data: { reason: "rate_limited" } } });
    // another agent has its own bucket
    expect((await send("other")).status).toBe(200);
  });
});
