import { createHash } from "node:crypto";
import { LRUCache } from "lru-cache";
import { Counter, Gauge } from "prom-client";
import type { GatewayConfig } from "../config/schema.js";
import { durationMs } from "../config/schema.js";
import type { CacheableRead, ToolCall } from "../policy/engine.js";
import { canonicalJson, toolPin } from "../policy/canonical.js";
import type { Principal } from "../policy/identity.js";
import type { Metrics } from "../telemetry/metrics.js";
import { StoreUnavailable, type StateStore } from "./store.js";

interface CacheMetrics {
  lookups: Counter<"result">;
  evictions: Counter;
  bytes: Gauge;
}

const byRegistry = new WeakMap<Metrics, CacheMetrics>();

function cacheMetrics(metrics: Metrics, size: () => number): CacheMetrics {
  let found = byRegistry.get(metrics);
  if (found) return found;
  const registers = [metrics.registry];
  found = {
    lookups: new Counter({
      name: "mcp_gateway_cache_lookups_total",
      help: "Result cache lookups of cacheable tools/call requests, by result: hit or miss",
      labelNames: ["result"],
      registers,
    }),
    evictions: new Counter({
      name: "mcp_gateway_cache_evictions_total",
      help: "Entries the in-memory result cache dropped to stay within maxEntries/maxBytes",
      registers,
    }),
    bytes: new Gauge({
      name: "mcp_gateway_cache_bytes",
      help: "Bytes of results held by the in-memory result cache",
      registers,
      collect() {
        this.set(size());
      },
    }),
  };
  byRegistry.set(metrics, found);
  return found;
}

/**
 * The cache key of a call: server, tool, the tool's pin (a re-pinned tool never serves results
 * of its old definition), whose entry it is (the agent, or everyone for a shared entry) and the
 * canonical arguments, hashed so keys stay short and never hold an argument in clear.
 */
export function cacheKey(call: ToolCall, principal: Principal): string {
  const cache = call.tool.cache!;
  const whose = cache.scope === "agent" ? `agent:${principal.issuer ?? "-"}:${principal.agent}` : "shared";
  const pin = call.tool.pin ?? toolPin(call.tool as unknown as Record<string, unknown>);
  const digest = createHash("sha256")
    .update(canonicalJson([call.server, call.name, pin, whose, call.arguments ?? {}]), "utf8")
    .digest("hex");
  return `cache:${digest}`;
}

/**
 * The cache key of a list or `resources/read` result the caching hints let the gateway keep:
 * server, method, the params that identify the result, the protocol revision, and whose entry it
 * is (`public`: any agent's, since the per-agent list view is applied again on every hit;
 * otherwise the issuer and agent: `private` means one authorization context).
 */
export function hintedKey(
  server: string,
  read: CacheableRead,
  protocolVersion: string | undefined,
  whose: "public" | Principal,
): string {
  const owner = whose === "public" ? "public" : `agent:${whose.issuer ?? "-"}:${whose.agent}`;
  const digest = createHash("sha256")
    .update(canonicalJson(["hinted", server, read.method, read.params, protocolVersion ?? "", owner]), "utf8")
    .digest("hex");
  return `cache:${digest}`;
}

/**
 * Results of read-only tools, in memory (an LRU bounded by entries and bytes) or, with
 * `cache.shared`, in the state store for every replica. The cache fails open: a store that
 * cannot be reached is a miss, and a result that cannot be stored is simply not cached.
 */
export class ResultCache {
  private readonly memory: LRUCache<string, string>;
  readonly metrics: CacheMetrics;

  constructor(
    config: GatewayConfig["cache"],
    private readonly store: StateStore,
    metrics: Metrics,
    private readonly onStoreError: () => void,
  ) {
    this.memory = new LRUCache<string, string>({
      max: config.maxEntries,
      maxSize: config.maxBytes,
      sizeCalculation: (value, key) => value.length + key.length,
      dispose: (_value, _key, reason) => {
        if (reason === "evict") this.metrics.evictions.inc();
      },
    });
    this.shared = config.shared && store.kind === "redis";
    this.metrics = cacheMetrics(metrics, () => this.memory.calculatedSize);
  }

  private readonly shared: boolean;

  /** Whether entries live in the state store (Redis) for every replica. */
  get sharedByReplicas(): boolean {
    return this.shared;
  }

  /** The cached result (JSON text) for `key`, or undefined. `count`: a lookup for the metric. */
  async get(key: string, count = true): Promise<string | undefined> {
    let found: string | undefined;
    if (this.shared) {
      try {
        found = await this.store.get(key);
      } catch (err) {
        if (!(err instanceof StoreUnavailable)) throw err;
        this.onStoreError();
      }
    } else found = this.memory.get(key);
    if (count) this.metrics.lookups.inc({ result: found === undefined ? "miss" : "hit" });
    return found;
  }

  async set(key: string, result: string, ttl: number | string): Promise<void> {
    const ttlMs = durationMs(ttl);
    if (ttlMs <= 0) return;
    if (!this.shared) {
      this.memory.set(key, result, { ttl: ttlMs });
      return;
    }
    try {
      await this.store.set(key, result, ttlMs);
    } catch (err) {
      if (!(err instanceof StoreUnavailable)) throw err;
      this.onStoreError();
    }
  }
}
