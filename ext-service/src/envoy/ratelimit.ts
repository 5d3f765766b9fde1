import type { sendUnaryData, ServerUnaryCall } from "@grpc/grpc-js";
import { StoreUnavailable } from "../state/store.js";
import type { AdapterContext } from "./context.js";

/** envoy.service.ratelimit.v3.RateLimitRequest, as decoded (keepCase). */
export interface RateLimitRequest {
  domain?: string;
  descriptors?: { entries?: { key?: string; value?: string }[] }[];
  hits_addend?: number;
}

type Code = "OK" | "OVER_LIMIT";

export interface RateLimitResponse {
  overall_code: Code;
  statuses: { code: Code; duration_until_reset?: { seconds: number; nanos: number } }[];
}

/**
 * Envoy's rate limit service protocol (`envoy.service.ratelimit.v3.RateLimitService`), answered
 * from the state store, so every Envoy in front of replicas that share Redis takes from the same
 * buckets. Each descriptor is one bucket (domain plus its entries, e.g. the agent), with the
 * rate and burst of `edge.rateLimit`: the same token bucket as the local edge. While the store is
 * unavailable the answer is OK (the request is not limited): an outage of the limiter must not
 * refuse every call; Envoy's own local_ratelimit still bounds each instance.
 */
export function createRateLimitHandler(ctx: AdapterContext) {
  return function shouldRateLimit(
    call: ServerUnaryCall<RateLimitRequest, RateLimitResponse>,
    callback: sendUnaryData<RateLimitResponse>,
  ): void {
    const { rateLimit } = ctx.engine.config.edge;
    const domain = call.request.domain ?? "";
    const descriptors = call.request.descriptors ?? [];
    const take = descriptors.map((d) => {
      const entries = (d.entries ?? []).map((e) => `${e.key ?? ""}=${e.value ?? ""}`).join("|");
      return ctx.state.store.takeToken(
        `rls:${domain}:${entries}`,
        rateLimit.requestsPerSecond,
        rateLimit.burst,
      );
    });
    Promise.all(take).then(
      (waits) => {
        const statuses = waits.map((ms) =>
          ms === 0
            ? { code: "OK" as const }
            : {
                code: "OVER_LIMIT" as const,
                duration_until_reset: { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 },
              },
        );
        const over = statuses.some((s) => s.code === "OVER_LIMIT");
        callback(null, { overall_code: over ? "OVER_LIMIT" : "OK", statuses });
      },
      (err: unknown) => {
        if (!(err instanceof StoreUnavailable)) {
          ctx.logger.error({ err }, "rate limit service: internal error");
          callback(err as Error);
          return;
        }
        ctx.state.metrics.storeErrors.inc({ feature: "rate_limit" });
        callback(null, { overall_code: "OK", statuses: descriptors.map(() => ({ code: "OK" as const })) });
      },
    );
  };
}
