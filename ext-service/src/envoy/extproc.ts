import type { ServerDuplexStream } from "@grpc/grpc-js";
import {
  UPSTREAM_HEADERS_WITHHELD,
  upstreamStatusRefused,
  type HttpReply,
  type RequestVerdict,
} from "../policy/engine.js";
import { countOn, denyExchange, validTraceparent, type Exchange } from "../policy/exchange.js";
import { HeldValue } from "../policy/exact-match.js";
import { Reasons, type Reason } from "../policy/reasons.js";
import { MCP_HTTP_METHODS, checkMcpMedia } from "../mcp/media.js";
import type { ResponseTransformer } from "../policy/response.js";
import { GATEWAY_NAMESPACE, secondsSince, type AdapterContext } from "./context.js";
import { classifierFor, classifyResponse } from "../classifier/gate.js";
import { headerMapToRecord, rawHeader } from "./headers.js";
import { decodeAuthzMetadata, readAuthzOutcome } from "./principal.js";
import { constantMessage, envoyProtos } from "./protos.js";
import type {
  BodySendMode,
  CommonResponse,
  HeaderMutation,
  HttpBody,
  HttpHeaders,
  ProcessingMode,
  ProcessingReply,
  ProcessingRequest,
} from "./types.js";
import { structOfStruct, structWithStrings, type EncodedStruct } from "./wire.js";
import type { GatewayEngine } from "../config/compile.js";
import type { IssuedCredential } from "../policy/token-exchange.js";

const EMPTY = Buffer.alloc(0);

/** The decision-time histogram's children for ext_proc's phases, bound once per server. */
export interface PhaseTimers {
  requestBody: { observe(seconds: number): void };
  response: { observe(seconds: number): void };
}

function phaseTimers(ctx: AdapterContext): PhaseTimers {
  // observe() with a labels object builds and checks them on every call.
  return {
    requestBody: ctx.metrics.decisionSeconds.labels({ phase: "request_body" }),
    response: ctx.metrics.decisionSeconds.labels({ phase: "response" }),
  };
}

/** The access-log fields of the `mcp_gateway` namespace, in the order its Struct has always listed them. */
const GATEWAY_KEYS = ["request_id", "agent", "server", "method", "tool", "decision", "reasons"] as const;

/** Which message the stream expects next ("request_body_wait": none, the store is being asked). */
type Phase =
  "request_headers" | "request_body" | "request_body_wait" | "response_headers" | "response_body" | "done";

/** A reply now, none, or one that waits on the state store. */
type Reply = ProcessingReply | undefined | Promise<ProcessingReply | undefined>;

/**
 * The processing mode sent back on response headers. Envoy applies an override as a whole (a
 * body mode left unset means NONE), so every field is spelled out.
 */
function modeOverride(responseBody: BodySendMode): ProcessingMode {
  return Object.freeze({
    request_header_mode: "SEND",
    request_body_mode: "BUFFERED",
    request_trailer_mode: "SKIP",
    response_header_mode: "SEND",
    response_body_mode: responseBody,
    response_trailer_mode: "SKIP",
  });
}
const OVERRIDE_BUFFERED = modeOverride("BUFFERED");
const OVERRIDE_STREAMED = modeOverride("STREAMED");
const OVERRIDE_NONE = modeOverride("NONE");

/**
 * A local reply of an earlier filter (ext_authz, local_ratelimit, a buffer limit) passes
 * unchanged: no body, no trailers. Header modes are left DEFAULT, which Envoy reads as "unset"
 * (ext_proc.cc effectiveModeOverride); body modes always apply as given.
 */
const PASS_LOCAL_REPLY = constantMessage<ProcessingReply>({
  response_headers: { response: {} },
  mode_override: {
    request_body_mode: "NONE",
    response_body_mode: "NONE",
    request_trailer_mode: "SKIP",
    response_trailer_mode: "SKIP",
  },
});

/** The reason a local reply of Envoy's own filters stands for, by its status. */
function localReplyReason(status: number): Reason | undefined {
  switch (status) {
    case 429:
      return "rate_limited"; // local_ratelimit
    case 413:
      return "body_too_large"; // the buffer limit, while the request body was being buffered
    case 408:
      return "request_timeout"; // request_timeout / request_headers_timeout
    default:
      return status >= 500 ? "internal_error" : undefined;
  }
}

// The replies that let a message through unchanged, encoded once (constantMessage).
const CONTINUE_REQUEST_HEADERS = constantMessage<ProcessingReply>({ request_headers: { response: {} } });
const CONTINUE_REQUEST_BODY = constantMessage<ProcessingReply>({ request_body: { response: {} } });
const CONTINUE_JSON_RESPONSE = constantMessage<ProcessingReply>({
  response_headers: { response: {} },
  mode_override: OVERRIDE_BUFFERED,
});
const CONTINUE_SSE_RESPONSE = constantMessage<ProcessingReply>({
  response_headers: { response: {} },
  mode_override: OVERRIDE_STREAMED,
});

function toBuffer(bytes: Uint8Array | undefined): Buffer {
  if (bytes === undefined) return EMPTY;
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * One `envoy.service.ext_proc.v3.ExternalProcessor/Process` stream, i.e. one HTTP request, as a
 * state machine: request headers -> (buffered request body) -> response headers -> response body
 * (one buffered message, or streamed chunks) -> done. Every message gets exactly one reply, in
 * order; all handling is synchronous, so pipelined chunks are answered in the order they came.
 * Response headers before the request was forwarded are a local reply of another filter and
 * pass (onLocalReply). Anything else out of order is answered with a 500 immediate response
 * (fail closed), never a crash.
 */
export class ProcessStream {
  private phase: Phase = "request_headers";
  private exchange: Exchange | undefined;
  private requestHeaders: Record<string, string> = {};
  /** The per-agent credential ext_authz set for this request (token exchange), if any. */
  private issued: IssuedCredential | undefined;
  private transformer: ResponseTransformer | undefined;
  private responseHadContentLength = false;
  /** Set once an immediate response went out: Envoy stops listening, later messages are ignored. */
  private answeredImmediately = false;
  /** JSON body arriving STREAMED (mode override not honoured): held back until complete. */
  private jsonChunks: Buffer[] | undefined;
  private jsonBytes = 0;
  private jsonFailed = false;
  private closed = false;

  /** The policy this stream started under: a config reload applies to the streams after it. */
  private readonly engine: GatewayEngine;

  constructor(
    private readonly ctx: AdapterContext,
    private readonly timers: PhaseTimers = phaseTimers(ctx),
    /**
     * The `traceparent` of the gRPC call: Envoy's own span for this ext_proc stream when Envoy
     * traces (its gRPC client injects it, source/common/grpc/async_client_impl.cc), so the
     * gateway's spans join Envoy's trace; the request's header otherwise.
     */
    private readonly callTraceparent?: string,
  ) {
    this.engine = ctx.engine;
  }

  /**
   * Handles one message; returns the reply, or undefined when none is due. Only a request body
   * with tool calls may answer with a promise (see evaluateBody); the handler below keeps every
   * later message of the stream waiting until it settles, so replies stay in order.
   */
  handle(request: ProcessingRequest): Reply {
    if (this.phase === "done") {
      if (this.answeredImmediately) return undefined;
      return this.protocolError(`'${request.request ?? "unknown"}' after the exchange ended`);
    }
    try {
      switch (request.request) {
        case "request_headers":
          return this.onRequestHeaders(request.request_headers ?? {}, request);
        case "request_body": {
          const reply = this.onRequestBody(request.request_body ?? {});
          return reply instanceof Promise ? reply.catch((err: unknown) => this.failed(err)) : reply;
        }
        case "response_headers":
          if (this.phase === "request_headers" || this.phase === "request_body")
            return this.onLocalReply(request.response_headers ?? {}, request);
          return this.onResponseHeaders(request.response_headers ?? {});
        case "response_body": {
          const reply = this.onResponseBody(request.response_body ?? {});
          return reply instanceof Promise ? reply.catch((err: unknown) => this.failed(err)) : reply;
        }
        case "request_trailers":
          if (this.phase !== "request_body" && this.phase !== "response_headers")
            return this.protocolError("request trailers out of order");
          return { request_trailers: {} };
        case "response_trailers":
          if (this.phase !== "response_body") return this.protocolError("response trailers out of order");
          return this.finishResponse({ response_trailers: {} });
        default:
          return this.protocolError("a message with no known request field");
      }
    } catch (err) {
      return this.failed(err);
    }
  }

  private failed(err: unknown): ProcessingReply {
    const exchange = this.ensureExchange("");
    this.ctx.logger.error({ err, request_id: exchange.requestId }, "ext_proc: internal error");
    return this.immediate(this.engine.rejection(exchange, "internal_error"));
  }

  /** The gRPC stream ended (half-close, cancel or error): the audit record, if not yet written. */
  close(cause: "end" | "cancelled" | "error"): void {
    if (this.closed) return;
    this.closed = true;
    const exchange = this.exchange;
    if (!exchange) return;
    this.ctx.inflight.count--;
    if (this.phase !== "done") {
      this.ctx.logger.debug(
        { request_id: exchange.requestId, cause, phase: this.phase },
        "ext_proc: stream ended before the exchange completed",
      );
    }
    this.ctx.audit.finish(exchange);
  }

  private ensureExchange(method: string, requestId?: string, traceparent?: string): Exchange {
    if (!this.exchange) {
      this.exchange = this.engine.newExchange(method, requestId, traceparent);
      this.ctx.inflight.count++;
      if (this.callTraceparent !== undefined) {
        this.ctx.tracing?.begin(this.exchange, { traceparent: this.callTraceparent });
      }
    }
    return this.exchange;
  }

  private onRequestHeaders(msg: HttpHeaders, request: ProcessingRequest): ProcessingReply {
    if (this.phase !== "request_headers") return this.protocolError("a second request_headers message");
    const { engine } = this;
    const { logger } = this.ctx;
    const headers = headerMapToRecord(msg.headers);
    const method = headers[":method"] ?? "";
    const path = headers[":path"] ?? "";
    const authz = decodeAuthzMetadata(request.metadata_context);
    const requestId =
      headers["x-mcp-request-id"] || (typeof authz === "string" ? undefined : authz.requestId);
    const exchange = this.ensureExchange(method, requestId || undefined, headers.traceparent);
    if (typeof authz === "string") {
      logger.error(
        { request_id: exchange.requestId, problem: authz },
        "ext_proc: no identity from ext_authz",
      );
      return this.immediate(engine.rejection(exchange, "internal_error"));
    }
    exchange.principal = authz.principal;
    if (authz.principal.viaBroker) countOn(exchange, "via_broker");
    const route = engine.route(path);
    if (route.kind !== "mcp" || route.server !== authz.server) {
      logger.error(
        { request_id: exchange.requestId, route: route.kind, authz_server: authz.server },
        "ext_proc: the path does not match the server ext_authz admitted",
      );
      return this.immediate(engine.rejection(exchange, "internal_error"));
    }
    exchange.server = route.server;
    this.requestHeaders = headers;
    // The per-agent token ext_authz set for this very request (sealed into its metadata, so
    // known on any replica, also when it was issued without expires_in and so not cached): DLP
    // finds it in the answer as it finds static credentials, and the pin check lists tools with it.
    this.issued =
      authz.sealedCredential === undefined
        ? undefined
        : engine.issuedCredentials.open(authz.requestId, authz.server, authz.sealedCredential);
    if (authz.sealedCredential !== undefined && this.issued === undefined) {
      // Sealed with keys this replica lacks: without the token DLP could not match it. Fail closed.
      logger.error(
        { request_id: exchange.requestId },
        "ext_proc: the credential ext_authz set does not open (are sessions.keys the same on every replica?)",
      );
      return this.immediate(engine.rejection(exchange, "internal_error"));
    }
    const held = this.issued === undefined ? undefined : HeldValue.of(this.issued.token);
    if (held) exchange.heldValues.push(held);
    const violation = checkMcpMedia(method, headers);
    if (violation) {
      const allow: Record<string, string> =
        violation === "http_method_not_allowed" ? { allow: MCP_HTTP_METHODS } : {};
      return this.immediate(engine.rejection(exchange, violation, undefined, allow));
    }
    // A GET resuming a stream: the client holds a gateway-sealed event id, the upstream gets back
    // its own (or none), and the requests it carries wait for their answers on this exchange.
    const resumeMutation =
      method === "GET" && headers["last-event-id"] !== undefined
        ? this.resumeMutation(engine.resumeStream(exchange, headers))
        : undefined;
    if (msg.end_of_stream) {
      // No body phase will follow. A POST without a body is still evaluated (and refused, so
      // never with tool calls: the answer is never a promise here).
      if (method === "POST") {
        const denied = this.evaluateBody(EMPTY);
        if (denied instanceof Promise) return this.protocolError("tool calls in an empty body");
        if (denied) return denied;
      }
      this.phase = "response_headers";
      this.forwarding();
    } else {
      this.phase = "request_body";
    }
    return resumeMutation
      ? { request_headers: { response: { header_mutation: resumeMutation } } }
      : CONTINUE_REQUEST_HEADERS;
  }

  private resumeMutation(upstreamEventId: string | undefined): HeaderMutation {
    return upstreamEventId === undefined
      ? { remove_headers: ["last-event-id"] }
      : { set_headers: [rawHeader("last-event-id", upstreamEventId)] };
  }

  private onRequestBody(msg: HttpBody): ProcessingReply | Promise<ProcessingReply> {
    if (this.phase !== "request_body") return this.protocolError("request_body out of order");
    const exchange = this.exchange!;
    if (!msg.end_of_stream) {
      // STREAMED or BUFFERED_PARTIAL: forwarding chunks before the whole body is inspected
      // would let unchecked requests through.
      this.ctx.logger.error(
        { request_id: exchange.requestId },
        "ext_proc: request body must be sent BUFFERED (request_body_mode: BUFFERED)",
      );
      return this.immediate(this.engine.rejection(exchange, "internal_error"));
    }
    const body = toBuffer(msg.body);
    if (exchange.httpMethod === "POST" || body.byteLength > 0) {
      const denied = this.evaluateBody(body);
      if (denied instanceof Promise) {
        this.phase = "request_body_wait";
        return denied.then((reply) => reply ?? this.continueRequestBody());
      }
      if (denied) return denied;
    }
    return this.continueRequestBody();
  }

  private continueRequestBody(): ProcessingReply {
    this.phase = "response_headers";
    this.forwarding();
    return CONTINUE_REQUEST_BODY;
  }

  /** Envoy sends the request to the MCP server now: the CLIENT span of that hop starts. */
  private forwarding(): void {
    const tracing = this.ctx.tracing;
    const exchange = this.exchange;
    if (!tracing || !exchange || exchange.server === undefined) return;
    const url = this.engine.registry.server(exchange.server)?.config.upstreams[0];
    const upstream = url === undefined ? undefined : new URL(url);
    tracing.forwarding(exchange, {
      address: upstream?.hostname,
      port: upstream ? Number(upstream.port || (upstream.protocol === "https:" ? 443 : 80)) : undefined,
    });
  }

  /**
   * Runs the core on a request body; returns the immediate response when it does not forward.
   * Tool calls then go through the shared-state step (approvals, budgets, the result cache),
   * which may wait on the store: the reply is a promise then (Envoy sends nothing more on this
   * stream until it has it).
   */
  private evaluateBody(body: Buffer): Reply {
    const started = performance.now();
    const exchange = this.exchange!;
    const verdict = this.engine.evaluateRequestBody(exchange, body, this.requestHeaders);
    this.timers.requestBody.observe(secondsSince(started));
    if (verdict.action === "list_tools") {
      // Pins are checked before the first call (trial B4): the server's tools/list, then decide again.
      // A token-exchange server's list is fetched with the token ext_authz set for this request
      // (without it the server refuses and the pin check fails closed).
      return this.ctx.pinVerifier.verify(this.engine, verdict.server, this.issued?.headers).then(
        () =>
          this.afterVerdict(
            this.engine.evaluateRequestBody(exchange, body, this.requestHeaders, { toolsListed: true }),
          ),
        (err: unknown) => {
          this.ctx.logger.error({ err, request_id: exchange.requestId }, "ext_proc: internal error");
          return this.immediate(this.engine.rejection(exchange, "internal_error"));
        },
      );
    }
    return this.afterVerdict(verdict);
  }

  /** The body verdict as a reply: a refusal, nothing (forward), or the shared-state step first. */
  private afterVerdict(verdict: RequestVerdict): Reply {
    const exchange = this.exchange!;
    if (verdict.action === "reply") return this.immediate(verdict.reply);
    if (verdict.action !== "forward")
      return this.immediate(this.engine.rejection(exchange, "internal_error"));
    if (!verdict.toolCalls && !verdict.cacheableRead) return undefined;
    const refused = this.ctx.state.forwardStep(this.engine, exchange, verdict);
    if (!(refused instanceof Promise)) return this.afterForwardStep(verdict, refused);
    return refused.then((reply) => this.afterForwardStep(verdict, reply));
  }

  private afterForwardStep(
    verdict: RequestVerdict & { action: "forward" },
    refused: HttpReply | undefined,
  ): ProcessingReply | undefined {
    if (refused) return this.immediate(refused);
    return verdict.forwardBody ? this.replaceRequestBody(Buffer.from(verdict.forwardBody)) : undefined;
  }

  /**
   * Forwards another body than the client sent (an in-band approval's retry, without the
   * gateway's round). Envoy fails a buffered body whose mutated size differs from content-length,
   * so the same reply sets it.
   */
  private replaceRequestBody(body: Buffer): ProcessingReply {
    this.phase = "response_headers";
    return {
      request_body: {
        response: {
          header_mutation: { set_headers: [rawHeader("content-length", String(body.byteLength))] },
          body_mutation: { body },
        },
      },
    };
  }

  /**
   * Response headers before the request was forwarded: not an upstream answer but a local reply
   * of a filter Envoy runs before or around this one (ext_authz's 401/403/404 or RFC 9728
   * document, local_ratelimit's 429, the buffer limit's 413), which Envoy 1.38 sends through
   * every encoder filter. It passes unchanged. It is audited here unless ext_authz answered it
   * (and audited it) itself, so each HTTP request still yields exactly one record.
   * Fail closed: only ext_authz's own answers and error statuses pass. Anything else would be an
   * upstream answer to a request this stream never saw (the filter skipping request headers),
   * whose content no scan has looked at.
   */
  private onLocalReply(msg: HttpHeaders, request: ProcessingRequest): ProcessingReply {
    const status = Number(headerMapToRecord(msg.headers)[":status"]) || 0;
    let exchange = this.exchange;
    if (!exchange) {
      const outcome = readAuthzOutcome(request.metadata_context);
      if (outcome.kind === "answered") {
        this.phase = "done";
        return PASS_LOCAL_REPLY;
      }
      if (outcome.kind === "invalid") {
        this.ctx.logger.warn(
          { problem: outcome.problem, status },
          "ext_proc: local reply with invalid identity",
        );
      }
      const admitted = outcome.kind === "admitted" ? outcome.metadata : undefined;
      exchange = this.ensureExchange(admitted?.httpMethod ?? "", admitted?.requestId);
      if (admitted) {
        exchange.principal = admitted.principal;
        exchange.server = admitted.server;
      }
    }
    if (status < 400)
      return this.protocolError(`response headers (${status}) before the request was forwarded`);
    this.phase = "done";
    const reason = localReplyReason(status);
    if (reason) denyExchange(exchange, reason, reason === "internal_error" ? "error" : "deny");
    else exchange.decision = "deny";
    const reply: ProcessingReply = { ...PASS_LOCAL_REPLY, dynamic_metadata: this.gatewayMetadata() };
    this.ctx.audit.finishSoon(exchange, status);
    return reply;
  }

  private onResponseHeaders(msg: HttpHeaders): ProcessingReply {
    if (this.phase !== "response_headers") return this.protocolError("response_headers out of order");
    const exchange = this.exchange!;
    const headers = headerMapToRecord(msg.headers);
    const status = Number(headers[":status"]) || 0;
    exchange.status = status;
    if (upstreamStatusRefused(status)) {
      // A redirect or the upstream's own auth challenge never reaches the agent.
      this.ctx.logger.warn(
        { request_id: exchange.requestId, server: exchange.server, status },
        "upstream answered with a redirect or an authentication failure",
      );
      return this.immediate(this.engine.rejection(exchange, "upstream_invalid_response"));
    }
    this.responseHadContentLength = "content-length" in headers;
    this.transformer = this.engine.responseTransformer(exchange, headers["content-type"], status);
    this.ctx.state.watchResponse(exchange, this.transformer);
    this.phase = "response_body";
    const mutation = this.responseHeaderMutation(headers);
    const response: CommonResponse = mutation ? { header_mutation: mutation } : {};
    if (msg.end_of_stream) return this.finishResponse({ response_headers: { response } });
    const mode = this.transformer.mode;
    if (mode === "passthrough") {
      // Nothing more will come for a body that is not inspected: this is the last reply.
      // (Chunks that still arrive, if Envoy ignored the override, pass through unchanged.)
      return this.finishResponse({ response_headers: { response }, mode_override: OVERRIDE_NONE }, false);
    }
    if (mutation) {
      return {
        response_headers: { response },
        mode_override: mode === "json" ? OVERRIDE_BUFFERED : OVERRIDE_STREAMED,
      };
    }
    return mode === "json" ? CONTINUE_JSON_RESPONSE : CONTINUE_SSE_RESPONSE;
  }

  /**
   * What the agent must not see of the upstream's response headers: its own session id (replaced
   * by the gateway's sealed id), cookies and authentication challenges. Undefined when none is there.
   */
  private responseHeaderMutation(headers: Record<string, string>): HeaderMutation | undefined {
    const remove = UPSTREAM_HEADERS_WITHHELD.filter((name) => name in headers);
    const upstreamSession = headers["mcp-session-id"];
    if (upstreamSession === undefined) return remove.length ? { remove_headers: remove } : undefined;
    const sealed = this.engine.sealSession(this.exchange!, upstreamSession);
    if (sealed === undefined) return { remove_headers: [...remove, "mcp-session-id"] };
    return {
      set_headers: [rawHeader("mcp-session-id", sealed)],
      ...(remove.length ? { remove_headers: remove } : {}),
    };
  }

  private onResponseBody(msg: HttpBody): ProcessingReply | Promise<ProcessingReply> {
    if (this.phase !== "response_body") {
      return this.protocolError(
        this.phase === "response_headers"
          ? "response body before response headers"
          : "response_body out of order",
      );
    }
    const transformer = this.transformer!;
    const chunk = toBuffer(msg.body);
    const eos = msg.end_of_stream === true;
    let response: CommonResponse = {};
    if (transformer.mode === "json") {
      const started = performance.now();
      response = this.jsonChunk(transformer, chunk, eos);
      this.timers.response.observe(secondsSince(started));
      if (eos && transformer.replacedErrorBody) {
        // A wrong path or a server that is not MCP (trial B10): one line with the cause, as the
        // edge writes; never the body.
        const exchange = this.exchange!;
        this.ctx.logger.warn(
          {
            request_id: exchange.requestId,
            server: exchange.server,
            reason: exchange.status !== undefined && exchange.status >= 500 ? "http_5xx" : "http_4xx",
            error: `HTTP ${exchange.status} without a JSON-RPC body (replaced)`,
          },
          "upstream request failed",
        );
      }
    } else if (transformer.mode === "sse") {
      let out = transformer.push(chunk);
      if (eos) {
        const tail = transformer.end();
        if (tail.byteLength > 0) out = Buffer.concat([out, tail]);
      }
      // Unchanged bytes pass as they are; anything else replaces this chunk (possibly with nothing).
      if (!toBuffer(out).equals(chunk)) response = { body_mutation: { body: toBuffer(out) } };
    }
    const classifier = classifierFor(this.engine);
    if (classifier && eos && transformer.mode === "json" && !transformer.refusal) {
      // The classifier judges the body the policy let through (or changed).
      const passed = response.body_mutation?.body ?? (this.jsonChunks === undefined ? chunk : undefined);
      if (passed && passed.byteLength > 0) {
        return classifyResponse(classifier, this.exchange!, passed).then((judged) => {
          if (judged) {
            const body = toBuffer(judged);
            const set = [rawHeader("content-type", "application/json")];
            if (this.responseHadContentLength) set.push(rawHeader("content-length", String(body.byteLength)));
            response = {
              header_mutation: { set_headers: set, remove_headers: ["content-encoding"] },
              body_mutation: { body },
            };
          }
          return this.finishResponse({ response_body: { response } });
        });
      }
    }
    const reply: ProcessingReply = { response_body: { response } };
    return eos ? this.finishResponse(reply) : reply;
  }

  /**
   * A JSON response body. BUFFERED (the normal case) arrives as one message with end_of_stream;
   * a changed body also fixes content-length in the same reply, or Envoy fails the request.
   * Chunks (the filter ignored the BUFFERED override) are held back, each answered with an empty
   * replacement, and the last chunk carries the whole transformed body.
   */
  private jsonChunk(transformer: ResponseTransformer, chunk: Buffer, eos: boolean): CommonResponse {
    if (this.jsonChunks === undefined && eos) {
      const out = transformer.transformJson(chunk);
      if (out === undefined) return {};
      const body = toBuffer(out);
      const set = [];
      if (this.responseHadContentLength) set.push(rawHeader("content-length", String(body.byteLength)));
      // A refused body becomes the core's JSON-RPC error, with its status and type (the response
      // headers are still held: BUFFERED mode sends them after the body's reply).
      const refusal = transformer.refusal;
      if (refusal) {
        set.push(rawHeader(":status", String(Reasons[refusal].status)));
        set.push(rawHeader("content-type", "application/json"));
      } else if (transformer.replacedErrorBody) set.push(rawHeader("content-type", "application/json"));
      if (!set.length) return { body_mutation: { body } };
      // The gateway's own JSON replaces the body: a content-encoding left from the upstream's
      // (refused, compressed) body would make it unreadable.
      return {
        header_mutation: { set_headers: set, remove_headers: ["content-encoding"] },
        body_mutation: { body },
      };
    }
    if (this.jsonFailed) return { body_mutation: { body: EMPTY } };
    (this.jsonChunks ??= []).push(chunk);
    this.jsonBytes += chunk.byteLength;
    if (this.jsonBytes > this.engine.limits.maxResponseBytes) {
      // Over the inspection limit: the core answers with its error body, the rest is dropped.
      this.jsonFailed = true;
      const whole = Buffer.concat(this.jsonChunks);
      this.jsonChunks = [];
      return { body_mutation: { body: toBuffer(transformer.transformJson(whole) ?? EMPTY) } };
    }
    if (!eos) return { body_mutation: { body: EMPTY } };
    const whole = Buffer.concat(this.jsonChunks);
    this.jsonChunks = [];
    return { body_mutation: { body: toBuffer(transformer.transformJson(whole) ?? whole) } };
  }

  /**
   * The last reply of a completed exchange carries the access-log metadata (once: Envoy keeps
   * it for the rest of the request); the audit record is taken, and written once the reply is out.
   */
  private finishResponse(reply: ProcessingReply, done = true): ProcessingReply {
    if (done) this.phase = "done";
    reply.dynamic_metadata = this.gatewayMetadata();
    this.ctx.audit.finishSoon(this.exchange!);
    return reply;
  }

  private immediate(reply: HttpReply): ProcessingReply {
    const exchange = this.exchange!;
    this.phase = "done";
    this.answeredImmediately = true;
    exchange.status = reply.status;
    const response: ProcessingReply = {
      immediate_response: {
        status: { code: envoyProtos().httpStatusName(reply.status) },
        headers: { set_headers: Object.entries(reply.headers).map(([k, v]) => rawHeader(k, v)) },
        body: Buffer.from(reply.body, "utf8"),
        details: exchange.reasons[0] ?? "mcp_gateway",
      },
      dynamic_metadata: this.gatewayMetadata(),
    };
    this.ctx.audit.finishSoon(exchange, reply.status);
    return response;
  }

  private protocolError(problem: string): ProcessingReply {
    const exchange = this.ensureExchange("");
    this.ctx.logger.error(
      { request_id: exchange.requestId, problem, phase: this.phase },
      "ext_proc: unexpected message from Envoy",
    );
    return this.immediate(this.engine.rejection(exchange, "internal_error"));
  }

  /** `mcp_gateway` namespace for Envoy's access log (needs `receiving_namespaces`). */
  private gatewayMetadata(): EncodedStruct {
    const e = this.exchange!;
    return structOfStruct(
      GATEWAY_NAMESPACE,
      structWithStrings(EMPTY, GATEWAY_KEYS, [
        e.requestId,
        e.principal?.agent ?? "",
        e.server ?? "",
        e.methods.join(","),
        e.tools.join(","),
        e.decision,
        e.reasons.join(","),
      ]),
    );
  }
}

/** The gRPC handler: one ProcessStream per call, torn down on end, cancel or error. */
export function createProcessHandler(ctx: AdapterContext) {
  const timers = phaseTimers(ctx);
  return function process(call: ServerDuplexStream<ProcessingRequest, ProcessingReply>): void {
    const stream = new ProcessStream(
      ctx,
      timers,
      ctx.tracing ? validTraceparent(call.metadata.get("traceparent")[0]?.toString()) : undefined,
    );
    const send = (reply: ProcessingReply | undefined) => {
      if (reply === undefined || call.cancelled || call.destroyed) return;
      try {
        call.write(reply);
      } catch (err) {
        ctx.logger.debug({ err }, "ext_proc: write after the stream closed");
      }
    };
    // Set while a reply waits on the state store: later messages queue behind it, in order.
    let waiting: Promise<void> | undefined;
    call.on("data", (request: ProcessingRequest) => {
      if (waiting) {
        const next = waiting.then(() => {
          const reply = stream.handle(request);
          return reply instanceof Promise ? reply.then(send) : send(reply);
        });
        waiting = next;
        void next.finally(() => {
          if (waiting === next) waiting = undefined;
        });
        return;
      }
      const reply = stream.handle(request);
      if (!(reply instanceof Promise)) return send(reply);
      const next = reply.then(send);
      waiting = next;
      void next.finally(() => {
        if (waiting === next) waiting = undefined;
      });
    });
    call.on("end", () => {
      stream.close("end");
      if (!call.destroyed) call.end();
    });
    call.on("cancelled", () => stream.close("cancelled"));
    call.on("error", (err: Error) => {
      ctx.logger.debug({ err }, "ext_proc: stream error");
      stream.close("error");
    });
    call.on("close", () => stream.close("cancelled"));
  };
}
