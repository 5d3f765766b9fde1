import type { HeldValue } from "./exact-match.js";
import type { ProtocolEra } from "../mcp/eras.js";
import { errorResponse, type JsonRpcId, type JsonRpcMessage } from "../mcp/jsonrpc.js";
import type { Principal } from "./identity.js";
import type { Reason } from "./reasons.js";

export type Decision = "allow" | "deny" | "error";

/** What the gateway knows about one HTTP exchange; becomes exactly one audit record. */
export interface Exchange {
  readonly requestId: string;
  readonly startedAt: number;
  /** W3C trace id from the client's `traceparent`, so the audit record joins the trace. */
  traceId: string | undefined;
  /** The `traceparent` the exchange's spans continue (the request's, when well-formed). */
  traceparent: string | undefined;
  /**
   * A 2026-07-28 request's `params._meta.traceparent` (the OpenTelemetry MCP conventions carry
   * the context there); it wins over the HTTP header for the gateway's spans.
   */
  metaTraceparent: string | undefined;
  /** The first JSON-RPC request's id, as a string (`jsonrpc.request.id` in spans). */
  rpcId: string | undefined;
  /**
   * Whom a refusal of the whole request answers, set once the body is parsed: its requests' ids
   * (exactly as sent) and whether it was a batch. Undefined before (and without) a parsed body:
   * a refusal then carries `"id": null`, as JSON-RPC says when the id cannot be determined.
   */
  answerTo: { readonly batch: boolean; readonly ids: readonly JsonRpcId[] } | undefined;
  server: string | undefined;
  principal: Principal | undefined;
  httpMethod: string;
  /** The protocol era of the body (or, for GET/DELETE, of the session): set once classified. */
  era: ProtocolEra | undefined;
  /** The protocol revision the request names (envelope, initialize or header), if any. */
  protocolVersion: string | undefined;
  /** JSON-RPC methods seen in the request body, in order. */
  methods: string[];
  /** Tool names called (tools/call), in order. */
  tools: string[];
  /** Prompt names asked for (prompts/get), in order. */
  prompts: string[];
  /** Resource URIs read, subscribed or unsubscribed, in order (canonical; secrets redacted). */
  resources: string[];
  decision: Decision;
  /** Public reason codes (what the agent is told), the cause first. */
  reasons: Reason[];
  /**
   * The precise internal cause of each denial, for operators only: `not_registered`,
   * `rbac_no_rule`, `rbac_denied_by:<rule>`, `condition_false:<rule>`, ... (docs/REASONS.md);
   * the reason code itself where the code says it all.
   */
  causes: string[];
  status: number | undefined;
  /** Counts by kind, e.g. tools filtered from a list or values redacted by DLP. */
  counters: Record<string, number>;
  /** Requests awaiting a response, keyed by id, so responses are handled per method. */
  pending: Map<string, PendingRequest>;
  /** The client's `Mcp-Session-Id`, which a resumable stream's event ids are bound to. */
  sessionId: string | undefined;
  /**
   * How the first answered request fared upstream, as forwarded to the client: its JSON-RPC error,
   * or whether a tools/call result had `isError` (spans' `error.type`).
   */
  outcome: { code: number; message: string } | { toolError: boolean } | undefined;
  /**
   * Credentials sent upstream for this exchange alone (an exchanged per-agent token): DLP finds
   * them in the server's answer like the static ones. Never audited or logged.
   */
  heldValues: HeldValue[];
}

export interface PendingRequest {
  method: string;
  /** Tool, prompt name or resource URI the request targeted. */
  target: string | undefined;
}

export function idKey(id: JsonRpcId | null): string {
  return typeof id === "number" ? `n:${id}` : `s:${String(id)}`;
}

/** Undoes idKey: the id exactly as the request sent it ("n:0" is 0, "s:" is ""). */
export function idOfKey(key: string): JsonRpcId {
  return key.startsWith("n:") ? Number(key.slice(2)) : key.slice(2);
}

export function newExchange(requestId: string, httpMethod: string, now: number): Exchange {
  return {
    requestId,
    startedAt: now,
    traceId: undefined,
    traceparent: undefined,
    metaTraceparent: undefined,
    rpcId: undefined,
    answerTo: undefined,
    server: undefined,
    principal: undefined,
    httpMethod,
    era: undefined,
    protocolVersion: undefined,
    methods: [],
    tools: [],
    prompts: [],
    resources: [],
    decision: "allow",
    reasons: [],
    causes: [],
    status: undefined,
    counters: {},
    pending: new Map(),
    sessionId: undefined,
    outcome: undefined,
    heldValues: [],
  };
}

/** Records the parsed body's request ids, which every later refusal of the whole request answers. */
export function noteBody(exchange: Exchange, batch: boolean, messages: readonly JsonRpcMessage[]): void {
  const ids: JsonRpcId[] = [];
  for (const m of messages) if (m.kind === "request") ids.push(m.id);
  exchange.answerTo = { batch, ids };
}

/**
 * The JSON-RPC error body of a refusal of the whole request (JSON-RPC 2.0 section 5 and 6):
 * one request's refusal carries its id; a batch's is an array with one error per request in
 * it, each with its id; a body of notifications or responses only, or one not parsed (yet),
 * gets one error with `"id": null` (there is no id to answer, or none could be read).
 */
export function refusalBody(
  exchange: Exchange,
  code: number,
  message: string,
  data: Record<string, unknown>,
): unknown {
  const to = exchange.answerTo;
  if (!to || to.ids.length === 0) return errorResponse(null, code, message, data);
  if (!to.batch) return errorResponse(to.ids[0]!, code, message, data);
  return to.ids.map((id) => errorResponse(id, code, message, data));
}

export function denyExchange(
  exchange: Exchange,
  reason: Reason,
  decision: Decision = "deny",
  cause: string = reason,
): void {
  exchange.decision = decision;
  if (!exchange.reasons.includes(reason)) exchange.reasons.push(reason);
  if (!exchange.causes.includes(cause)) exchange.causes.push(cause);
}

export function countOn(exchange: Exchange, key: string, by = 1): void {
  exchange.counters[key] = (exchange.counters[key] ?? 0) + by;
}

const TRACEPARENT = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/;

/** The trace id of a W3C `traceparent` header; undefined when absent or malformed (or all zeros). */
export function traceIdOf(traceparent: string | undefined): string | undefined {
  const id = traceparent === undefined ? undefined : TRACEPARENT.exec(traceparent.trim())?.[1];
  return id === undefined || /^0+$/.test(id) ? undefined : id;
}

/** The `traceparent` itself when it is well-formed (as traceIdOf decides), else undefined. */
export function validTraceparent(traceparent: unknown): string | undefined {
  if (typeof traceparent !== "string" || traceparent.length > 64) return undefined;
  return traceIdOf(traceparent) === undefined ? undefined : traceparent.trim();
}
