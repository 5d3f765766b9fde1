/**
 * Envoy's outlier detection for one cluster (source/common/upstream/outlier_detection_impl.cc),
 * the part the rendered MCP-server clusters use: the consecutive 5xx, consecutive gateway
 * failure and consecutive local-origin failure detectors, ejection for base_ejection_time times
 * the host's ejection back-off (capped by max_ejection_time), the max_ejection_percent cap, and
 * unejection on the interval timer. The Envoy-role front (envoy-role-front.ts) keeps one per
 * MCP-server cluster, configured with what render.ts writes in the cluster's outlier_detection.
 *
 * Not modelled: success rate and failure percentage ejection (the rendered clusters set
 * enforcing_success_rate 0 and leave failure percentage at its default 0, and both need five
 * hosts with 100 requests an interval by default), enforcement percentages other than 0 and 100
 * (Envoy rolls a die per ejection), ejection time jitter, runtime overrides, and active health
 * checks (which also uneject a host unless successful_active_health_check_uneject_host is false).
 * Envoy takes the ejection decision on the main thread after a worker posts it, so a request or
 * two may still reach the host; here the ejection is immediate.
 */

/** The `outlier_detection` fields the model runs, with Envoy's defaults filled in. */
export interface OutlierDetectionConfig {
  intervalMs: number;
  baseEjectionTimeMs: number;
  maxEjectionTimeMs: number;
  /** Capped at 100, as Envoy does. */
  maxEjectionPercent: number;
  alwaysEjectOneHost: boolean;
  consecutive5xx: number;
  consecutiveGatewayFailure: number;
  consecutiveLocalOriginFailure: number;
  splitExternalLocalOriginErrors: boolean;
  /** 0 or 100: whether a detected ejection of that kind is enforced. */
  enforcingConsecutive5xx: number;
  enforcingConsecutiveGatewayFailure: number;
  enforcingConsecutiveLocalOriginFailure: number;
}

/** Fields read, or accepted because they cannot act on the clusters the model runs. */
const KNOWN = new Set([
  "interval",
  "base_ejection_time",
  "max_ejection_time",
  "max_ejection_percent",
  "always_eject_one_host",
  "consecutive_5xx",
  "consecutive_gateway_failure",
  "consecutive_local_origin_failure",
  "split_external_local_origin_errors",
  "enforcing_consecutive_5xx",
  "enforcing_consecutive_gateway_failure",
  "enforcing_consecutive_local_origin_failure",
  "enforcing_success_rate",
  "enforcing_local_origin_success_rate",
  "enforcing_failure_percentage",
  "enforcing_failure_percentage_local_origin",
  "max_ejection_time_jitter",
  "successful_active_health_check_uneject_host",
]);

/** A protobuf Duration as YAML writes it ("5s", "0.250s", { seconds, nanos }) in ms. */
function protoDurationMs(value: unknown, field: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value === "string") {
    const m = /^(\d+(?:\.\d+)?)s$/.exec(value);
    if (m) return Math.round(Number(m[1]) * 1000);
  } else if (value !== null && typeof value === "object") {
    const d = value as { seconds?: unknown; nanos?: unknown };
    return Number(d.seconds ?? 0) * 1000 + Math.round(Number(d.nanos ?? 0) / 1e6);
  }
  throw new Error(`outlier_detection.${field}: '${JSON.stringify(value)}' is not a duration`);
}

/** A wrapped integer (UInt32Value): YAML gives the number itself. */
function wrapped(raw: Record<string, unknown>, field: string, fallback: number): number {
  const value = raw[field];
  if (value === undefined) return fallback;
  const n = typeof value === "object" && value !== null ? (value as { value?: unknown }).value : value;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 0)
    throw new Error(`outlier_detection.${field}: '${JSON.stringify(value)}' is not a count`);
  return n;
}

function enforcing(raw: Record<string, unknown>, field: string, fallback: number): number {
  const n = wrapped(raw, field, fallback);
  if (n !== 0 && n !== 100)
    throw new Error(`outlier_detection.${field}: ${n}% is not modelled (only 0 and 100)`);
  return n;
}

/**
 * A cluster's `outlier_detection` as the model runs it, with Envoy's defaults (DetectorConfig):
 * interval 10 s, base_ejection_time 30 s, max_ejection_time the larger of 300 s and the base,
 * max_ejection_percent 10, consecutive thresholds 5, enforcing 100% except for gateway failures
 * (0%). Refuses what the model does not run, and what Envoy refuses (max below base).
 */
export function outlierDetectionOf(raw: Record<string, unknown>): OutlierDetectionConfig {
  for (const key of Object.keys(raw))
    if (!KNOWN.has(key)) throw new Error(`outlier_detection.${key} is not modelled`);
  if (
    wrapped(raw, "enforcing_failure_percentage", 0) !== 0 ||
    wrapped(raw, "enforcing_failure_percentage_local_origin", 0) !== 0
  )
    throw new Error("outlier_detection: failure percentage ejection is not modelled");
  if ((protoDurationMs(raw.max_ejection_time_jitter, "max_ejection_time_jitter") ?? 0) !== 0)
    throw new Error("outlier_detection.max_ejection_time_jitter is not modelled");
  const base = protoDurationMs(raw.base_ejection_time, "base_ejection_time") ?? 30_000;
  const max = protoDurationMs(raw.max_ejection_time, "max_ejection_time") ?? Math.max(300_000, base);
  if (max < base)
    throw new Error("outlier_detection: max_ejection_time cannot be smaller than base_ejection_time");
  return {
    intervalMs: protoDurationMs(raw.interval, "interval") ?? 10_000,
    baseEjectionTimeMs: base,
    maxEjectionTimeMs: max,
    maxEjectionPercent: Math.min(100, wrapped(raw, "max_ejection_percent", 10)),
    alwaysEjectOneHost: raw.always_eject_one_host === true,
    consecutive5xx: wrapped(raw, "consecutive_5xx", 5),
    consecutiveGatewayFailure: wrapped(raw, "consecutive_gateway_failure", 5),
    consecutiveLocalOriginFailure: wrapped(raw, "consecutive_local_origin_failure", 5),
    splitExternalLocalOriginErrors: raw.split_external_local_origin_errors === true,
    enforcingConsecutive5xx: enforcing(raw, "enforcing_consecutive_5xx", 100),
    enforcingConsecutiveGatewayFailure: enforcing(raw, "enforcing_consecutive_gateway_failure", 0),
    enforcingConsecutiveLocalOriginFailure: enforcing(raw, "enforcing_consecutive_local_origin_failure", 100),
  };
}

export type EjectionKind =
  "consecutive_5xx" | "consecutive_gateway_failure" | "consecutive_local_origin_failure";

/** What happened to the host, as Envoy's outlier event log and stats tell it. */
export interface OutlierEvent {
  host: string;
  action: "eject" | "uneject";
  kind?: EjectionKind;
  /** Detected but not ejected: over max_ejection_percent (ejections_overflow) or not enforced. */
  outcome?: "ejected" | "overflow" | "not_enforced";
}

interface HostState {
  consecutive5xx: number;
  consecutiveGateway: number;
  consecutiveLocal: number;
  ejected: boolean;
  numEjections: number;
  /** ejectTimeBackoff(): how many base_ejection_times the next ejection lasts (before the cap). */
  backoff: number;
  lastEjection?: number;
  lastUnejection?: number;
}

/** 502, 503 and 504 (Http::CodeUtility::isGatewayError). */
const isGatewayError = (status: number): boolean => status >= 502 && status <= 504;

export class OutlierDetector {
  private readonly hosts = new Map<string, HostState>();
  private timer: NodeJS.Timeout | undefined;
  /** Every ejection decision and unejection, in order (tests and the front's trace read it). */
  readonly events: OutlierEvent[] = [];

  constructor(
    readonly config: OutlierDetectionConfig,
    hosts: string[],
    private readonly now: () => number = () => performance.now(),
  ) {
    for (const host of hosts) this.addHost(host);
  }

  addHost(host: string): void {
    if (!this.hosts.has(host))
      this.hosts.set(host, {
        consecutive5xx: 0,
        consecutiveGateway: 0,
        consecutiveLocal: 0,
        ejected: false,
        numEjections: 0,
        backoff: 0,
      });
  }

  /** Runs the interval timer (armIntervalTimer) until stop(); tests may call tick() instead. */
  start(): void {
    this.stop();
    this.timer = setInterval(() => this.tick(), this.config.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  isEjected(host: string): boolean {
    return this.hosts.get(host)?.ejected === true;
  }

  /** The hosts the load balancer may pick (FAILED_OUTLIER_CHECK clear). */
  available(): string[] {
    return [...this.hosts].filter(([, s]) => !s.ejected).map(([h]) => h);
  }

  numEjections(host: string): number {
    return this.hosts.get(host)?.numEjections ?? 0;
  }

  /** The router got response headers from the host (putHttpResponseCode). */
  httpStatus(host: string, status: number): void {
    const s = this.hosts.get(host);
    if (!s) return;
    if (status >= 500 && status <= 599) {
      if (isGatewayError(status)) {
        if (++s.consecutiveGateway === this.config.consecutiveGatewayFailure)
          this.onConsecutive(host, "consecutive_gateway_failure");
      } else s.consecutiveGateway = 0;
      if (++s.consecutive5xx === this.config.consecutive5xx) this.onConsecutive(host, "consecutive_5xx");
    } else {
      s.consecutive5xx = 0;
      s.consecutiveGateway = 0;
    }
  }

  /** The connection pool handed the router a connection (LocalOriginConnectSuccess). */
  connectSuccess(host: string): void {
    const s = this.hosts.get(host);
    // Without the split, a connect success maps to no HTTP code: nothing is counted.
    if (s && this.config.splitExternalLocalOriginErrors) s.consecutiveLocal = 0;
  }

  /**
   * The connection failed, or the stream was reset before the response (LocalOriginConnectFailed),
   * or the upstream timed out (LocalOriginTimeout). Split: the local-origin counter; otherwise
   * the failure counts as a 503 (a timeout as a 504).
   */
  localOriginFailure(host: string, kind: "connect" | "timeout" = "connect"): void {
    const s = this.hosts.get(host);
    if (!s) return;
    if (!this.config.splitExternalLocalOriginErrors) {
      this.httpStatus(host, kind === "timeout" ? 504 : 503);
      return;
    }
    if (++s.consecutiveLocal === this.config.consecutiveLocalOriginFailure)
      this.onConsecutive(host, "consecutive_local_origin_failure");
  }

  /** onConsecutiveErrorWorker: an already-ejected host is left as it is, counters included. */
  private onConsecutive(host: string, kind: EjectionKind): void {
    const s = this.hosts.get(host)!;
    if (s.ejected) return;
    this.eject(host, s, kind);
    if (kind === "consecutive_5xx") s.consecutive5xx = 0;
    else if (kind === "consecutive_gateway_failure") s.consecutiveGateway = 0;
    else s.consecutiveLocal = 0;
  }

  /** ejectHost: the max_ejection_percent check counts this host among the ejected. */
  private eject(host: string, s: HostState, kind: EjectionKind): void {
    const active = [...this.hosts.values()].filter((h) => h.ejected).length;
    const percent = (100 * (active + 1)) / this.hosts.size;
    let allowed = percent <= this.config.maxEjectionPercent;
    if (this.config.alwaysEjectOneHost) allowed = allowed || active === 0;
    if (!allowed) {
      this.events.push({ host, action: "eject", kind, outcome: "overflow" });
      return;
    }
    const enforced =
      kind === "consecutive_5xx"
        ? this.config.enforcingConsecutive5xx
        : kind === "consecutive_gateway_failure"
          ? this.config.enforcingConsecutiveGatewayFailure
          : this.config.enforcingConsecutiveLocalOriginFailure;
    if (enforced !== 100) {
      this.events.push({ host, action: "eject", kind, outcome: "not_enforced" });
      return;
    }
    s.ejected = true;
    s.numEjections++;
    s.lastEjection = this.now();
    const { baseEjectionTimeMs: base, maxEjectionTimeMs: max } = this.config;
    if (s.backoff * base < max + base) s.backoff++;
    this.events.push({ host, action: "eject", kind, outcome: "ejected" });
  }

  /**
   * onIntervalTimer: unejects each host whose min(base x back-off, max) has passed since its
   * ejection, then lowers by one the back-off of each host that has been back for an interval.
   */
  tick(): void {
    const now = this.now();
    const { baseEjectionTimeMs: base, maxEjectionTimeMs: max, intervalMs } = this.config;
    for (const [host, s] of this.hosts) {
      if (!s.ejected) continue;
      if (Math.min(base * s.backoff, max) <= now - s.lastEjection!) {
        s.ejected = false;
        s.consecutive5xx = 0;
        s.consecutiveGateway = 0;
        s.consecutiveLocal = 0;
        s.lastUnejection = now;
        this.events.push({ host, action: "uneject" });
      }
    }
    for (const s of this.hosts.values()) {
      if (s.ejected || s.lastUnejection === undefined) continue;
      if (now - s.lastUnejection >= intervalMs && s.backoff > 0) s.backoff--;
    }
  }
}
