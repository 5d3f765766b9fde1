import { LRUCache } from "lru-cache";
import { Counter } from "prom-client";
import { durationMs } from "../config/schema.js";
import { cacheHintsOf } from "../mcp/cache-hints.js";
import type { Principal } from "../policy/identity.js";
import type { Metrics } from "../telemetry/metrics.js";
import type { GatewayEngine } from "../config/compile.js";

export type ListKind = "tools" | "prompts" | "resources" | "resourceTemplates";

/** The list kinds each `notifications/<kind>/list_changed` makes stale. */
const KINDS_OF_CHANGE: Readonly<Record<string, readonly ListKind[]>> = {
  "notifications/tools/list_changed": ["tools"],
  "notifications/prompts/list_changed": ["prompts"],
  "notifications/resources/list_changed": ["resources", "resourceTemplates"],
};

/** Whose list it is: everything the hop's answer depends on besides the server and the kind. */
export interface ListOwner {
  principal: Principal;
  view: string | undefined;
  /** The revision the hop speaks ("2026" for the stateless era, else the session's). */
  protocolVersion: string;
  /** Client capabilities the hop declares (a server may list differently for them). */
  capabilities: readonly string[];
}

/**
 * What must still hold for a kept list to be served: the policy it was filtered under (a reload
 * replaces it: config, registry, pins), no list_changed from its server since, and the same
 * drifted tools on its server.
 */
interface Stamp {
  engine: GatewayEngine;
  changes: number;
  drift: number;
}

interface Entry {
  stamp: Stamp;
  /** When (ms) its fetch started: a change another replica saw after that makes it stale. */
  fetchedAt: number;
  /** Until when (ms) the server's caching hints let a client reuse it; 0 without hints. */
  freshUntil: number;
  items: Record<string, unknown>[];
}

/** One server's part of a list, and how long (ms) its caching hints let a client reuse it. */
export interface ListPart {
  items: Record<string, unknown>[];
  /** 0: not at all (no hints: a 2025 hop, hints off, or a ttlMs of 0). */
  freshForMs: number;
}

/** A list as one server's hop answered it, and the caching hints of each of its pages. */
export interface FetchedList {
  items: Record<string, unknown>[];
  /** The hop spoke 2026-07-28: its pages' hints (ttlMs, cacheScope) decide whether it is kept. */
  hinted: boolean;
  pages: unknown[];
}

const byRegistry = new WeakMap<Metrics, Counter<"kind" | "result">>();

function lookupCounter(metrics: Metrics): Counter<"kind" | "result"> {
  let counter = byRegistry.get(metrics);
  if (!counter) {
    counter = new Counter({
      name: "mcp_gateway_broker_list_cache_total",
      help: "Lists the aggregated endpoint needed from one server, by kind and result: hit (kept), miss (asked the server)",
      labelNames: ["kind", "result"],
      registers: [metrics.registry],
    });
    byRegistry.set(metrics, counter);
  }
  return counter;
}

/**
 * The aggregated endpoint's lists, kept per (agent, view, server, list kind) so that a list
 * through `/mcp` does not ask every server each time. An entry is the server's answer as the
 * per-server path filtered it for this agent (roles, pins, drift, security checks), so it is
 * never served to another agent, issuer, set of roles or view. It is kept for as long as the
 * server's caching hints allow (2026-07-28: ttlMs, at most `cache.hints.maxTtl`; none without
 * a positive ttlMs or with hints off), or `broker.lists.ttl` when the revision has no hints
 * (2025), and dropped before that by the server's list_changed, a reload (a new policy) and a
 * change in its server's drifted tools. Bounded by entries and by bytes (its JSON size).
 */
export class BrokerListCache {
  private entries: LRUCache<string, Entry> | undefined;
  private engine: GatewayEngine | undefined;
  /** By `<server> <kind>`: list_changed notifications seen for it. */
  private readonly changes = new Map<string, number>();
  private readonly lookups: Counter<"kind" | "result">;

  /**
   * `changedAt`: when (ms) any replica last saw the server change its lists (GatewayState with a
   * shared cache); absent, only what this process sees counts.
   */
  constructor(
    metrics: Metrics,
    private readonly changedAt?: (server: string) => Promise<number>,
  ) {
    this.lookups = lookupCounter(metrics);
  }

  /** The entries for the policy in force: a reload drops everything kept under the old one. */
  private current(engine: GatewayEngine): LRUCache<string, Entry> {
    if (this.entries && this.engine === engine) return this.entries;
    this.entries?.clear();
    const limits = engine.config.broker.lists;
    this.entries = new LRUCache<string, Entry>({
      max: limits.maxEntries,
      maxSize: limits.maxBytes,
      sizeCalculation: (entry, key) => key.length + JSON.stringify(entry.items).length,
    });
    this.engine = engine;
    return this.entries;
  }

  private stamp(engine: GatewayEngine, server: string, kind: ListKind): Stamp {
    return {
      engine,
      changes: this.changes.get(`${server} ${kind}`) ?? 0,
      drift: kind === "tools" ? engine.security.drift.revision(server) : 0,
    };
  }

  private static key(owner: ListOwner, server: string, kind: ListKind): string {
    const p = owner.principal;
    return JSON.stringify([
      p.issuer ?? null,
      p.agent,
      p.anonymous,
      [...p.roles].sort(),
      owner.view ?? null,
      server,
      kind,
      owner.protocolVersion,
      [...owner.capabilities].sort(),
    ]);
  }

  /**
   * The kept list of `server` for `owner`, or else the one `fetch` brings (kept if its hints
   * or `broker.lists.ttl` allow, and if nothing made it stale while it was fetched).
   */
  async list(
    engine: GatewayEngine,
    owner: ListOwner,
    server: string,
    kind: ListKind,
    fetch: () => Promise<FetchedList>,
  ): Promise<ListPart> {
    const key = BrokerListCache.key(owner, server, kind);
    const stamp = this.stamp(engine, server, kind);
    const kept = this.current(engine).get(key);
    if (
      kept &&
      sameStamp(kept.stamp, stamp) &&
      (this.changedAt === undefined || (await this.changedAt(server)) < kept.fetchedAt)
    ) {
      this.lookups.inc({ kind, result: "hit" });
      return { items: kept.items, freshForMs: Math.max(0, kept.freshUntil - Date.now()) };
    }
    this.lookups.inc({ kind, result: "miss" });
    const fetchedAt = Date.now();
    const fetched = await fetch();
    const ttl = keepFor(engine, fetched);
    const freshForMs = fetched.hinted ? ttl : 0;
    // A change seen while the hop was out may have come after the server answered: not kept.
    if (ttl > 0 && sameStamp(stamp, this.stamp(this.engine ?? engine, server, kind))) {
      const freshUntil = freshForMs > 0 ? Date.now() + freshForMs : 0;
      this.current(engine).set(key, { stamp, fetchedAt, freshUntil, items: fetched.items }, { ttl });
    }
    return { items: fetched.items, freshForMs };
  }

  /** A `notifications/*\/list_changed` from `server`: its lists of that kind are stale for every agent. */
  listChanged(server: string, method: string): void {
    for (const kind of KINDS_OF_CHANGE[method] ?? []) {
      const at = `${server} ${kind}`;
      this.changes.set(at, (this.changes.get(at) ?? 0) + 1);
    }
  }

  /** The server failed a hop: whatever is kept of it may list what it no longer serves. */
  serverFailed(server: string): void {
    for (const method of Object.keys(KINDS_OF_CHANGE)) this.listChanged(server, method);
  }

  clear(): void {
    this.entries?.clear();
  }
}

function sameStamp(a: Stamp, b: Stamp): boolean {
  return a.engine === b.engine && a.changes === b.changes && a.drift === b.drift;
}

/** Milliseconds a fetched list may be kept: 0 for not at all. */
function keepFor(engine: GatewayEngine, fetched: FetchedList): number {
  if (!fetched.hinted) return durationMs(engine.config.broker.lists.ttl);
  const hints = engine.config.cache.hints;
  if (!hints.enabled || fetched.pages.length === 0) return 0;
  let ttl = durationMs(hints.maxTtl);
  for (const page of fetched.pages) ttl = Math.min(ttl, cacheHintsOf(page)?.ttlMs ?? 0);
  return ttl;
}
