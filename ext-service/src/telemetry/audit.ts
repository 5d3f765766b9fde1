import { pino } from "pino";
import type { Exchange } from "../policy/exchange.js";
import type { Logger } from "./logger.js";
import { Reasons } from "../policy/reasons.js";
import { causeLabel, methodLabel, type Metrics } from "./metrics.js";
import type { Tracing } from "./tracing.js";

const isReason = (code: string): boolean => Object.hasOwn(Reasons, code);

/** The audit record: who, what, which tool, decision, reasons, latency. Never tokens or arguments. */
export interface AuditRecord {
  audit: true;
  request_id: string;
  /** W3C trace id from the request's `traceparent`, when it had one. */
  trace_id: string | null;
  plane: string;
  agent: string | null;
  /** The issuer of the agent's token: agent names are namespaced by issuer. */
  issuer: string | null;
  anonymous: boolean;
  server: string | null;
  http_method: string;
  /** MCP protocol era of the request ("2025" or "2026"), once its body or headers were read. */
  era: string | null;
  /** The protocol revision the request named: a known revision, "other" or null. */
  protocol_version: string | null;
  status: number | null;
  methods: string[];
  tools: string[];
  resources: string[];
  decision: string;
  reasons: string[];
  /** The precise internal cause of each denial (never shown to the agent). */
  causes: string[];
  counters: Record<string, number>;
  latency_ms: number;
}

const finished = new WeakSet<Exchange>();

/**
 * Bounds for the record's client-chosen strings (security review F3): a method, tool name or URI
 * can be as long as the request body, and each record is written to the audit log.
 */
const MAX_METHOD_CHARS = 64;
const MAX_NAME_CHARS = 128;
const MAX_URI_CHARS = 512;
const MAX_LIST_ENTRIES = 32;

function boundedText(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max)}…(${text.length} chars)`;
}

/** At most MAX_LIST_ENTRIES strings, each cut to `max` characters; always a new array. */
export function boundedTexts(texts: readonly string[], max: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < texts.length && i < MAX_LIST_ENTRIES; i++) out.push(boundedText(texts[i]!, max));
  if (texts.length > MAX_LIST_ENTRIES) out.push(`…(${texts.length - MAX_LIST_ENTRIES} more)`);
  return out;
}

/** Trails with records waiting for the end of the event-loop turn (finishSoon). */
const waiting = new Set<AuditTrail>();
let flushScheduled = false;
let exitHooked = false;

function flushWaiting(): void {
  flushScheduled = false;
  for (const trail of waiting) trail.flush();
}

const AUDIT_KEYS: readonly (keyof AuditRecord)[] = [
  "audit",
  "request_id",
  "trace_id",
  "plane",
  "agent",
  "issuer",
  "anonymous",
  "server",
  "http_method",
  "era",
  "protocol_version",
  "status",
  "methods",
  "tools",
  "resources",
  "decision",
  "reasons",
  "causes",
  "counters",
  "latency_ms",
];

/**
 * Writes `log.info(record, "audit")`'s line without pino's field-by-field serialisation (about
 * 5 us of a record's 6 in a micro benchmark, more inside a loaded edge): the record's fields are
 * fixed, plain JSON, so one JSON.stringify gives the same text pino builds from them. The level
 * prefix, time, bindings and line end are pino's own (pino.symbols), read at each write, so
 * setBindings() and level changes hold.
 * Undefined (use log.info) when the logger does anything to a line this would skip: a mixin,
 * hooks, a log formatter, a nested key, a message prefix, redaction or serializers of these
 * fields, or a stream that wants metadata (multistream).
 */
function lineWriter(log: Logger): ((record: AuditRecord) => void) | undefined {
  const S = pino.symbols;
  const l = log as unknown as Record<symbol, unknown>;
  const hooks = l[S.hooksSym] as { logMethod?: unknown; streamWrite?: unknown } | undefined;
  const formatters = l[S.formattersSym] as { log?: unknown } | undefined;
  const stream = l[S.streamSym] as ({ write?: unknown } & Record<symbol, unknown>) | undefined;
  const stringifiers = l[S.stringifiersSym] as Record<string | symbol, unknown> | undefined;
  const serializers = (l[S.serializersSym] ?? {}) as Record<string, unknown>;
  const messageKey = l[S.messageKeySym];
  const info = log.levels.values.info;
  // Not in pino's type declarations, but in pino.symbols.
  const msgPrefixSym = (S as unknown as Record<string, symbol | undefined>).msgPrefixSym;
  if (
    !hooks ||
    hooks.logMethod ||
    hooks.streamWrite ||
    !formatters ||
    formatters.log ||
    l[S.mixinSym] ||
    l[S.nestedKeySym] ||
    !msgPrefixSym ||
    typeof l[msgPrefixSym] === "string" ||
    !stream ||
    typeof stream.write !== "function" ||
    stream[S.needsMetadataGsym] === true ||
    !stringifiers ||
    Object.keys(stringifiers).length > 0 ||
    stringifiers[S.wildcardFirstSym] !== undefined ||
    typeof messageKey !== "string" ||
    serializers[messageKey] ||
    AUDIT_KEYS.some((k) => serializers[k]) ||
    typeof l[S.timeSym] !== "function" ||
    info === undefined
  ) {
    return undefined;
  }
  const write = stream.write as (line: string) => unknown;
  const message = `,${JSON.stringify(messageKey)}:"audit"`;
  return (record) => {
    if (!log.isLevelEnabled("info")) return;
    const head = (l[S.lsCacheSym] as Record<number, string>)[info]!;
    const time = (l[S.timeSym] as () => string).call(log);
    const fields = JSON.stringify(record);
    write.call(
      stream,
      `${head}${time}${l[S.chindingsSym] as string},${fields.slice(1, -1)}${message}${l[S.endSym] as string}`,
    );
  };
}

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
    // Counted by the state features themselves (ext-service/src/state/metrics.ts) and the
    // approvals runtime (ext-service/src/approvals/runtime.ts).
    case "budget_warning":
    case "budget_exhausted":
    case "budget_unchecked":
    case "cache":
    case "approval":
      return;
    default:
      metrics.filtered.inc({ kind: key }, n);
  }
}

/** How many recent audit records a trail keeps in memory for the admin console. */
export const RECENT_AUDIT_RECORDS = 1000;

/**
 * The most recent audit records, oldest overwritten first: a fixed-size ring, so memory stays
 * bounded whatever the traffic. The admin console reads it; the log stays the record of truth.
 */
export class AuditRing {
  private readonly slots: (AuditRecord | undefined)[];
  private next = 0;

  constructor(readonly capacity: number = RECENT_AUDIT_RECORDS) {
    this.slots = new Array<AuditRecord | undefined>(capacity);
  }

  add(record: AuditRecord): void {
    this.slots[this.next] = record;
    this.next = (this.next + 1) % this.capacity;
  }

  /** The records, newest first. */
  newestFirst(): AuditRecord[] {
    const out: AuditRecord[] = [];
    for (let i = 1; i <= this.capacity; i++) {
      const record = this.slots[(this.next - i + this.capacity) % this.capacity];
      if (record === undefined) break;
      out.push(record);
    }
    return out;
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
    this.writeLine = lineWriter(this.log) ?? ((record) => this.log.info(record, "audit"));
  }

  private readonly writeLine: (record: AuditRecord) => void;

  /** The latest records, for the admin console's Audit page. */
  readonly recent = new AuditRing();

  /** Spans end with the exchange's record (telemetry/tracing.ts); undefined when tracing is off. */
  tracing: Tracing | undefined;

  private pending: AuditRecord[] = [];

  finish(exchange: Exchange, status?: number): AuditRecord | undefined {
    return this.close(exchange, status, false);
  }

  /**
   * As finish(), but the record is written at the end of the current event-loop turn, once the
   * reply that ends the exchange has gone out: a synchronous log write before it delayed every
   * ext_proc exchange (measured: about 3% of the median latency at 300 exchanges/s). The record
   * is taken now. Records still waiting are written by flush(): the service's close() and the
   * process's exit call it, so only a hard kill (SIGKILL) can lose the current turn's records.
   */
  finishSoon(exchange: Exchange, status?: number): AuditRecord | undefined {
    return this.close(exchange, status, true);
  }

  /** Writes the records waiting from finishSoon(). */
  flush(): void {
    waiting.delete(this);
    const records = this.pending;
    this.pending = [];
    for (const record of records) this.writeLine(record);
  }

  private close(exchange: Exchange, status: number | undefined, later: boolean): AuditRecord | undefined {
    if (finished.has(exchange)) return undefined;
    finished.add(exchange);
    if (status !== undefined) exchange.status = status;
    const record: AuditRecord = {
      audit: true,
      request_id: exchange.requestId,
      trace_id: exchange.traceId ?? null,
      plane: this.plane,
      agent: exchange.principal?.agent ?? null,
      issuer: exchange.principal?.issuer ?? null,
      anonymous: exchange.principal?.anonymous ?? false,
      server: exchange.server ?? null,
      http_method: boundedText(exchange.httpMethod, MAX_METHOD_CHARS),
      era: exchange.era ?? null,
      protocol_version: exchange.protocolVersion ?? null,
      status: exchange.status ?? null,
      // Client-chosen strings, bounded (a copy, so nothing done to the exchange later shows in it).
      methods: boundedTexts(exchange.methods, MAX_METHOD_CHARS),
      tools: boundedTexts(exchange.tools, MAX_NAME_CHARS),
      resources: boundedTexts(exchange.resources, MAX_URI_CHARS),
      decision: exchange.decision,
      reasons: later ? [...exchange.reasons] : exchange.reasons,
      causes: later ? [...exchange.causes] : exchange.causes,
      counters: later ? { ...exchange.counters } : exchange.counters,
      latency_ms: Math.round((this.now() - exchange.startedAt) * 1000) / 1000,
    };
    if (later) this.defer(record);
    else this.writeLine(record);
    // A record written now still shares the exchange's arrays: the ring keeps its own copy.
    this.recent.add(
      later
        ? record
        : {
            ...record,
            reasons: [...record.reasons],
            causes: [...record.causes],
            counters: { ...record.counters },
          },
    );
    this.tracing?.finish(exchange);
    this.metrics.countRequest(
      exchange.server ?? "-",
      methodLabel(exchange.methods[0], exchange.httpMethod),
      exchange.decision,
    );
    if (exchange.era !== undefined) {
      this.metrics.countProtocolRequest(exchange.era, exchange.protocolVersion ?? "none");
    }
    for (const reason of exchange.reasons) this.metrics.violations.inc({ reason });
    for (let i = 0; i < exchange.tools.length && i < MAX_LIST_ENTRIES; i++) {
      const tool = exchange.tools[i]!;
      this.metrics.countToolRequest(exchange.principal?.agent, exchange.server, tool, exchange.decision);
    }
    for (const cause of exchange.causes) {
      this.metrics.denialCauses.inc({ cause: causeLabel(cause, isReason) });
    }
    for (const [kind, n] of Object.entries(exchange.counters)) countMetric(this.metrics, exchange, kind, n);
    return record;
  }

  private defer(record: AuditRecord): void {
    this.pending.push(record);
    waiting.add(this);
    if (!flushScheduled) {
      flushScheduled = true;
      setImmediate(flushWaiting);
    }
    if (!exitHooked) {
      exitHooked = true;
      process.once("exit", flushWaiting);
    }
  }
}
