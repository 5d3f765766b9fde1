import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { request } from "undici";
import type { Edge } from "../../ext-service/src/edge/index.js";
import { EnvoyRoleClient } from "../../ext-service/src/envoy/envoy-role-client.js";
import type { ExtService } from "../../ext-service/src/envoy/server.js";
import { Metrics } from "../../ext-service/src/telemetry/metrics.js";
import { LogCapture, waitFor } from "../e2e/harness.js";
import { describeWithRedis, startRedis, type TestRedis } from "./redis-server.js";
import {
  MCP_HEADERS,
  postEdge,
  spawnEdge,
  startFakeMcp,
  startStateEdge,
  startStateService,
  toolCall,
  writeStateFiles,
  type FakeMcp,
  type StateFiles,
} from "./support.js";

let upstream: FakeMcp;
beforeAll(async () => {
  upstream = await startFakeMcp();
});
afterAll(() => upstream.close());

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  upstream.calls.length = 0;
});

const PER_AGENT_CALLS = {
  warnAt: 0.8,
  rules: [
    {
      name: "tickets-hourly",
      roles: ["support"],
      per: "agent",
      tools: ["tickets/*"],
      period: "hour",
      limit: 3,
      warnAt: 0.6,
    },
  ],
};

interface EdgeUnderTest {
  edge: Edge;
  files: StateFiles;
  log: LogCapture;
  metrics: Metrics;
  url: string;
}

async function edgeWith(options: Parameters<typeof writeStateFiles>[0]): Promise<EdgeUnderTest> {
  const files = await writeStateFiles(options);
  const metrics = new Metrics(false);
  const { edge, log } = await startStateEdge(files, metrics);
  cleanups.push(async () => {
    await edge.close(0);
    files.remove();
  });
  return { edge, files, log, metrics, url: `${edge.url}/mcp/tickets` };
}

interface ServiceUnderTest {
  service: ExtService;
  files: StateFiles;
  log: LogCapture;
  client: EnvoyRoleClient;
  /** One tools/call through the modelled Envoy; the upstream is the fake MCP server's answer. */
  call(
    token: string,
    body: unknown,
  ): Promise<{ status: number; json: Record<string, unknown>; reachedUpstream: boolean }>;
  readyz(): Promise<number>;
  /**
   * Polls /readyz until it answers `status`. The ext-service's store connects on its own,
   * independently of the edge's: it is ready, or notices Redis gone, on its own schedule.
   */
  readyzBecomes(status: number, limitMs?: number): Promise<void>;
}

async function serviceWith(options: Parameters<typeof writeStateFiles>[0]): Promise<ServiceUnderTest> {
  const files = await writeStateFiles(options);
  const { service, log } = await startStateService(files);
  const client = new EnvoyRoleClient(service.grpcAddress);
  cleanups.push(async () => {
    client.close();
    await service.close(0);
    files.remove();
  });
  const readyz = async () => {
    const res = await request(`http://127.0.0.1:${service.adminPort}/readyz`);
    await res.body.text();
    return res.statusCode;
  };
  return {
    service,
    files,
    log,
    client,
    async call(token, body) {
      let reachedUpstream = false;
      const r = await client.exchange(
        {
          method: "POST",
          path: "/mcp/tickets",
          headers: { ...MCP_HEADERS, authorization: `Bearer ${token}` },
          body: JSON.stringify(body),
        },
        (req) => {
          reachedUpstream = true;
          const message = JSON.parse(req.body.toString("utf8")) as { id: number; params: { name: string } };
          upstream.calls.push({ name: message.params.name, arguments: {} });
          return {
            status: 200,
            headers: { "content-type": "application/json" },
            body: JSON.stringify({
              jsonrpc: "2.0",
              id: message.id,
              result: { content: [{ type: "text", text: `ok ${message.params.name}` }] },
            }),
          };
        },
      );
      return {
        status: r.response.status,
        json: JSON.parse(r.response.body.toString("utf8")) as Record<string, unknown>,
        reachedUpstream,
      };
    },
    readyz,
    async readyzBecomes(status, limitMs = 5_000) {
      const deadline = Date.now() + limitMs;
      let last = await readyz();
      while (last !== status && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
        last = await readyz();
      }
      expect(last, `ext-service /readyz within ${limitMs} ms`).toBe(status);
    },
  };
}

function budgetError(json: Record<string, unknown>) {
  return json.error as { code: number; message: string; data: Record<string, unknown> } | undefined;
}

function nextHour(): string {
  const now = Date.now();
  return new Date(now - (now % 3_600_000) + 3_600_000).toISOString();
}

describe("budgets on the edge (memory store)", () => {
  it("allows the limit per agent, then refuses with budget_exhausted and the reset time; audited and counted", async () => {
    const gw = await edgeWith({ upstream: upstream.url, budgets: PER_AGENT_CALLS });
    const a = await gw.files.token("bot-a");
    const results = [];
    for (let i = 0; i < 4; i++) results.push(await postEdge(gw.url, a, toolCall("cheap")));
    expect(results.map((r) => budgetError(r.json)?.data.reason ?? "ok")).toEqual([
      "ok",
      "ok",
      "ok",
      "budget_exhausted",
    ]);
    const refused = budgetError(results[3]!.json)!;
    expect(results[3]!.status).toBe(200);
    expect(refused.code).toBe(-32010);
    expect(refused.data.resets_at).toBe(nextHour());
    expect(refused.message).toBe(
      `The budget for this call is spent for the current period: it resets at ${nextHour()}`,
    );
    expect(refused.message).not.toMatch(/\b3\b/); // no counts, no other agents' spend
    expect(upstream.calls).toHaveLength(3);

    // Another agent has a counter of its own.
    const b = await gw.files.token("bot-b");
    expect(budgetError((await postEdge(gw.url, b, toolCall("cheap"))).json)).toBeUndefined();

    await waitFor(() => gw.log.audits.length >= 5);
    const audits = gw.log.audits;
    expect(audits[1]!.counters).toEqual({ "budget_warning:tickets-hourly": 1 }); // 2 of 3 >= 60%
    expect(audits[3]).toMatchObject({
      decision: "deny",
      reasons: ["budget_exhausted"],
      counters: { "budget_exhausted:tickets-hourly": 1 },
    });
    const metrics = await gw.metrics.registry.metrics();
    expect(metrics).toContain('mcp_gateway_budget_exhausted_total{budget="tickets-hourly"} 1');
    expect(metrics).toContain('mcp_gateway_budget_warnings_total{budget="tickets-hourly"} 1');
    expect(metrics).toContain('mcp_gateway_budget_charged_total{budget="tickets-hourly"} 4');
    expect(metrics).toContain('mcp_gateway_violations_total{reason="budget_exhausted"} 1');
    expect(metrics).toContain('mcp_gateway_state_store_up{store="memory"} 1');
  });

  it("counts cost units, and refuses a batch whole: the spent call budget_exhausted, the rest batch_rejected", async () => {
    const gw = await edgeWith({
      upstream: upstream.url,
      budgets: {
        rules: [
          {
            name: "spend",
            per: "shared",
            tools: ["tickets/pricey", "tickets/cheap"],
            unit: "cost",
            period: "day",
            limit: 12,
          },
        ],
      },
    });
    const a = await gw.files.token("bot-a");
    const b = await gw.files.token("bot-b");
    expect(budgetError((await postEdge(gw.url, a, toolCall("pricey"))).json)).toBeUndefined(); // 5
    expect(budgetError((await postEdge(gw.url, b, toolCall("pricey"))).json)).toBeUndefined(); // 10, shared
    expect(budgetError((await postEdge(gw.url, a, toolCall("pricey"))).json)?.data.reason).toBe(
      "budget_exhausted",
    );
    const batch = await postEdge(gw.url, a, [toolCall("free", {}, 901), toolCall("pricey", {}, 902)]);
    expect(
      (batch.json as unknown as Record<string, unknown>[]).map((m) => [m.id, budgetError(m)?.data.reason]),
    ).toEqual([
      [901, "batch_rejected"],
      [902, "budget_exhausted"],
    ]);
    // Not counted by the budget: goes through; cheap (1) fits.
    expect(budgetError((await postEdge(gw.url, a, toolCall("free"))).json)).toBeUndefined();
    expect(budgetError((await postEdge(gw.url, a, toolCall("cheap"))).json)).toBeUndefined(); // 11
    expect(upstream.calls.map((c) => c.name)).toEqual(["pricey", "pricey", "free", "cheap"]);
  });
});

describe("budgets on the Envoy plane (ext_proc request body, memory store)", () => {
  it("refuses from ext_proc once spent, so the call never reaches the server", async () => {
    const gw = await serviceWith({ upstream: upstream.url, budgets: PER_AGENT_CALLS });
    const a = await gw.files.token("bot-a");
    const results = [];
    for (let i = 0; i < 4; i++) results.push(await gw.call(a, toolCall("cheap")));
    expect(results.map((r) => r.reachedUpstream)).toEqual([true, true, true, false]);
    expect(results[3]!.status).toBe(200);
    expect(budgetError(results[3]!.json)!.data).toMatchObject({
      reason: "budget_exhausted",
      resets_at: nextHour(),
    });
    await waitFor(() => gw.log.audits.length >= 4);
    expect(gw.log.audits[3]).toMatchObject({ plane: "envoy", reasons: ["budget_exhausted"] });
    expect(await gw.readyz()).toBe(200);
  });
});

describeWithRedis("budgets on Redis", () => {
  let redis: TestRedis;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(() => redis?.close());

  const redisState = () => ({ store: "redis", redis: { url: redis.url, keyPrefix: `t${Date.now()}:` } });

  it("is one budget across an edge and an ext-service sharing the store", async () => {
    const state = redisState();
    const budgets = { rules: [{ name: "shared-4", per: "shared", period: "day", limit: 4 }] };
    const edge = await edgeWith({ upstream: upstream.url, state, budgets });
    const ext = await serviceWith({ upstream: upstream.url, state, budgets });
    await waitFor(() => edge.edge.ready(), 5_000, "edge ready");
    const a = await edge.files.token("bot-a");
    const b = await ext.files.token("bot-b");
    const outcomes = [
      budgetError((await postEdge(edge.url, a, toolCall("cheap"))).json)?.data.reason,
      budgetError((await ext.call(b, toolCall("cheap"))).json)?.data.reason,
      budgetError((await postEdge(edge.url, a, toolCall("cheap"))).json)?.data.reason,
      budgetError((await ext.call(b, toolCall("cheap"))).json)?.data.reason,
      budgetError((await postEdge(edge.url, a, toolCall("cheap"))).json)?.data.reason,
      budgetError((await ext.call(b, toolCall("cheap"))).json)?.data.reason,
    ];
    expect(outcomes).toEqual([
      undefined,
      undefined,
      undefined,
      undefined,
      "budget_exhausted",
      "budget_exhausted",
    ]);
  });

  it("fails closed while Redis is down (budget_unavailable, not ready), and recovers when it returns", async () => {
    const state = redisState();
    const ext = await serviceWith({ upstream: upstream.url, state, budgets: PER_AGENT_CALLS });
    const edge = await edgeWith({ upstream: upstream.url, state, budgets: PER_AGENT_CALLS });
    const a = await ext.files.token("bot-a");
    await waitFor(() => edge.edge.ready(), 5_000, "edge ready");
    await ext.readyzBecomes(200);
    expect(budgetError((await ext.call(a, toolCall("cheap"))).json)).toBeUndefined();

    await redis.stop();
    try {
      await waitFor(() => !edge.edge.ready(), 5_000, "edge not ready");
      await ext.readyzBecomes(503);
      const down = await ext.call(a, toolCall("cheap"));
      expect(down.reachedUpstream).toBe(false);
      expect(budgetError(down.json)?.data.reason).toBe("budget_unavailable");
      const viaEdge = await postEdge(edge.url, await edge.files.token("bot-a"), toolCall("cheap"));
      expect(budgetError(viaEdge.json)?.data.reason).toBe("budget_unavailable");
      const metrics = await edge.metrics.registry.metrics();
      expect(metrics).toContain('mcp_gateway_state_store_up{store="redis"} 0');
      expect(metrics).toContain('mcp_gateway_state_store_errors_total{feature="budgets"} 1');
    } finally {
      await redis.start();
    }
    await waitFor(() => edge.edge.ready(), 8_000, "edge ready again");
    const again = await postEdge(edge.url, await edge.files.token("bot-a"), toolCall("cheap"));
    expect(budgetError(again.json)).toBeUndefined();
    const metrics = await edge.metrics.registry.metrics();
    expect(metrics).toContain('mcp_gateway_state_store_up{store="redis"} 1');
    await ext.readyzBecomes(200, 8_000);
  });

  it("lets calls through unchecked while Redis is down when whenStoreDown is allow (audited)", async () => {
    const edge = await edgeWith({
      upstream: upstream.url,
      state: redisState(),
      budgets: { ...PER_AGENT_CALLS, whenStoreDown: "allow" },
    });
    await waitFor(() => edge.edge.ready(), 5_000, "edge ready");
    const a = await edge.files.token("bot-a");
    await redis.stop();
    try {
      await waitFor(() => !edge.edge.ready(), 5_000, "edge not ready");
      expect(budgetError((await postEdge(edge.url, a, toolCall("cheap"))).json)).toBeUndefined();
      await waitFor(() => edge.log.audits.length >= 1);
      expect(edge.log.audits[0]!.counters).toEqual({ "budget_unchecked:tickets-hourly": 1 });
    } finally {
      await redis.start();
    }
  });

  it("allows exactly the budget to two edge processes hammering one Redis", async () => {
    const limit = 25;
    const files = await writeStateFiles({
      upstream: upstream.url,
      // Exactness is under test here, not timeouts: a loaded machine must not turn a slow
      // answer into budget_unavailable.
      state: { ...redisState(), redis: { ...redisState().redis, commandTimeout: "10s" } },
      budgets: { rules: [{ name: "race", per: "shared", period: "day", limit }] },
      edge: { rateLimit: { requestsPerSecond: 10_000, burst: 10_000 } },
    });
    cleanups.push(() => files.remove());
    const edges = await Promise.all([
      spawnEdge(files.configFile, cleanups),
      spawnEdge(files.configFile, cleanups),
    ]);
    const tokens = await Promise.all(["bot-a", "bot-b", "bot-c"].map((a) => files.token(a)));
    const total = 80;
    const results = await Promise.all(
      Array.from({ length: total }, (_, i) =>
        postEdge(`${edges[i % 2]!.addresses.edge}/mcp/tickets`, tokens[i % 3]!, toolCall("cheap")).then(
          (r) => budgetError(r.json)?.data.reason ?? "ok",
        ),
      ),
    );
    const count = (what: string) => results.filter((r) => r === what).length;
    expect(count("ok")).toBe(limit);
    expect(count("budget_exhausted"), results.join(",")).toBe(total - limit);
    expect(upstream.calls).toHaveLength(limit);
  }, 120_000);
});
