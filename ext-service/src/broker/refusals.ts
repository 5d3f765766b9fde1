import { ProtocolError, type ServerContext } from "@modelcontextprotocol/server";
import { isPlainObject, type JsonRpcId } from "../mcp/jsonrpc.js";
import { JsonRpcCode, Reasons, type Reason } from "../policy/reasons.js";

/**
 * What the broker refuses on its own (not what a hop's per-server path refused: the hop's own
 * audit record has that). Broker.handle reports each to its caller (broker/http.ts), which audits
 * it as a denial with its reason, counts it like any denial, and answers it with the request id.
 */
export interface BrokerRefusal {
  reason: Reason;
  /**
   * The precise cause for the audit record (docs/REASONS.md "Causes") of a refusal of one
   * message; the reason when absent (always, for a whole-request refusal).
   */
  cause?: string;
  /** HTTP status of a whole-request refusal; Reasons[reason].status when absent. */
  status?: number;
  /**
   * The JSON-RPC id of the refused request; null when there is none or it is unknown, and then
   * the reply answers the ids of the body's requests (PolicyEngine.rejection, docs/REASONS.md).
   */
  id: JsonRpcId | null;
  /** Appended to the reason's message. */
  detail?: string;
  /** More fields of `error.data`, beside reason and request_id. */
  data?: Record<string, unknown>;
  /** The registry server the refused request named, when it names one. */
  server?: string;
  /** The tool, prompt or resource the refused request named, as the agent named it. */
  subject?: { kind: "tools" | "prompts" | "resources"; name: string };
}

/**
 * The caller's side of one request on the aggregated endpoint. A whole-request refusal is the
 * value Broker.handle returns (the caller answers it); a refusal of one message inside an answer
 * the broker sends anyway (a JSON-RPC error for that id, HTTP 200) goes to `refused`.
 */
export interface BrokerAudit {
  /** The id of the request's audit record: every refusal carries it as `error.data.request_id`. */
  readonly requestId: string;
  refused(refusal: BrokerRefusal): void;
  /**
   * A server left out of the answer to this request (a list, or initialize): its hop failed
   * (down, refusing, or a malformed page, broker/list-page.ts), or it had not answered by the
   * fan-out's deadline (`late`, broker/fanout.ts). The record counts it as `left_out:<server>`,
   * and a late one as `fanout_timeout:<server>` too.
   */
  leftOut(server: string, late?: boolean): void;
}

/** JSON-RPC codes of the SDK's own HTTP-level errors, by what they say. */
const SDK_CODE_REASONS: ReadonlyMap<number, Reason> = new Map([
  [JsonRpcCode.ParseError, "parse_error"],
  [JsonRpcCode.InvalidRequest, "invalid_request"],
  [JsonRpcCode.MethodNotFound, "method_unknown"],
  [JsonRpcCode.InvalidParams, "invalid_envelope"],
  [JsonRpcCode.HeaderMismatch, "header_mismatch"],
  [JsonRpcCode.UnsupportedProtocolVersion, "unsupported_protocol_version"],
  [JsonRpcCode.InternalError, "internal_error"],
]);

/** The code of the SDK transport's HTTP-level errors that only their status and words tell apart. */
const SDK_GENERIC_ERROR = -32000;

const UNSUPPORTED_VERSION = "Bad Request: Unsupported protocol version";

/** HTTP statuses of the SDK's own errors whose JSON-RPC code says nothing (-32000). */
const SDK_STATUS_REASONS: ReadonlyMap<number, Reason> = new Map([
  [404, "session_unknown"],
  [406, "not_acceptable"],
  [409, "stream_conflict"],
  [413, "body_too_large"],
  [415, "unsupported_media_type"],
  [500, "internal_error"],
]);

/**
 * An error answer the MCP SDK's server transport wrote for the broker (a JSON-RPC error without a
 * reason: a missing or unsupported protocol header, a second GET stream of one session, ...), as
 * a refusal of the broker's: the reason its JSON-RPC code (or else its HTTP status) stands for,
 * the SDK's HTTP status and sentence kept. Undefined for anything else (a success, a 499).
 */
export async function sdkRefusal(response: Response): Promise<BrokerRefusal | undefined> {
  if (response.status < 400 || response.status === 499) return undefined;
  if (!(response.headers.get("content-type") ?? "").includes("application/json")) return undefined;
  let body: unknown;
  try {
    // A clone: an answer passed on as it is (undefined below) still has its body to send.
    body = await response.clone().json();
  } catch {
    body = undefined;
  }
  const error = isPlainObject(body) && isPlainObject(body.error) ? body.error : {};
  const id =
    isPlainObject(body) && (typeof body.id === "string" || typeof body.id === "number") ? body.id : null;
  const code = typeof error.code === "number" ? error.code : undefined;
  // A code with a meaning of its own that no reason stands for (MissingRequiredClientCapability,
  // -32021): the SDK's answer goes to the client as it is, since the reason's code would replace it.
  if (code !== undefined && code !== SDK_GENERIC_ERROR && !SDK_CODE_REASONS.has(code)) return undefined;
  const message = typeof error.message === "string" ? error.message : "";
  const reason =
    // The 2025 session transport says this one only in words (-32000, 400).
    (message.startsWith(UNSUPPORTED_VERSION) ? "unsupported_protocol_version" : undefined) ??
    (code === undefined ? undefined : SDK_CODE_REASONS.get(code)) ??
    SDK_STATUS_REASONS.get(response.status) ??
    "invalid_request";
  const data = isPlainObject(error.data) ? { ...error.data } : undefined;
  return {
    reason,
    status: response.status,
    id,
    ...(message !== "" && message !== Reasons[reason].message ? { detail: message } : {}),
    ...(data ? { data } : {}),
  };
}

/** The caller's side of the request a handler serves (Broker.handle puts it in the SDK's authInfo). */
export function auditOf(ctx: ServerContext | undefined): BrokerAudit | undefined {
  const audit = ctx?.http?.authInfo?.extra?.audit;
  return typeof audit === "object" && audit !== null ? (audit as BrokerAudit) : undefined;
}

/**
 * A refusal of one message by the broker itself: reported to the request's caller (audited there
 * as a denial) and the error that answers the message, with the request's audit id.
 */
export function refusedInBand(ctx: ServerContext | undefined, refusal: BrokerRefusal): ProtocolError {
  const audit = auditOf(ctx);
  audit?.refused(refusal);
  const info = Reasons[refusal.reason];
  return new ProtocolError(info.code, refusal.detail ? `${info.message}: ${refusal.detail}` : info.message, {
    ...refusal.data,
    reason: refusal.reason,
    ...(audit ? { request_id: audit.requestId } : {}),
  });
}
