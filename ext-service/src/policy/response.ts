import { classifyMessage, decodeUtf8, errorResponse, type JsonRpcMessage } from "../mcp/jsonrpc.js";
import { hasDuplicateKeys } from "../mcp/duplicate-keys.js";
import { arrayItemSources } from "../mcp/json-source.js";
import { SseEventTooLarge, SseParser, formatSseEvent, type SseEvent } from "../mcp/sse.js";
import type { SubjectKind } from "../mcp/methods.js";
import {
  countOn,
  denyExchange,
  idKey,
  idOfKey,
  refusalBody,
  type Exchange,
  type PendingRequest,
} from "./exchange.js";
import type { Rbac } from "./rbac.js";
import type { ToolRegistry } from "./registry.js";
import type { StreamResumption } from "./resumption.js";
import type { SecurityPolicy } from "./security.js";
import { Reasons } from "./reasons.js";
import { isCanonicalResourceUri, resourceTemplateProblem } from "./resource-uri.js";

const encoder = new TextEncoder();
const EMPTY = new Uint8Array(0);
/** An SSE `retry` a client applies: ASCII digits (bounded, so a client's integer holds it). */
const RETRY = /^[0-9]{1,9}$/;

export type ResponseMode = "json" | "sse" | "passthrough";

/**
 * How a response body is inspected. A success whose body is neither JSON nor SSE would reach the
 * agent unread (a DLP bypass for any server that labels its output text/plain), so it takes the
 * JSON path: an empty body passes, anything that is not JSON-RPC is refused (fail closed). Error
 * statuses, 204 and 304 pass as they are: they carry no tool output.
 */
export function responseMode(contentType: string | undefined, status: number): ResponseMode {
  // What servers send nearly always, answered without splitting and lower-casing a copy.
  if (contentType === "application/json") return "json";
  if (contentType === "text/event-stream") return "sse";
  const type = (contentType ?? "").split(";")[0]!.trim().toLowerCase();
  if (type === "application/json") return "json";
  if (type === "text/event-stream") return "sse";
  // Error bodies are read too (security review F7): clients put them in the error text the model
  // sees. 1xx, 204, 3xx and 304 carry no body to read.
  return (status >= 200 && status < 300 && status !== 204) || status >= 400 ? "json" : "passthrough";
}

/**
 * What the transformer uses of the policy engine. PolicyEngine satisfies it; naming it here keeps
 * the dependency one-way (engine.ts builds transformers, response.ts never imports engine.ts).
 */
export interface ResponsePolicies {
  readonly limits: { readonly maxResponseBytes: number; readonly maxSseEventBytes: number };
  readonly resumption: Pick<StreamResumption, "seal">;
  readonly security: Pick<SecurityPolicy, "inspectServerMessage">;
  readonly registry: Pick<ToolRegistry, "tool">;
  readonly rbac: Pick<Rbac, "mayList">;
  today(): string;
}

/** Result of rewriting one JSON-RPC message: unchanged, replaced, or dropped entirely. */
type MessageRewrite = { kind: "same" } | { kind: "replace"; value: unknown } | { kind: "drop" };
const SAME: MessageRewrite = { kind: "same" };

/**
 * Rewrites an upstream response for one exchange. JSON bodies are handled whole
 * (`transformJson`); SSE is handled event by event as chunks arrive (`push`/`end`), so a
 * long-lived stream is never buffered beyond the event in progress.
 */
export class ResponseTransformer {
  readonly mode: ResponseMode;
  private sse: SseParser | undefined;
  /** Set when the stream was cut or broken and later chunks must not reach the client. */
  private failed = false;
  /** The last SSE event id seen: when set, the stream is resumable (`Last-Event-ID`). */
  lastEventId: string | undefined;
  /**
   * Set when transformJson refused the whole body: the adapters then answer with this reason's
   * HTTP status and a JSON content type instead of the upstream's.
   */
  refusal: "upstream_invalid_response" | "response_too_large" | undefined;
  /**
   * Called with each response to a pending request that every security check (pins, poisoning,
   * injection, DLP) let through unchanged, as the server sent it: the result cache keeps only
   * such answers, so nothing a policy refused, redacted or annotated. The per-agent view of a
   * list (RBAC filtering, cacheScope) is not part of it: a hit is judged again for its agent.
   */
  onPassed: ((message: JsonRpcMessage & { kind: "response" }, request: PendingRequest) => void) | undefined;
  /** Called with the method of each server notification that passed (list_changed, updated, ...). */
  onNotification: ((method: string) => void) | undefined;
  /**
   * Set when an error status's body (not JSON-RPC) was replaced by the gateway's own JSON-RPC
   * error: the status stays the upstream's, the content type becomes JSON.
   */
  replacedErrorBody = false;

  constructor(
    private readonly engine: ResponsePolicies,
    private readonly exchange: Exchange,
    contentType: string | undefined,
    private readonly status: number,
  ) {
    this.mode = responseMode(contentType, status);
  }

  /**
   * Whole JSON body. Returns the replacement body, or undefined when it passes unchanged. A
   * successful response that is not JSON-RPC is replaced by an error (fail closed); error
   * statuses with non-JSON-RPC bodies pass, since they carry no tool output.
   */
  transformJson(body: Uint8Array): Uint8Array | undefined {
    if (body.byteLength === 0) return undefined;
    if (body.byteLength > this.engine.limits.maxResponseBytes) return this.invalid("response_too_large");
    const text = decodeUtf8(body);
    let value: unknown;
    try {
      if (text === undefined) throw new Error("invalid UTF-8");
      value = JSON.parse(text);
    } catch {
      return this.status >= 400 ? this.ownErrorBody() : this.invalid("upstream_invalid_response");
    }
    // Forwarding the upstream's bytes is safe only if every reader parses them as JSON.parse did.
    const duplicates = hasDuplicateKeys(text, value);
    if (Array.isArray(value)) {
      let changed = false;
      const out: unknown[] = [];
      const sources = duplicates ? arrayItemSources(text, []) : undefined;
      for (let i = 0; i < value.length; i++) {
        const item: unknown = value[i];
        const source = sources?.[i];
        const r = this.rewriteValue(
          item,
          undefined,
          duplicates && (source === undefined || hasDuplicateKeys(source, item)),
        );
        if (r.kind === "same") out.push(item);
        else {
          changed = true;
          if (r.kind === "replace") out.push(r.value);
        }
      }
      return changed ? encoder.encode(JSON.stringify(out)) : undefined;
    }
    const r = this.rewriteValue(value, text, duplicates);
    if (r.kind === "same") return undefined;
    if (r.kind === "replace") return encoder.encode(JSON.stringify(r.value));
    // JSON that is not JSON-RPC: an error status gets the gateway's own body; a success is refused.
    return this.status >= 400 ? this.ownErrorBody() : this.invalid("upstream_invalid_response");
  }

  /**
   * An error status whose body is not JSON-RPC: nothing inspects free text or arbitrary JSON, and
   * the SDK clients put it in the error the model reads (security review F7). The client gets the
   * upstream's status with the gateway's JSON-RPC error instead.
   */
  private ownErrorBody(): Uint8Array {
    this.replacedErrorBody = true;
    countOn(this.exchange, "error_bodies_replaced");
    // A wrong path or a server that is not MCP (trial B10): a failure with its reason, not an allow.
    denyExchange(this.exchange, "upstream_invalid_response", "error");
    const info = Reasons.upstream_invalid_response;
    return encoder.encode(
      JSON.stringify(
        refusalBody(
          this.exchange,
          info.code,
          `The MCP server answered HTTP ${this.status} without a JSON-RPC error`,
          { reason: "upstream_invalid_response", request_id: this.exchange.requestId },
        ),
      ),
    );
  }

  /**
   * One chunk of an SSE body; returns the bytes to send on in its place (possibly empty).
   * `final` is for `end()`: the stream is over, so a trailing lone CR ends its line.
   */
  push(chunk: Uint8Array, final = false): Uint8Array {
    if (this.failed) return EMPTY;
    this.sse ??= new SseParser(this.engine.limits.maxSseEventBytes);
    let events;
    try {
      events = this.sse.push(chunk, final);
    } catch (err) {
      if (!(err instanceof SseEventTooLarge)) throw err;
      this.failed = true;
      denyExchange(this.exchange, "response_too_large", "error");
      return encoder.encode(this.errorEvent("response_too_large"));
    }
    if (events.length === 0) return EMPTY;
    let out = "";
    for (const ev of events) out += this.reemit(ev);
    return out.length ? encoder.encode(out) : EMPTY;
  }

  /**
   * One SSE event as the client receives it: rebuilt from the fields the gateway read, never the
   * upstream's text (security review F13), so comments, unknown fields and odd values cannot
   * carry unscanned text to raw-stream readers. `data` is the inspected message, `id` sealed,
   * `retry` kept only when it is a number a client would apply, `event` only as `message` (the
   * type MCP clients read; the data of another type is neither inspected nor forwarded). A block
   * of comments alone becomes an empty comment, so keep-alives still keep the connection open.
   */
  private reemit(ev: SseEvent): string {
    if (ev.id !== undefined) this.lastEventId = ev.id;
    const typed = ev.event !== undefined && ev.event !== "" && ev.event !== "message";
    let data = ev.data;
    if (data !== undefined && data !== "") {
      // An event whose message is dropped is dropped whole, id and retry with it.
      if (typed) return this.droppedEvent();
      let value: unknown;
      try {
        value = JSON.parse(data);
      } catch {
        // MCP events carry JSON-RPC; anything else is dropped rather than passed uninspected.
        return this.droppedEvent();
      }
      const r = this.rewriteValue(value, data, hasDuplicateKeys(data, value));
      if (r.kind === "drop") return "";
      if (r.kind === "replace") data = JSON.stringify(r.value);
    } else if (typed) {
      data = undefined;
    }
    // Sealed after the event's answer left `pending`: resuming after it waits for the rest.
    const id = ev.id === undefined ? undefined : this.sealedId(ev.id);
    const retry = ev.retry !== undefined && RETRY.test(ev.retry) ? ev.retry : undefined;
    if (id === undefined && retry === undefined && (data === undefined || data === "")) {
      return ev.comment ? ":\n\n" : "";
    }
    // A priming event (SEP-1699) keeps its empty data line; `event: message` stays when written.
    const event = ev.event === "message" && data !== undefined ? "message" : undefined;
    return formatSseEvent({ event, id, retry, data });
  }

  private droppedEvent(): string {
    countOn(this.exchange, "sse_events_dropped");
    return "";
  }

  /**
   * End of the SSE body: returns the last bytes to send (an event whose final line ended in a
   * lone CR completes only now). An event cut mid-way is dropped, as an SSE client would.
   */
  end(): Uint8Array {
    if (!this.sse) return EMPTY;
    const out = this.push(EMPTY, true);
    const tail = this.sse.end();
    if (tail.trim().length > 0) countOn(this.exchange, "sse_truncated_events");
    return out;
  }

  /**
   * Every event id reaching the client is sealed (policy/resumption.ts): a `Last-Event-ID` is then
   * either one the gateway minted for this agent, server and session, with the requests a resumed
   * stream must answer, or refused.
   */
  private sealedId(upstreamEventId: string): string {
    return this.engine.resumption.seal(this.exchange, upstreamEventId);
  }

  private invalid(reason: "upstream_invalid_response" | "response_too_large"): Uint8Array {
    this.refusal = reason;
    denyExchange(this.exchange, reason, "error");
    const info = Reasons[reason];
    return encoder.encode(
      JSON.stringify(
        refusalBody(this.exchange, info.code, info.message, { reason, request_id: this.exchange.requestId }),
      ),
    );
  }

  /**
   * The stream ends here: each request still waiting for its answer gets this error under its
   * id (a client matches answers by id, and would wait for one never coming); a stream with none
   * waiting (a GET stream's server messages) gets one with `"id": null`.
   */
  private errorEvent(reason: "response_too_large"): string {
    const info = Reasons[reason];
    const data = { reason, request_id: this.exchange.requestId };
    const pending = this.exchange.pending;
    if (pending.size === 0)
      return formatSseEvent({
        event: "message",
        data: JSON.stringify(errorResponse(null, info.code, info.message, data)),
      });
    let out = "";
    for (const key of pending.keys()) {
      const answer = errorResponse(idOfKey(key), info.code, info.message, data);
      out += formatSseEvent({ event: "message", data: JSON.stringify(answer) });
    }
    pending.clear();
    return out;
  }

  /**
   * `source`: the JSON text `value` was parsed from, when it is one message's alone.
   * `duplicateKeys`: that text names a key twice in some object.
   */
  private rewriteValue(value: unknown, source: string | undefined, duplicateKeys: boolean): MessageRewrite {
    const message = classifyMessage(value);
    if (typeof message === "string") {
      countOn(this.exchange, "invalid_upstream_messages");
      return { kind: "drop" };
    }
    if (duplicateKeys) return this.refuseDuplicateKeys(message);
    return this.rewriteMessage(message, source);
  }

  /**
   * A message naming a key twice reads differently to different parsers (JSON.parse keeps the
   * last value, others the first), so what was checked may not be what the client reads
   * (security review F7). Never forwarded: an answer to a waiting request becomes the gateway's
   * error for that id, anything else is dropped.
   */
  private refuseDuplicateKeys(message: JsonRpcMessage): MessageRewrite {
    countOn(this.exchange, "duplicate_key_messages");
    denyExchange(this.exchange, "upstream_invalid_response", "error");
    const key = message.kind === "response" ? idKey(message.id) : undefined;
    if (message.kind !== "response" || key === undefined || !this.exchange.pending.delete(key)) {
      return { kind: "drop" };
    }
    const info = Reasons.upstream_invalid_response;
    return {
      kind: "replace",
      value: errorResponse(message.id, info.code, `${info.message}: an object names the same key twice`, {
        reason: "upstream_invalid_response",
        request_id: this.exchange.requestId,
      }),
    };
  }

  private rewriteMessage(message: JsonRpcMessage, source: string | undefined): MessageRewrite {
    const key = message.kind === "response" ? idKey(message.id) : undefined;
    const waiting = key === undefined ? undefined : this.exchange.pending.get(key);
    // Answered: what is left in `pending` at the end of a stream never got a response.
    if (waiting && key !== undefined) this.exchange.pending.delete(key);
    // A response no request of this exchange waits for (an id answered already, or never sent)
    // cannot be judged under the right request's settings: it is dropped, never judged by its
    // shape (security review F4). Only an error for an id the server could not read (null) passes,
    // scanned as server output, so the client learns its request failed.
    if (message.kind === "response" && !waiting && message.id !== null) {
      countOn(this.exchange, "responses_unmatched");
      return { kind: "drop" };
    }
    const pending: PendingRequest | undefined = waiting;
    // Security policies first (pins, poisoning, injection, DLP), then RBAC list filtering.
    const secured = this.engine.security.inspectServerMessage(this.exchange, message, pending, source);
    if (secured.kind === "drop") return secured;
    if (secured.kind === "same") {
      if (waiting && message.kind === "response") this.onPassed?.(message, waiting);
      if (message.kind === "notification") this.onNotification?.(message.method);
    }
    const current = secured.kind === "replace" ? secured.message : message;
    if (waiting && current.kind === "response") this.recordOutcome(current, waiting);
    const filtered = this.filterMessage(current, pending);
    if (filtered.kind !== "same") return filtered;
    if (secured.kind === "replace") return { kind: "replace", value: secured.message.raw };
    return SAME;
  }

  /** How the first answered request fared (after the security checks), for the spans' error.type. */
  private recordOutcome(message: JsonRpcMessage & { kind: "response" }, request: PendingRequest): void {
    if (this.exchange.outcome !== undefined) return;
    if (message.error !== undefined) {
      this.exchange.outcome = { code: message.error.code, message: message.error.message };
      return;
    }
    const result = message.result;
    this.exchange.outcome = {
      toolError:
        request.method === "tools/call" &&
        typeof result === "object" &&
        result !== null &&
        (result as { isError?: unknown }).isError === true,
    };
  }

  private filterMessage(message: JsonRpcMessage, pending: PendingRequest | undefined): MessageRewrite {
    if (message.kind !== "response" || message.error !== undefined) return SAME;
    if (!pending) return SAME;
    switch (pending.method) {
      case "tools/list":
        return this.filterList(message, "tools", "name");
      case "prompts/list":
        return this.filterList(message, "prompts", "name");
      case "resources/list":
        return this.filterList(message, "resources", "uri");
      case "resources/templates/list":
        return this.filterList(message, "resourceTemplates", "uriTemplate");
      default:
        return SAME;
    }
  }

  /**
   * Keeps only the entries this agent may use; tools must also be registered and offered. The
   * result is this agent's view, so a 2026-07-28 list goes out with `cacheScope: "private"`,
   * whatever the server said: marked public, a shared cache downstream could serve one agent's
   * view to another (even when nothing was removed here, another agent's view differs).
   */
  private filterList(
    message: JsonRpcMessage & { kind: "response" },
    field: SubjectKind | "resourceTemplates",
    key: "name" | "uri" | "uriTemplate",
  ): MessageRewrite {
    const kind: SubjectKind = field === "resourceTemplates" ? "resources" : field;
    const result = message.result as Record<string, unknown> | undefined;
    const items = result?.[field];
    if (!Array.isArray(items)) return SAME;
    const principal = this.exchange.principal;
    const server = this.exchange.server;
    if (!principal || !server) return SAME;
    const today = this.engine.today();
    const kept = items.filter((item: unknown) => {
      const name = (item as Record<string, unknown> | null)?.[key];
      if (typeof name !== "string") return false;
      if (kind === "tools" && "missing" in this.engine.registry.tool(server, name, today)) return false;
      // A URI the gateway would refuse to read is not offered either (security review F1).
      if (key === "uri" && !isCanonicalResourceUri(name)) return false;
      // A template is judged by its text: `file:///public/{name}` under `file:///public/**`.
      // Each URI read from it is still decided on its own.
      if (key === "uriTemplate" && resourceTemplateProblem(name) !== undefined) return false;
      return this.engine.rbac.mayList(principal, server, kind, name);
    });
    const hinted =
      result!.cacheScope !== undefined || result!.ttlMs !== undefined || this.exchange.era === "2026";
    const makePrivate = hinted && result!.cacheScope !== "private";
    if (kept.length === items.length && !makePrivate) return SAME;
    if (kept.length !== items.length) countOn(this.exchange, `${field}_filtered`, items.length - kept.length);
    const view = { ...result, [field]: kept, ...(makePrivate ? { cacheScope: "private" } : {}) };
    return { kind: "replace", value: { ...message.raw, result: view } };
  }
}
