import { hostname } from "node:os";
import { currentStatus } from "../approvals/book.js";
import type { Approvals } from "../approvals/runtime.js";
import type { UpstreamStatus } from "../edge/upstream.js";
import type { PolicyEngine } from "../policy/engine.js";
import type { StateStore } from "../state/store.js";
import type { Metrics } from "../telemetry/metrics.js";
import { ToolUsage } from "../state/usage.js";

/**
 * The console's Overview (GET /console/api/overview): per server its health, circuit breakers,
 * request, denial and error rates, drifted tools and pending approvals. Everything is read from
 * what the gateway already keeps: the Prometheus counters (rates are differences of two readings),
 * the edge's breakers, the engine's drift state and the approvals in the store.
 */

/** Rates are computed over about this long (the newest reading at least this old is the baseline). */
const RATE_WINDOW_MS = 60_000;
/** Readings closer together than this are not kept (a page refreshing often keeps few). */
const MIN_SAMPLE_GAP_MS = 5_000;

interface Traffic {
  requests: number;
  denied: number;
  errors: number;
}

interface Reading {
  at: number;
  /** By server label ("-": requests that named no server), plus "*" for all of them. */
  totals: Map<string, Traffic>;
}

const ALL = "*";

/**
 * Request, denial and error rates per server from `mcp_gateway_requests_total` (the counter
 * /metrics exports; decision allow/deny/error): the difference between the counters now and a
 * reading about RATE_WINDOW_MS old. Readings are taken when the Overview is asked for, so after a
 * quiet spell the window is longer; the answer says how long it was.
 */
export class TrafficRates {
  private readings: Reading[] = [];
  private readonly first: Promise<void>;

  constructor(
    private readonly metrics: Metrics,
    private readonly now: () => number = Date.now,
  ) {
    this.first = this.read().then((r) => void this.readings.push(r));
  }

  private async read(): Promise<Reading> {
    const at = this.now();
    const totals = new Map<string, Traffic>();
    const add = (key: string, decision: unknown, value: number) => {
      let t = totals.get(key);
      if (!t) totals.set(key, (t = { requests: 0, denied: 0, errors: 0 }));
      t.requests += value;
      if (decision === "deny") t.denied += value;
      else if (decision === "error") t.errors += value;
    };
    for (const { labels, value } of (await this.metrics.requests.get()).values) {
      add(String(labels.server ?? "-"), labels.decision, value);
      add(ALL, labels.decision, value);
    }
    return { at, totals };
  }

  /** Totals since start and per-minute rates over the window, by server label and for "*". */
  async current(): Promise<{
    windowSeconds: number;
    byServer: Map<string, { total: Traffic; perMinute: Traffic }>;
  }> {
    await this.first;
    const now = await this.read();
    const base = this.readings.findLast((r) => now.at - r.at >= RATE_WINDOW_MS) ?? this.readings[0] ?? now;
    // Keep the baseline and everything newer; add this reading unless the last one is recent.
    this.readings = this.readings.filter((r) => r.at >= base.at);
    const last = this.readings.at(-1);
    if (!last || now.at - last.at >= MIN_SAMPLE_GAP_MS) this.readings.push(now);
    const minutes = (now.at - base.at) / 60_000;
    const byServer = new Map<string, { total: Traffic; perMinute: Traffic }>();
    for (const [key, total] of now.totals) {
      const before = base.totals.get(key) ?? { requests: 0, denied: 0, errors: 0 };
      const rate = (a: number, b: number) =>
        minutes > 0 ? Math.round((Math.max(0, a - b) / minutes) * 10) / 10 : 0;
      byServer.set(key, {
        total,
        perMinute: {
          requests: rate(total.requests, before.requests),
          denied: rate(total.denied, before.denied),
          errors: rate(total.errors, before.errors),
        },
      });
    }
    return { windowSeconds: Math.round((now.at - base.at) / 1000), byServer };
  }
}

/**
 * Counts every replica adds to, read from a shared (Redis) state store: the usage counters
 * (state/usage.ts) hold, per server and UTC day, the requests the gateway let through (forwarded
 * or answered from the cache; not denials, not errors). Cheap: one GET per server. The per-minute
 * rate is the difference between two readings of the same day, as for this process's counters.
 */
export class ClusterTraffic {
  private readings: { at: number; day: string; counts: Map<string, number> }[] = [];
  private readonly usage: ToolUsage;

  constructor(
    private readonly store: StateStore,
    private readonly now: () => number = Date.now,
  ) {
    this.usage = new ToolUsage(store);
  }

  /** undefined unless the store is shared by replicas; `available: false` while it does not answer. */
  async current(servers: readonly string[]): Promise<ClusterCounts | undefined> {
    if (this.store.kind !== "redis") return undefined;
    const at = this.now();
    const day = new Date(at).toISOString().slice(0, 10);
    let counts: Map<string, number>;
    try {
      const values = await Promise.all(servers.map((s) => this.usage.server(s, [day])));
      counts = new Map(servers.map((s, i) => [s, values[i]!]));
    } catch {
      return { available: false, day, window_seconds: null, servers: {} };
    }
    const sameDay = this.readings.filter((r) => r.day === day);
    const base = sameDay.findLast((r) => at - r.at >= RATE_WINDOW_MS) ?? sameDay[0];
    this.readings = sameDay.filter((r) => base === undefined || r.at >= base.at);
    const last = this.readings.at(-1);
    if (!last || at - last.at >= MIN_SAMPLE_GAP_MS) this.readings.push({ at, day, counts });
    const minutes = base ? (at - base.at) / 60_000 : 0;
    const byServer: ClusterCounts["servers"] = {};
    for (const [server, today] of counts) {
      const before = base?.counts.get(server);
      byServer[server] = {
        allowed_today: today,
        allowed_per_minute:
          minutes > 0 && before !== undefined
            ? Math.round((Math.max(0, today - before) / minutes) * 10) / 10
            : null,
      };
    }
    return {
      available: true,
      day,
      window_seconds: minutes > 0 ? Math.round(minutes * 60) : null,
      servers: byServer,
    };
  }
}

export interface ClusterCounts {
  available: boolean;
  /** The UTC day the counts are of. */
  day: string;
  /** How long the per-minute rates are over; null until a second reading of the day. */
  window_seconds: number | null;
  servers: Record<string, { allowed_today: number; allowed_per_minute: number | null }>;
}

export type Health = "ok" | "degraded" | "down";

export interface OverviewSources {
  engine: PolicyEngine;
  approvals: Approvals;
  store: StateStore;
  rates: TrafficRates;
  cluster: ClusterTraffic;
  /** The edge's upstream endpoints; undefined behind Envoy (its clusters hold the breakers). */
  upstreams: (() => UpstreamStatus[]) | undefined;
}

const NO_TRAFFIC = { requests: 0, denied: 0, errors: 0 };

export async function overviewPage(sources: OverviewSources): Promise<unknown> {
  const { engine } = sources;
  const at = Date.now();
  const [traffic, cluster, approvals] = await Promise.all([
    sources.rates.current(),
    sources.cluster.current(engine.registry.serverNames()),
    // The store is down: the rest of the page still answers, pending approvals are unknown.
    sources.approvals.book.list().catch(() => undefined),
  ]);
  const pending = approvals?.filter((a) => currentStatus(a, at) === "pending");
  const upstreams = sources.upstreams?.();
  const drift = engine.security.drift.snapshot();
  const alerts = Object.entries(drift).flatMap(([server, tools]) =>
    Object.entries(tools).map(([tool, d]) => ({
      server,
      tool,
      fields: d.fields,
      expected_pin: d.expected,
      live_pin: d.livePin,
      seen_at: new Date(d.seenAt).toISOString(),
    })),
  );
  const servers = engine.registry.serverNames().map((name) => {
    const server = engine.registry.server(name)!;
    const endpoints = upstreams?.filter((u) => u.server === name);
    const unverifiable: { tool: string; cause: string }[] = [];
    for (const tool of server.tools.keys()) {
      const status = engine.security.pinStatus(name, tool);
      if (status.state === "unverifiable") unverifiable.push({ tool, cause: status.cause });
    }
    const drifted = Object.keys(drift[name] ?? {});
    const rates = traffic.byServer.get(name) ?? { total: NO_TRAFFIC, perMinute: NO_TRAFFIC };
    const problems: string[] = [];
    if (endpoints) {
      const open = endpoints.filter((e) => e.breaker !== "closed");
      if (open.length > 0)
        problems.push(`${open.length} of ${endpoints.length} upstream breaker(s) not closed`);
    }
    if (drifted.length > 0) problems.push(`${drifted.length} tool(s) drifted from their pin`);
    if (unverifiable.length > 0)
      problems.push(`${unverifiable.length} tool(s) cannot be checked against their pin`);
    if (rates.perMinute.errors > 0) problems.push("errors in the last window");
    const allOpen =
      endpoints !== undefined && endpoints.length > 0 && endpoints.every((e) => e.breaker === "open");
    const health: Health = allOpen ? "down" : problems.length > 0 ? "degraded" : "ok";
    return {
      name,
      owner: server.config.owner ?? null,
      tools: server.tools.size,
      health,
      problems,
      upstreams: endpoints ?? null,
      traffic: rates,
      drifted,
      unverifiable,
      pending_approvals: pending ? pending.filter((a) => a.binding.server === name).length : null,
      cluster: cluster?.servers[name] ?? null,
    };
  });
  const all = traffic.byServer.get(ALL) ?? { total: NO_TRAFFIC, perMinute: NO_TRAFFIC };
  return {
    generated_at: new Date(at).toISOString(),
    breakers: sources.upstreams ? "edge" : "envoy",
    registry_version: engine.registry.version,
    store: { kind: sources.store.kind, available: sources.store.available() },
    pins_enforced: engine.config.security.pins.enforce,
    rate_window_seconds: traffic.windowSeconds,
    // The rates and totals are this process's (its Prometheus counters), not the cluster's.
    replica: { host: hostname(), pid: process.pid },
    traffic: all,
    cluster: cluster ? clusterTotals(cluster) : null,
    pending_approvals: pending ? pending.length : null,
    drift_alerts: alerts,
    servers,
  };
}

function clusterTotals(c: ClusterCounts): Record<string, unknown> {
  const rows = Object.values(c.servers);
  const rates = rows.map((r) => r.allowed_per_minute);
  return {
    source: "redis",
    available: c.available,
    day: c.day,
    window_seconds: c.window_seconds,
    allowed_today: c.available ? rows.reduce((n, r) => n + r.allowed_today, 0) : null,
    allowed_per_minute:
      c.available && rates.length > 0 && rates.every((r) => r !== null)
        ? Math.round(rates.reduce((n: number, r) => n + r!, 0) * 10) / 10
        : null,
  };
}
