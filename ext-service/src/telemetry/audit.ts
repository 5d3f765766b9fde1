import type { Exchange } from "../policy/exchange.js";
import type { Logger } from "./logger.js";
import type { Metrics } from "./metrics.js";

/** The audit record: who, what, which tool, decision, reasons, latency. Never tokens or arguments. */
export interface AuditRecord {
  audit: true;
  request_id: string;
  /** W3C trace id from the request's `traceparent`, when it had one. */
  trace_id: string | null;
  plane: string;
  agent: string | null;
  anonymous: boolean;
  server: string | null;
  http_method: string;
  status: number | null;
  methods: string[];
  tools: string[];
  decision: string;
  reasons: string[];
  counters: Record<string, number>;
  latency_ms: number;
}

const finished = new WeakSet<Exchange>();

/**
 * Exchange counters into metrics. Security counters carry a label value after the colon
 * (docs/SECURITY.md): `redacted:<detector>`, `dlp:<detector>`, `injection:<rule>`,
 * `tool_drift:<tool>`; everything else counts as filtered items.
 */
function countMetric(metrics: Metrics, exchange: Exchange, key: string, n: number): void {
  const colon = key.indexOf(":");
  const prefix = colon < 0 ? key : key.slice(0, colon);
  const label = key.slice(colon + 1);
  switch (colon < 0 ? "" : prefix) {
    case "redacted":
      metrics.redactions.inc({ kind: label }, n);
      metrics.findings.inc({ scanner: "dlp", rule: label }, n);
      return;
    case "dlp":
      metrics.findings.inc({ scanner: "dlp", rule: label }, n);
      return;
    case "injection":
      metrics.findings.inc({ scanner: "injection", rule: label }, n);
      return;
    case "tool_drift":
      metrics.toolDrift.inc({ server: exchange.server ?? "-", tool: label }, n);
      return;
    default:
      metrics.filtered.inc({ kind: key }, n);
  }
}

/**
 * Closes an exchange: exactly one audit record and one metrics update, however many times an
 * adapter's cleanup paths call this (stream end, error, reset).
 */
export class AuditTrail {
  private readonly log: Logger;

  constructor(
    log: Logger,
    private readonly metrics: Metrics,
    private readonly plane: string,
    private readonly now: () => number = Date.now,
  ) {
    // The record's fields are fixed (AuditRecord) and none can hold a header, token or argument,
    // so records skip the logger's path redaction: same stream, level and base fields, without
    // the redaction pass that cost more than the rest of the record (7 of 12 us, measured).
    this.log = log.child({}, { redact: [] });
  }

  finish(exchange: Exchange, status?: number): AuditRecord | undefined {
    if (finished.has(exchange)) return undefined;
    finished.add(exchange);
    if (status !== undefined) exchange.status = status;
    const record: AuditRecord = {
      audit: true,
      request_id: exchange.requestId,
      trace_id: exchange.traceId ?? null,
      plane: this.plane,
      agent: exchange.principal?.agent ?? null,
      anonymous: exchange.principal?.anonymous ?? false,
      server: exchange.server ?? null,
      http_method: exchange.httpMethod,
      status: exchange.status ?? null,
      methods: exchange.methods,
      tools: exchange.tools,
      decision: exchange.decision,
      reasons: exchange.reasons,
      counters: exchange.counters,
      latency_ms: Math.round((this.now() - exchange.startedAt) * 1000) / 1000,
    };
    this.log.info(record, "audit");
    this.metrics.requests.inc({
      server: exchange.server ?? "-",
      method: exchange.methods[0] ?? exchange.httpMethod,
      decision: exchange.decision,
    });
    for (const reason of exchange.reasons) this.metrics.violations.inc({ reason });
    for (const [kind, n] of Object.entries(exchange.counters)) countMetric(this.metrics, exchange, kind, n);
    return record;
  }
}
