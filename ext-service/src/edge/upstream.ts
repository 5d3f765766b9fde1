import { Pool } from "undici";
import type { Logger } from "../telemetry/logger.js";
import type { Metrics } from "../telemetry/metrics.js";
import { CircuitBreaker, type BreakerState, type BreakerTicket } from "./breaker.js";

export interface UpstreamOptions {
  breakerFailures: number;
  breakerCooldownMs: number;
  connectTimeoutMs: number;
}

/** One upstream URL of a server: its connection pool, breaker and in-flight count. */
export class Endpoint {
  readonly pool: Pool;
  readonly breaker: CircuitBreaker;
  /** Path (and query) of the MCP endpoint on the upstream, e.g. `/mcp`. */
  readonly path: string;
  /** The URL without credentials, for metrics labels and logs. */
  readonly label: string;
  /** Host and port of the upstream (spans' server.address and server.port). */
  readonly address: string;
  readonly port: number;
  inflight = 0;

  constructor(server: string, url: string, options: UpstreamOptions, metrics: Metrics, logger?: Logger) {
    const parsed = new URL(url);
    this.path = parsed.pathname + parsed.search;
    this.label = `${parsed.origin}${parsed.pathname}`;
    this.address = parsed.hostname.replace(/^\[(.*)\]$/, "$1");
    this.port = parsed.port ? Number(parsed.port) : parsed.protocol === "https:" ? 443 : 80;
    this.pool = new Pool(parsed.origin, {
      connectTimeout: options.connectTimeoutMs,
      // Streams (SSE) are long-lived; time limits are applied per request by the edge.
      headersTimeout: 0,
      bodyTimeout: 0,
      keepAliveTimeout: 4_000,
    });
    const labels = { server, upstream: this.label };
    metrics.breakerOpen.set(labels, 0);
    this.breaker = new CircuitBreaker(options.breakerFailures, options.breakerCooldownMs, (state) => {
      metrics.breakerOpen.set(labels, state === "closed" ? 0 : 1);
      logger?.[state === "open" ? "warn" : "info"]({ ...labels, breaker: state }, "circuit breaker");
    });
  }
}

/** One upstream endpoint as the admin console shows it. */
export interface UpstreamStatus {
  server: string;
  /** The URL without credentials (as in metrics labels). */
  upstream: string;
  breaker: BreakerState;
  inflight: number;
}

export type Selection = { endpoint: Endpoint; ticket: BreakerTicket } | { endpoint: undefined };

/**
 * The endpoints of one server. Requests go to the endpoint with the fewest requests in flight
 * among those whose breaker admits one (an endpoint with an open breaker is skipped: passive
 * ejection). MCP sessions live in one replica: a session's sealed id names the endpoint that
 * created it (policy/session-seal.ts), and its requests go there on any edge replica; if that
 * endpoint is ejected the request fails rather than reaching a replica that does not know it.
 */
export class UpstreamGroup {
  private next = 0;

  constructor(
    readonly server: string,
    readonly endpoints: readonly Endpoint[],
  ) {}

  /** `sessionEndpoint`: the label of the endpoint that owns the request's session, if any. */
  pick(sessionEndpoint: string | undefined): Selection {
    if (this.endpoints.length === 1) {
      const endpoint = this.endpoints[0]!;
      const ticket = endpoint.breaker.tryAcquire();
      return ticket ? { endpoint, ticket } : { endpoint: undefined };
    }
    if (sessionEndpoint !== undefined) {
      const bound = this.endpoints.find((e) => e.label === sessionEndpoint);
      if (bound) {
        const ticket = bound.breaker.tryAcquire();
        return ticket ? { endpoint: bound, ticket } : { endpoint: undefined };
      }
    }
    let best: Endpoint | undefined;
    const n = this.endpoints.length;
    const start = this.next++ % n;
    for (let i = 0; i < n; i++) {
      const e = this.endpoints[(start + i) % n]!;
      if (!e.breaker.available()) continue;
      if (!best || e.inflight < best.inflight) best = e;
    }
    const ticket = best?.breaker.tryAcquire();
    return best && ticket ? { endpoint: best, ticket } : { endpoint: undefined };
  }
}

/** All upstream groups, built once from the registry. */
export class Upstreams {
  private readonly groups = new Map<string, UpstreamGroup>();
  /** Each server's upstream URLs as configured, to tell on reload whether its group can stay. */
  private readonly urls = new Map<string, string>();

  constructor(
    servers: Iterable<{ name: string; upstreams: readonly string[] }>,
    private readonly options: UpstreamOptions,
    private readonly metrics: Metrics,
    private readonly logger?: Logger,
  ) {
    for (const s of servers) this.add(s);
  }

  private add(s: { name: string; upstreams: readonly string[] }): void {
    const endpoints = s.upstreams.map(
      (url) => new Endpoint(s.name, url, this.options, this.metrics, this.logger),
    );
    this.groups.set(s.name, new UpstreamGroup(s.name, endpoints));
    this.urls.set(s.name, JSON.stringify(s.upstreams));
  }

  /**
   * Applies a reloaded registry. A server whose URLs are unchanged keeps its group (sessions,
   * breakers, open connections); a new or changed one gets a fresh group. Pools nobody routes to
   * any more are closed, which lets their requests in flight (long SSE streams too) finish first.
   */
  update(servers: Iterable<{ name: string; upstreams: readonly string[] }>): void {
    const wanted = new Map([...servers].map((s) => [s.name, s.upstreams] as const));
    // Retire first, so an endpoint that moves to a fresh group keeps its breaker metric.
    for (const [name, group] of [...this.groups]) {
      const upstreams = wanted.get(name);
      if (upstreams && this.urls.get(name) === JSON.stringify(upstreams)) continue;
      this.groups.delete(name);
      this.urls.delete(name);
      for (const endpoint of group.endpoints) {
        this.metrics.breakerOpen.remove({ server: name, upstream: endpoint.label });
        endpoint.pool.close().catch(() => {});
      }
    }
    for (const [name, upstreams] of wanted) if (!this.groups.has(name)) this.add({ name, upstreams });
  }

  group(server: string): UpstreamGroup | undefined {
    return this.groups.get(server);
  }

  /** Every endpoint's breaker state and requests in flight, by server in registry order. */
  status(): UpstreamStatus[] {
    return [...this.groups.values()].flatMap((g) =>
      g.endpoints.map((e) => ({
        server: g.server,
        upstream: e.label,
        breaker: e.breaker.current,
        inflight: e.inflight,
      })),
    );
  }

  async close(): Promise<void> {
    const pools = [...this.groups.values()].flatMap((g) => g.endpoints.map((e) => e.pool));
    await Promise.allSettled(pools.map((p) => p.destroy()));
  }
}
