import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { request } from "undici";
import { DEV_ISSUER } from "../../ext-service/src/config/devkeys.js";
import { SHIPPED_CHAIN, type ExchangeTrace } from "../../ext-service/src/envoy/envoy-model.js";
import { EnvoyRoleClient } from "../../ext-service/src/envoy/envoy-role-client.js";
import { startEnvoyRoleFront, type EnvoyRoleFront } from "../../ext-service/src/envoy/envoy-role-front.js";
import type { RateLimitRequest, RateLimitResponse } from "../../ext-service/src/envoy/ratelimit.js";
import { LogCapture, waitFor } from "../e2e/harness.js";
import { describeWithRedis, startRedis, type TestRedis } from "./redis-server.js";
import {
  MCP_HEADERS,
  spawnServe,
  startFakeMcp,
  startStateService,
  toolCall,
  writeStateFiles,
  type FakeMcp,
} from "./support.js";

/**
 * The shipped envoy.yaml's global rate limit filter (envoy.filters.http.ratelimit) against the
 * ext-service's rate limit service, through the Envoy model: the descriptor Envoy builds from
 * the headers ext_authz set, the 429 it answers, what it does when the service fails, and the
 * limit holding exactly across Envoys and ext-service processes that share one Redis.
 */

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

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  json: { result?: unknown; error?: { code: number; data: { reason: string } } };
}

async function post(front: EnvoyRoleFront, token: string, body: unknown): Promise<Answer> {
  const res = await request(`${front.url}/mcp/tickets`, {
    method: "POST",
    headers: { ...MCP_HEADERS, authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
  return { status: res.statusCode, headers: res.headers, json: (await res.body.json()) as Answer["json"] };
}

describe("global rate limit filter, one Envoy and one ext-service (memory store)", () => {
  it("answers the agent's limit with 429, x-envoy-ratelimited and Retry-After, as JSON-RPC rate_limited, audited once", async () => {
    const files = await writeStateFiles({
      upstream: upstream.url,
      edge: { rateLimit: { requestsPerSecond: 0.01, burst: 2 } },
    });
    const log = new LogCapture();
    const traces: ExchangeTrace[] = [];
    const front = await startEnvoyRoleFront({
      extService: { engine: files.engine(), logger: log.logger },
      upstreams: { tickets: upstream.url },
      onExchange: (trace) => traces.push(trace),
    });
    cleanups.push(async () => {
      await front.close();
      files.remove();
    });
    const a = await files.token("bot-a");
    const answers = [];
    for (let i = 0; i < 3; i++) answers.push(await post(front, a, toolCall("cheap")));
    expect(answers.map((x) => x.status)).toEqual([200, 200, 429]);
    const limited = answers[2]!;
    expect(limited.headers["x-envoy-ratelimited"]).toBe("true");
    expect(Number(limited.headers["retry-after"])).toBeGreaterThan(60);
    expect(limited.json.error).toMatchObject({ code: -32029, data: { reason: "rate_limited" } });
    expect(upstream.calls).toHaveLength(2);

    await waitFor(() => traces.length === 3);
    expect(traces[2]).toMatchObject({
      answeredBy: "ratelimit",
      details: "request_rate_limited",
      flags: ["RL"],
      rateLimitStats: { ok: 0, over_limit: 1, error: 0 },
    });
    // The descriptor: the agent and issuer ext_authz set, in the gateway's domain.
    expect(traces[0]!.rateLimitRequest).toEqual({
      domain: "mcp_gateway",
      descriptors: [
        {
          entries: [
            { key: "agent", value: "bot-a" },
            { key: "issuer", value: DEV_ISSUER },
          ],
        },
      ],
      hits_addend: 0,
    });
    // The local reply went through ext_proc's encoder side: one audit record, rate_limited.
    await waitFor(() => log.audits.length === 3);
    expect(log.audits.map((r) => r.reasons)).toEqual([[], [], ["rate_limited"]]);

    // Another agent has its own bucket.
    expect((await post(front, await files.token("bot-b"), toolCall("cheap"))).status).toBe(200);
  });

  /** An Envoy-role client whose rate limit service answers as the test says. */
  class ScriptedRls extends EnvoyRoleClient {
    constructor(
      address: string,
      failureModeDeny: boolean,
      private readonly answer: () => Promise<RateLimitResponse>,
    ) {
      super(address, {
        chain: {
          globalRateLimit: {
            domain: "mcp_gateway",
            descriptors: [[{ header: "x-mcp-agent", descriptorKey: "agent", skipIfAbsent: false }]],
            timeoutMs: 250,
            failureModeDeny,
            statusOnError: 500,
            rateLimitedStatus: 429,
            xEnvoyRateLimitedHeader: true,
          },
        },
      });
    }

    override shouldRateLimit(_request: RateLimitRequest): Promise<RateLimitResponse> {
      return this.answer();
    }
  }

  it("lets the request on when the service fails (failure_mode_deny false, as shipped), refuses it otherwise; adds the service's headers", async () => {
    const files = await writeStateFiles({ upstream: upstream.url });
    const { service } = await startStateService(files);
    const failing = () => Promise.reject(new Error("14 UNAVAILABLE"));
    const open = new ScriptedRls(service.grpcAddress, false, failing);
    const closed = new ScriptedRls(service.grpcAddress, true, failing);
    const withHeaders = new ScriptedRls(service.grpcAddress, false, () =>
      Promise.resolve({
        overall_code: "OK",
        statuses: [{ code: "OK" }],
        response_headers_to_add: [{ key: "X-Quota-Note", value: "plenty" }],
      }),
    );
    cleanups.push(async () => {
      for (const c of [open, closed, withHeaders]) c.close();
      await service.close(0);
      files.remove();
    });
    const token = await files.token("bot-a");
    const exchange = (client: EnvoyRoleClient) =>
      client.exchange(
        {
          method: "POST",
          path: "/mcp/tickets",
          headers: { ...MCP_HEADERS, authorization: `Bearer ${token}` },
          body: JSON.stringify(toolCall("cheap", {}, 7)),
        },
        () => ({
          status: 200,
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ jsonrpc: "2.0", id: 7, result: { content: [] } }),
        }),
      );

    const passed = await exchange(open);
    expect(passed.response.status).toBe(200);
    expect(passed.answeredBy).toBe("upstream");
    expect(passed.rateLimitStats).toMatchObject({ error: 1, failure_mode_allowed: 1 });

    const refused = await exchange(closed);
    expect(refused.response.status).toBe(500);
    expect(refused).toMatchObject({
      answeredBy: "ratelimit",
      details: "rate_limiter_error",
      flags: ["RLSE"],
    });

    const annotated = await exchange(withHeaders);
    expect(annotated.response.status).toBe(200);
    expect(annotated.response.headers["x-quota-note"]).toBe("plenty");
  });
});

describeWithRedis("global rate limit across Envoys: two ext-service processes sharing one Redis", () => {
  let redis: TestRedis;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(() => redis?.close());

  it("allows exactly the burst between them, whichever Envoy and replica a request reaches", async () => {
    const burst = 7;
    const files = await writeStateFiles({
      upstream: upstream.url,
      // Exactness is under test, not timeouts: a loaded machine must not turn a slow answer
      // into a pass (the shipped filter fails open).
      state: {
        store: "redis",
        redis: { url: redis.url, keyPrefix: `g${Date.now()}:`, commandTimeout: "10s" },
      },
      edge: { rateLimit: { requestsPerSecond: 0.01, burst } },
    });
    cleanups.push(() => files.remove());
    const services = await Promise.all([
      spawnServe(files.configFile, cleanups, "SIGKILL"),
      spawnServe(files.configFile, cleanups, "SIGKILL"),
    ]);
    const timeoutMs = 10_000;
    const fronts = await Promise.all(
      services.map((service) =>
        startEnvoyRoleFront({
          extService: service.addresses.grpc,
          upstreams: { tickets: upstream.url },
          chain: {
            globalRateLimit: { ...SHIPPED_CHAIN.globalRateLimit!, timeoutMs },
          },
        }),
      ),
    );
    cleanups.push(async () => {
      for (const f of fronts) await f.close();
    });
    const a = await files.token("bot-a");
    const total = 30;
    const answers = await Promise.all(
      Array.from({ length: total }, (_, i) => post(fronts[i % 2]!, a, toolCall("cheap"))),
    );
    const statuses = answers.map((x) => x.status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(burst);
    expect(
      statuses.filter((s) => s === 429),
      statuses.join(","),
    ).toHaveLength(total - burst);
    for (const limited of answers.filter((x) => x.status === 429)) {
      expect(limited.headers["x-envoy-ratelimited"]).toBe("true");
      expect(limited.json.error?.data.reason).toBe("rate_limited");
    }
    expect(upstream.calls).toHaveLength(burst);
    // Both Envoys refused some: the bucket is one, not one per Envoy or per replica.
    const limitedPerFront = [0, 1].map(
      (f) => answers.filter((x, i) => i % 2 === f && x.status === 429).length,
    );
    expect(limitedPerFront.every((n) => n > 0)).toBe(true);
    // Another agent is not affected.
    expect((await post(fronts[1]!, await files.token("bot-b"), toolCall("cheap"))).status).toBe(200);
  }, 120_000);
});
