import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import { droppedLogLines } from "./logger.js";
import {
  CLIENT_NOTIFICATION_METHODS,
  CLIENT_REQUEST_METHODS,
  CLIENT_REQUEST_METHODS_2026,
} from "../mcp/methods.js";

/** HTTP methods a label may name; anything else a client sends is counted as `other`. */
const HTTP_METHODS: ReadonlySet<string> = new Set([
  "GET",
  "POST",
  "DELETE",
  "PUT",
  "PATCH",
  "HEAD",
  "OPTIONS",
  "CONNECT",
  "TRACE",
]);

/**
 * The `method` label of an exchange: its first JSON-RPC method when MCP defines it, else its
 * HTTP method when HTTP defines it, else `other`. Labels take known values only (security
 * review F3): any string a client sends would otherwise become a series that lives forever.
 */
export function methodLabel(jsonRpcMethod: string | undefined, httpMethod: string): string {
  if (jsonRpcMethod !== undefined) {
    return CLIENT_REQUEST_METHODS.has(jsonRpcMethod) ||
      CLIENT_REQUEST_METHODS_2026.has(jsonRpcMethod) ||
      CLIENT_NOTIFICATION_METHODS.has(jsonRpcMethod)
      ? jsonRpcMethod
      : "other";
  }
  return HTTP_METHODS.has(httpMethod) ? httpMethod : "other";
}

/** Causes that name a rule carry it after a colon; the label keeps the kind only. */
const CAUSE_KINDS: ReadonlySet<string> = new Set([
  "not_registered",
  "deprecated",
  "rbac_no_rule",
  "rbac_denied_by",
  "condition_false",
  "condition_error",
  "token_exchange_unreachable",
  "token_exchange_timeout",
  "token_exchange_refused",
  "token_exchange_malformed",
  "token_exchange_no_subject",
  "hop_subject_invalid",
  "hop_subject_mismatch",
  "not_in_view",
  "server_not_registered",
]);

/**
 * The `cause` label of a denial cause (policy/engine.ts Denial): its kind (`rbac_denied_by`, not
 * the rule), or the reason code a cause defaults to; anything else is `other`.
 */
export function causeLabel(cause: string, isReason: (code: string) => boolean): string {
  const colon = cause.indexOf(":");
  const kind = colon < 0 ? cause : cause.slice(0, colon);
  return CAUSE_KINDS.has(kind) || (colon < 0 && isReason(kind)) ? kind : "other";
}

/**
 * Increments of a counter kept per label set, and added to it when it is read (a scrape, or
 * get(): prom-client runs the counter's `collect` first). prom-client validates and hashes the
 * label values on every inc(), through a child from labels() too; the audit record's three
 * counters did that on every request. Here a label set is found through a map per label, and
 * its labels object is built once. Memory is that of the counter's own series: one entry per label
 * set, and the label values are bounded (known names or `other`).
 */
class PendingCounts<L extends string> {
  /** Entries by label values, one map level per label: exact, whatever characters a value holds. */
  private readonly root = new Map<string, unknown>();
  private readonly entries: { labels: Partial<Record<L, string>>; n: number }[] = [];

  constructor(
    private readonly counter: Counter<L>,
    private readonly names: readonly L[],
  ) {}

  /** One more for the label set whose values are `v0`, `v1`, ... (in the order of `names`). */
  add(v0: string, v1: string, v2 = "", v3 = ""): void {
    const last = this.names.length - 1;
    let level = this.root;
    for (let i = 0; i < last; i++) {
      const value = i === 0 ? v0 : i === 1 ? v1 : v2;
      let next = level.get(value) as Map<string, unknown> | undefined;
      if (next === undefined) level.set(value, (next = new Map<string, unknown>()));
      level = next;
    }
    const value = last === 1 ? v1 : last === 2 ? v2 : v3;
    const entry = level.get(value) as { n: number } | undefined;
    if (entry !== undefined) {
      entry.n++;
      return;
    }
    const values = [v0, v1, v2, v3];
    const labels: Partial<Record<L, string>> = {};
    this.names.forEach((name, i) => (labels[name] = values[i]));
    const created = { labels, n: 1 };
    this.entries.push(created);
    level.set(value, created);
  }

  /** Adds what was counted since the last read to the counter. */
  flush(): void {
    for (const entry of this.entries) {
      if (entry.n === 0) continue;
      this.counter.inc(entry.labels, entry.n);
      entry.n = 0;
    }
  }
}

/** Prometheus metrics, all prefixed `mcp_gateway_`, on a registry of their own. */
export class Metrics {
  readonly registry = new Registry();
  readonly requests: Counter<"server" | "method" | "decision">;
  readonly protocolRequests: Counter<"era" | "protocol_version">;
  readonly decisionSeconds: Histogram<"phase">;
  readonly violations: Counter<"reason">;
  readonly denialCauses: Counter<"cause">;
  readonly toolRequests: Counter<"agent" | "server" | "tool" | "decision">;
  private readonly pendingRequests: PendingCounts<"server" | "method" | "decision">;
  private readonly pendingProtocolRequests: PendingCounts<"era" | "protocol_version">;
  private readonly pendingToolRequests: PendingCounts<"agent" | "server" | "tool" | "decision">;
  /** Agents of gateway.yaml and `server/tool` of the registry: the only label values they get. */
  private knownAgents: ReadonlySet<string> = new Set();
  private knownTools: ReadonlySet<string> = new Set();
  readonly filtered: Counter<"kind">;
  readonly redactions: Counter<"kind">;
  readonly toolDrift: Counter<"server" | "tool">;
  readonly findings: Counter<"scanner" | "rule">;
  readonly upstreamErrors: Counter<"server" | "reason">;
  readonly breakerOpen: Gauge<"server" | "upstream">;
  readonly inflight: Gauge<"plane">;
  readonly configReloads: Counter<"result">;
  readonly tokenExchanges: Counter<"server" | "outcome" | "reason">;
  /** Per plane, the counts of exchanges in flight, read when scraped (see countInflight). */
  private readonly inflightCounts = new Map<string, Set<() => number>>();

  constructor(withDefaults = true) {
    const registers = [this.registry];
    // prom-client's own names already start with process_ or nodejs_: the prefix is ours alone.
    if (withDefaults) collectDefaultMetrics({ register: this.registry, prefix: "mcp_gateway_" });
    this.requests = new Counter({
      name: "mcp_gateway_requests_total",
      help: "HTTP exchanges by server, first JSON-RPC method and decision",
      labelNames: ["server", "method", "decision"],
      registers,
      collect: () => this.pendingRequests.flush(),
    });
    this.pendingRequests = new PendingCounts(this.requests, ["server", "method", "decision"]);
    this.protocolRequests = new Counter({
      name: "mcp_gateway_protocol_requests_total",
      help: "HTTP exchanges by MCP protocol era (2025, 2026) and revision (known revisions, other, none)",
      labelNames: ["era", "protocol_version"],
      registers,
      collect: () => this.pendingProtocolRequests.flush(),
    });
    this.pendingProtocolRequests = new PendingCounts(this.protocolRequests, ["era", "protocol_version"]);
    this.decisionSeconds = new Histogram({
      name: "mcp_gateway_decision_seconds",
      help: "Time spent in the policy core per phase",
      labelNames: ["phase"],
      buckets: [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05],
      registers,
    });
    this.violations = new Counter({
      name: "mcp_gateway_violations_total",
      help: "Policy denials and errors by reason code",
      labelNames: ["reason"],
      registers,
    });
    this.denialCauses = new Counter({
      name: "mcp_gateway_denial_causes_total",
      help: "Denials by internal cause kind (not_registered, rbac_no_rule, rbac_denied_by, condition_false, ...)",
      labelNames: ["cause"],
      registers,
    });
    this.toolRequests = new Counter({
      name: "mcp_gateway_tool_requests_total",
      help: "tools/call requests by agent and tool (configured agents and registered tools; 'other' otherwise) and decision",
      labelNames: ["agent", "server", "tool", "decision"],
      registers,
      collect: () => this.pendingToolRequests.flush(),
    });
    this.pendingToolRequests = new PendingCounts(this.toolRequests, ["agent", "server", "tool", "decision"]);
    this.filtered = new Counter({
      name: "mcp_gateway_filtered_total",
      help: "Items removed from list responses or dropped from streams, by kind",
      labelNames: ["kind"],
      registers,
    });
    this.redactions = new Counter({
      name: "mcp_gateway_redactions_total",
      help: "Values redacted by DLP, by detector kind",
      labelNames: ["kind"],
      registers,
    });
    this.toolDrift = new Counter({
      name: "mcp_gateway_tool_drift_total",
      help: "tools/list entries whose live definition did not match the registry pin (rug pulls)",
      labelNames: ["server", "tool"],
      registers,
    });
    this.findings = new Counter({
      name: "mcp_gateway_security_findings_total",
      help: "Injection rule matches and DLP detections (whatever the action), by scanner and rule or detector",
      labelNames: ["scanner", "rule"],
      registers,
    });
    this.upstreamErrors = new Counter({
      name: "mcp_gateway_upstream_errors_total",
      help: "Failures talking to MCP servers",
      labelNames: ["server", "reason"],
      registers,
    });
    this.breakerOpen = new Gauge({
      name: "mcp_gateway_breaker_open",
      help: "1 while the circuit breaker of an upstream is open",
      labelNames: ["server", "upstream"],
      registers,
    });
    this.configReloads = new Counter({
      name: "mcp_gateway_config_reloads_total",
      help: "Config and registry reloads (SIGHUP) by result: applied, or rejected with the old config kept",
      labelNames: ["result"],
      registers,
    });
    this.tokenExchanges = new Counter({
      name: "mcp_gateway_token_exchanges_total",
      help: "Per-agent credentials for token-exchange servers by outcome (issued, cached, failed) and, when failed, reason (unreachable, timeout, refused, malformed)",
      labelNames: ["server", "outcome", "reason"],
      registers,
    });
    new Counter({
      name: "mcp_gateway_log_lines_dropped_total",
      help: "Log lines (audit records included) dropped because stdout's reader fell behind",
      registers,
      collect() {
        this.reset();
        this.inc(droppedLogLines());
      },
    });
    this.inflight = new Gauge({
      name: "mcp_gateway_inflight_requests",
      help: "Exchanges in progress",
      labelNames: ["plane"],
      registers,
      collect: () => {
        for (const [plane, counts] of this.inflightCounts) {
          let n = 0;
          for (const count of counts) n += count();
          this.inflight.set({ plane }, n);
        }
      },
    });
  }

  /** The agents and `server/tool`s the labels may name (from config; set again on reload). */
  setKnownNames(agents: Iterable<string>, tools: Iterable<string>): void {
    this.knownAgents = new Set(agents);
    this.knownTools = new Set(tools);
  }

  /** Counts one tools/call with bounded labels: unknown agents and tools become `other`. */
  countToolRequest(
    agent: string | undefined,
    server: string | undefined,
    tool: string,
    decision: string,
  ): void {
    const known = server !== undefined && this.knownTools.has(`${server}/${tool}`);
    this.pendingToolRequests.add(
      agent !== undefined && this.knownAgents.has(agent) ? agent : "other",
      known ? server : "other",
      known ? tool : "other",
      decision,
    );
  }

  /** Counts one exchange (the audit record's): by server, method label and decision. */
  countRequest(server: string, method: string, decision: string): void {
    this.pendingRequests.add(server, method, decision);
  }

  /** Counts one exchange whose protocol era is known, by era and revision label. */
  countProtocolRequest(era: string, protocolVersion: string): void {
    this.pendingProtocolRequests.add(era, protocolVersion);
  }

  /**
   * Reports a plane's exchanges in flight through `count`, read at each scrape, instead of a
   * gauge update at the start and end of every request. Returns the function that stops it.
   */
  countInflight(plane: string, count: () => number): () => void {
    let counts = this.inflightCounts.get(plane);
    if (!counts) this.inflightCounts.set(plane, (counts = new Set()));
    counts.add(count);
    return () => counts.delete(count);
  }
}
