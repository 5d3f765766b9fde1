import { hasDuplicateKeysAfter, jsonTextShape } from "./duplicate-keys.js";

/**
 * JSON-RPC 2.0 message model for MCP bodies: single messages and batches, requests,
 * notifications and responses (clients answer sampling and elicitation requests with responses).
 */

export type JsonRpcId = string | number;

export interface JsonRpcRequest {
  kind: "request";
  id: JsonRpcId;
  method: string;
  params: Record<string, unknown> | undefined;
  raw: Record<string, unknown>;
}

export interface JsonRpcNotification {
  kind: "notification";
  method: string;
  params: Record<string, unknown> | undefined;
  raw: Record<string, unknown>;
}

export interface JsonRpcResponse {
  kind: "response";
  id: JsonRpcId | null;
  /** Exactly one of result / error is set. */
  result?: unknown;
  error?: { code: number; message: string; data?: unknown };
  raw: Record<string, unknown>;
}

export type JsonRpcMessage = JsonRpcRequest | JsonRpcNotification | JsonRpcResponse;

export type ParseFailure =
  "invalid_utf8" | "parse_error" | "json_too_deep" | "invalid_request" | "batch_empty" | "batch_too_large";

export type ParsedBody =
  | { ok: true; batch: boolean; messages: JsonRpcMessage[] }
  | {
      ok: false;
      reason: ParseFailure;
      detail: string;
      /** id of the message (of the batch member refused), when one could be read */
      id: JsonRpcId | null;
    };

export interface ParseLimits {
  maxJsonDepth: number;
  maxBatchSize: number;
}

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });

/** Decodes strict UTF-8; returns undefined for invalid byte sequences. */
export function decodeUtf8(bytes: Uint8Array): string | undefined {
  try {
    return utf8.decode(bytes);
  } catch {
    return undefined;
  }
}

/**
 * Maximum nesting depth of a JSON text, counted without parsing so a hostile body is refused
 * before JSON.parse builds it. Brackets inside strings do not count. Stops once past `stopAbove`.
 */
export function jsonDepth(text: string, stopAbove = Infinity): number {
  return jsonTextShape(text, stopAbove).depth;
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isValidId(v: unknown): v is JsonRpcId {
  return typeof v === "string" || (typeof v === "number" && Number.isFinite(v));
}

/** Classifies one decoded JSON value; returns a reason string when it is not JSON-RPC 2.0. */
export function classifyMessage(value: unknown): JsonRpcMessage | string {
  if (!isPlainObject(value)) return "a JSON-RPC message must be an object";
  if (value.jsonrpc !== "2.0") return "'jsonrpc' must be \"2.0\"";
  const params = value.params;
  if (params !== undefined && !isPlainObject(params) && !Array.isArray(params)) {
    return "'params' must be an object or an array";
  }
  if ("method" in value) {
    if (typeof value.method !== "string" || value.method.length === 0)
      return "'method' must be a non-empty string";
    if ("result" in value || "error" in value) return "a request must not carry 'result' or 'error'";
    // MCP params are always objects; positional params are kept as-is but not inspected.
    const objectParams = isPlainObject(params) ? params : undefined;
    if (!("id" in value))
      return { kind: "notification", method: value.method, params: objectParams, raw: value };
    if (!isValidId(value.id)) return "'id' must be a string or a number";
    return { kind: "request", id: value.id, method: value.method, params: objectParams, raw: value };
  }
  const hasResult = "result" in value;
  const hasError = "error" in value;
  if (!hasResult && !hasError)
    return "a message needs a 'method' (a request or notification), or a 'result' or 'error' (a response)";
  if (hasResult && hasError) return "a response must carry exactly one of 'result' or 'error'";
  if (!("id" in value) || (value.id !== null && !isValidId(value.id))) return "a response needs an 'id'";
  if (hasError) {
    const e = value.error;
    if (!isPlainObject(e) || typeof e.code !== "number" || typeof e.message !== "string") {
      return "'error' must have a numeric 'code' and a string 'message'";
    }
    return {
      kind: "response",
      id: value.id as JsonRpcId | null,
      error: { code: e.code, message: e.message, data: e.data },
      raw: value,
    };
  }
  return { kind: "response", id: value.id as JsonRpcId | null, result: value.result, raw: value };
}

function readableId(value: unknown): JsonRpcId | null {
  return isPlainObject(value) && isValidId(value.id) ? value.id : null;
}

/** Parses an HTTP body holding one JSON-RPC message or a batch. */
export function parseJsonRpcText(text: string, limits: ParseLimits): ParsedBody {
  // Depth and the members for the duplicate-key test, in one pass over the text.
  const shape = jsonTextShape(text, limits.maxJsonDepth);
  if (shape.depth > limits.maxJsonDepth) {
    return {
      ok: false,
      reason: "json_too_deep",
      detail: `nesting deeper than ${limits.maxJsonDepth}`,
      id: null,
    };
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return { ok: false, reason: "parse_error", detail: (err as Error).message, id: null };
  }
  // The server may read another of two same-named values than the one checked here (F7).
  if (hasDuplicateKeysAfter(shape.members, value)) {
    return { ok: false, reason: "invalid_request", detail: "an object names the same key twice", id: null };
  }
  if (Array.isArray(value)) {
    if (value.length === 0) return { ok: false, reason: "batch_empty", detail: "empty batch", id: null };
    if (value.length > limits.maxBatchSize) {
      return {
        ok: false,
        reason: "batch_too_large",
        detail: `${value.length} messages, limit ${limits.maxBatchSize}`,
        id: null,
      };
    }
    const messages: JsonRpcMessage[] = [];
    for (const item of value) {
      const m = classifyMessage(item);
      if (typeof m === "string")
        return { ok: false, reason: "invalid_request", detail: m, id: readableId(item) };
      messages.push(m);
    }
    return { ok: true, batch: true, messages };
  }
  const m = classifyMessage(value);
  if (typeof m === "string")
    return { ok: false, reason: "invalid_request", detail: m, id: readableId(value) };
  return { ok: true, batch: false, messages: [m] };
}

export function parseJsonRpcBody(body: Uint8Array, limits: ParseLimits): ParsedBody {
  const text = decodeUtf8(body);
  if (text === undefined)
    return { ok: false, reason: "invalid_utf8", detail: "invalid UTF-8 byte sequence", id: null };
  return parseJsonRpcText(text, limits);
}

export function errorResponse(
  id: JsonRpcId | null,
  code: number,
  message: string,
  data?: Record<string, unknown>,
): Record<string, unknown> {
  return { jsonrpc: "2.0", id, error: data ? { code, message, data } : { code, message } };
}
