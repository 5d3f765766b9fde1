import { RateLimiter } from "./token-bucket.js";
import type { Principal } from "../policy/identity.js";
import type { StateMetrics } from "./metrics.js";
import { StoreUnavailable, type StateStore } from "./store.js";

/**
 * The edge's per-agent rate limit. With the memory store it is this process's token buckets
 * (synchronous, no store round trip). With Redis the bucket is shared: every edge replica takes
 * from the same one (GCRA on Redis' clock), so N replicas allow the configured rate, not N times
 * it. While Redis is unavailable each replica falls back to its own bucket: the limit then holds
 * per replica, and traffic is neither refused nor unlimited because of a store outage.
 */
export class AgentRateLimit {
  private readonly local: RateLimiter;

  constructor(
    private readonly store: StateStore,
    private readonly metrics: StateMetrics,
    private readonly ratePerSecond: number,
    private readonly burst: number,
  ) {
    this.local = new RateLimiter(ratePerSecond, burst);
  }

  /** 0 when the request may go, else the whole seconds to wait (for Retry-After). */
  take(principal: Principal): number | Promise<number> {
    if (this.store.kind === "memory") return this.local.take(principal.agent);
    const key = `ratelimit:agent:${principal.issuer ?? "-"}:${principal.agent}`;
    return this.store.takeToken(key, this.ratePerSecond, this.burst).then(
      (ms) => (ms === 0 ? 0 : Math.max(1, Math.ceil(ms / 1000))),
      (err: unknown) => {
        if (!(err instanceof StoreUnavailable)) throw err;
        this.metrics.storeErrors.inc({ feature: "rate_limit" });
        return this.local.take(principal.agent);
      },
    );
  }
}
