import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import type { Edge } from "../../ext-service/src/edge/index.js";
import { Metrics } from "../../ext-service/src/telemetry/metrics.js";
import { waitFor } from "../e2e/harness.js";
import { describeWithRedis, startRedis, type TestRedis } from "./redis-server.js";
import {
  postEdge,
  startFakeMcp,
  startStateEdge,
  toolCall,
  writeStateFiles,
  type FakeMcp,
} from "./support.js";

let upstream: FakeMcp;
let redis: TestRedis | undefined;
beforeAll(async () => {
  upstream = await startFakeMcp();
});
afterAll(async () => {
  await upstream.close();
  await redis?.close();
});
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

/** Two edges on one config: the same agents, the same store. */
async function twoEdges(state?: Record<string, unknown>) {
  const files = await writeStateFiles({
    upstream: upstream.url,
    ...(state ? { state } : {}),
    edge: { rateLimit: { requestsPerSecond: 0.01, burst: 3 } },
  });
  const metrics = new Metrics(false);
  const edges: Edge[] = [];
  for (let i = 0; i < 2; i++) {
    const { edge } = await startStateEdge(files, i === 0 ? metrics : new Metrics(false));
    edges.push(edge);
  }
  cleanups.push(async () => {
    for (const e of edges) await e.close(0);
    files.remove();
  });
  for (const e of edges) await waitFor(() => e.ready(), 5_000, "edge ready");
  const token = await files.token("bot-a");
  /** Status of one call through edge `i`. */
  const call = async (i: number) =>
    (await postEdge(`${edges[i]!.url}/mcp/tickets`, token, toolCall("cheap"))).status;
  return { edges, call, metrics };
}

it("memory store: each edge has its own buckets", async () => {
  const { call } = await twoEdges();
  const statuses = [];
  for (let i = 0; i < 8; i++) statuses.push(await call(i % 2));
  expect(statuses).toEqual([200, 200, 200, 200, 200, 200, 429, 429]);
});

describeWithRedis("shared rate limit on Redis", () => {
  beforeAll(async () => {
    redis = await startRedis();
  });

  it("holds across replicas: the burst is shared by both edges", async () => {
    const { call } = await twoEdges({
      store: "redis",
      redis: { url: redis!.url, keyPrefix: `rl${Date.now()}:` },
    });
    const statuses = [];
    for (let i = 0; i < 6; i++) statuses.push(await call(i % 2));
    expect(statuses).toEqual([200, 200, 200, 429, 429, 429]);
  });

  it("falls back to each replica's own bucket while Redis is down", async () => {
    const { call, edges, metrics } = await twoEdges({
      store: "redis",
      redis: { url: redis!.url, keyPrefix: `rl-down${Date.now()}:` },
    });
    expect([await call(0), await call(1), await call(0), await call(1)]).toEqual([200, 200, 200, 429]);
    await redis!.stop();
    try {
      await waitFor(() => !edges[0]!.ready(), 5_000, "edge sees Redis down");
      // Local buckets start full: 3 more per edge, then the local limit holds.
      const statuses = [];
      for (let i = 0; i < 4; i++) statuses.push(await call(0));
      expect(statuses).toEqual([200, 200, 200, 429]);
      expect(await metrics.registry.metrics()).toContain(
        'mcp_gateway_state_store_errors_total{feature="rate_limit"} 4',
      );
    } finally {
      await redis!.start();
    }
    // Back on the shared bucket (Redis kept nothing: it starts full). Still on the local ones,
    // edge 0 would refuse at once and edge 1 allow.
    await waitFor(() => edges.every((e) => e.ready()), 8_000, "edges see Redis again");
    expect([await call(0), await call(1), await call(0), await call(1)]).toEqual([200, 200, 200, 429]);
  });
});
