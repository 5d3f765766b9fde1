import { credentials, type Client } from "@grpc/grpc-js";
import { request } from "undici";
import { afterAll, beforeAll, expect, it } from "vitest";
import { envoyProtos } from "../../ext-service/src/envoy/protos.js";
import type { RateLimitRequest, RateLimitResponse } from "../../ext-service/src/envoy/ratelimit.js";
import type { ExtService } from "../../ext-service/src/envoy/server.js";
import { describeWithRedis, startRedis, type TestRedis } from "./redis-server.js";
import { startStateService, writeStateFiles, type StateFiles } from "./support.js";

/** Envoy's global rate limit filter, as far as the protocol goes: ShouldRateLimit per request. */
function rlsClient(address: string) {
  const { RateLimitService } = envoyProtos();
  const client = new RateLimitService(address, credentials.createInsecure()) as unknown as Client & {
    ShouldRateLimit(req: RateLimitRequest, cb: (err: Error | null, res: RateLimitResponse) => void): void;
  };
  return {
    client,
    ask: (agent: string) =>
      new Promise<RateLimitResponse>((resolve, reject) =>
        client.ShouldRateLimit(
          {
            domain: "mcp_gateway",
            descriptors: [{ entries: [{ key: "agent", value: agent }] }],
            hits_addend: 1,
          },
          (err, res) => (err ? reject(err) : resolve(res)),
        ),
      ),
  };
}

describeWithRedis("rate limit service protocol on the ext-service, backed by Redis", () => {
  let redis: TestRedis;
  let files: StateFiles;
  const services: ExtService[] = [];
  const clients: ReturnType<typeof rlsClient>[] = [];

  beforeAll(async () => {
    redis = await startRedis();
    files = await writeStateFiles({
      upstream: "http://127.0.0.1:1/mcp",
      state: { store: "redis", redis: { url: redis.url } },
      edge: { rateLimit: { requestsPerSecond: 0.01, burst: 3 } },
    });
    for (let i = 0; i < 2; i++) {
      const { service } = await startStateService(files);
      services.push(service);
      clients.push(rlsClient(service.grpcAddress));
    }
  });
  afterAll(async () => {
    for (const c of clients) c.client.close();
    for (const s of services) await s.close(0);
    files?.remove();
    await redis?.close();
  });

  it("shares each descriptor's bucket across ext-service replicas", async () => {
    for (let i = 0; i < 50 && !services.every((s) => s.health.serving); i++)
      await new Promise((r) => setTimeout(r, 50));
    const answers = [];
    for (let i = 0; i < 5; i++) answers.push((await clients[i % 2]!.ask("bot-a")).overall_code);
    expect(answers).toEqual(["OK", "OK", "OK", "OVER_LIMIT", "OVER_LIMIT"]);
    const over = await clients[0]!.ask("bot-a");
    expect(over.statuses[0]!.code).toBe("OVER_LIMIT");
    expect(Number(over.statuses[0]!.duration_until_reset!.seconds)).toBeGreaterThan(50);
    expect((await clients[1]!.ask("bot-b")).overall_code).toBe("OK");
  });

  it("answers OK while Redis is down (the limiter's outage never refuses calls)", async () => {
    await redis.stop();
    try {
      await new Promise((r) => setTimeout(r, 300));
      expect((await clients[0]!.ask("bot-a")).overall_code).toBe("OK");
      expect(await services[0]!.metrics.registry.metrics()).toContain(
        'mcp_gateway_state_store_errors_total{feature="rate_limit"} 1',
      );
    } finally {
      await redis.start();
    }
    // Back on the shared buckets once Redis returns (it kept nothing: bot-a starts full).
    const ready = async (s: ExtService) => {
      const res = await request(`http://127.0.0.1:${s.adminPort}/readyz`);
      await res.body.text();
      return res.statusCode === 200;
    };
    for (let i = 0; !((await ready(services[0]!)) && (await ready(services[1]!))); i++) {
      if (i > 160) throw new Error("the ext-services never saw Redis again");
      await new Promise((r) => setTimeout(r, 50));
    }
    const answers = [];
    for (let i = 0; i < 4; i++) answers.push((await clients[i % 2]!.ask("bot-a")).overall_code);
    expect(answers).toEqual(["OK", "OK", "OK", "OVER_LIMIT"]);
  });

  it("takes hits_addend tokens at once, and answers Retry-After when over", async () => {
    const ask = (hits: number) =>
      new Promise<RateLimitResponse>((resolve, reject) =>
        clients[0]!.client.ShouldRateLimit(
          {
            domain: "mcp_gateway",
            descriptors: [{ entries: [{ key: "agent", value: "bot-h" }] }],
            hits_addend: hits,
          },
          (err, res) => (err ? reject(err) : resolve(res)),
        ),
      );
    expect((await ask(2)).overall_code).toBe("OK");
    const over = await ask(2);
    expect(over.overall_code).toBe("OVER_LIMIT");
    expect(Number(over.response_headers_to_add?.find((h) => h.key === "retry-after")?.value)).toBeGreaterThan(
      50,
    );
    expect((await ask(1)).overall_code).toBe("OK");
  });
});
