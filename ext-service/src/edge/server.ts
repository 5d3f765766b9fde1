import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { performance } from "node:perf_hooks";
import { classifierFor, classifyResponse } from "../classifier/gate.js";
import { durationMs } from "../config/schema.js";
import { errorResponse } from "../mcp/jsonrpc.js";
import { MCP_HTTP_METHODS, checkMcpMedia } from "../mcp/media.js";
import { formatSseEvent } from "../mcp/sse.js";
import { upstreamStatusRefused, type HttpReply } from "../policy/engine.js";
import { countOn, denyExchange, idOfKey, type Exchange } from "../policy/exchange.js";
import { HeldValue } from "../policy/exact-match.js";
import { MAX_REQUEST_HEADER_BYTES } from "../policy/header-limits.js";
import { Reasons, type Reason } from "../policy/reasons.js";
import type { ResponseTransformer } from "../policy/response.js";
import { GatewayState } from "../runtime/gateway-state.js";
import { openStore } from "../state/open-store.js";
import { AuditTrail } from "../telemetry/audit.js";
import type { Logger } from "../telemetry/logger.js";
import type { Metrics } from "../telemetry/metrics.js";
import { bufferedBody, readBody } from "./body.js";
import type { BreakerTicket } from "./breaker.js";
import { clientResponseHeaders, headerMap, refusedHeaderName, upstreamRequestHeaders } from "./headers.js";
import { answerHeaderOverflow } from "./header-overflow.js";
import { LoopStallWatch } from "./loop-stall.js";
import { tracingFromConfig, withMetaTraceparent, type Tracing } from "../telemetry/tracing.js";
import { Upstreams, type Endpoint, type UpstreamGroup, type UpstreamStatus } from "./upstream.js";
import { UpstreamCall } from "./upstream-call.js";
import { PinVerifier } from "../upstream/pin-verifier.js";
import { TokenExchanger } from "../upstream/token-exchange.js";
import { Broker } from "../broker/broker.js";
import { serveBrokerRequest } from "../broker/http.js";
import type { Principal } from "../policy/identity.js";
import type { GatewayEngine } from "../config/compile.js";

export interface EdgeOptions {
  engine: GatewayEngine;
  /** Defaults to the config's `listen.edge`. */
  host?: string;
  port?: number;
  logger: Logger;
  metrics: Metrics;
  /** Defaults to an AuditTrail on `logger` for the plane "edge". */
  audit?: AuditTrail;
  /** Shared state (budgets, cache); defaults to the store the config names, closed with the edge. */
  state?: GatewayState;
  /** Fetches servers' tools/list when the core asks for it; defaults to one on `logger`. */
  pinVerifier?: PinVerifier;
  /** OpenTelemetry spans per exchange; defaults to the config's `tracing` (none when off). */
  tracing?: Tracing | undefined;
  /** Exchanges agents' tokens for servers' (registry `upstream.tokenExchange`); defaults to one on `logger`. */
  tokenExchanger?: TokenExchanger;
}

export interface Edge {
  /** The policy in force; replaced by setEngine (config reload). */
  readonly engine: GatewayEngine;
  /**
   * Replaces the policy: the next requests use it, and servers added to or removed from the
   * registry are routed accordingly (a server whose URLs did not change keeps its connections,
   * sessions and breakers). Listen addresses, edge traffic settings and timeouts stay as started.
   */
  setEngine(engine: GatewayEngine): void;
  port: number;
  /** Base URL, e.g. http://127.0.0.1:8080 */
  url: string;
  /** Shared state (budgets, cache, approvals): the admin API reads approvals from it. */
  readonly state: GatewayState;
  /** Writes the audit records; its recent ones feed the admin console. */
  readonly audit: AuditTrail;
  /** The aggregated endpoint (`/mcp`) this edge serves in process. */
  readonly broker: Broker;
  /** Each upstream endpoint's circuit breaker and requests in flight (the admin console's Overview). */
  upstreamStatus(): UpstreamStatus[];
  /** True while listening and not draining (for /readyz). */
  ready(): boolean;
  /**
   * Stops accepting, ends server-to-client (GET) streams, waits up to `graceMs` (default: the
   * config's shutdownGrace) for requests in flight, then closes every connection.
   */
  close(graceMs?: number): Promise<void>;
}

/** One request in flight, for shutdown and abort handling. */
interface Active {
  readonly res: ServerResponse;
  readonly exchange: Exchange;
  /** The upstream call once started; see stopUpstream. */
  call: UpstreamCall | undefined;
  /** The upstream call must not run, or stop: client gone, timeout or shutdown. */
  stopped: boolean;
  /** A GET (server-to-client) stream: ended at once on shutdown. */
  longLived: boolean;
  /** Gives back the agent's open-request (and stream) slot; set once the request holds one. */
  release?: () => void;
  /** The response closed (and released what it held). */
  closed: boolean;
  clientGone: boolean;
  timedOut: boolean;
  shuttingDown: boolean;
  bodyTimeout: boolean;
  /** Stops work that is not an upstream call (the aggregated endpoint's answer). */
  onStop?: () => void;
}

const encoder = new TextEncoder();

/**
 * The request a connection is serving, on its socket (for clientError): a property rather than a
 * WeakMap entry per request, which the collector must treat as an ephemeron.
 */
const CURRENT = Symbol("edge request");
type EdgeSocket = Socket & { [CURRENT]?: Active | undefined };

type Credential = { ok: true; headers?: Readonly<Record<string, string>> } | { ok: false; reply: HttpReply };
const NO_CREDENTIAL: Credential = Object.freeze({ ok: true });

const UPSTREAM_FAILURES: ReadonlySet<Reason> = new Set<Reason>([
  "upstream_unavailable",
  "upstream_timeout",
  "upstream_invalid_response",
  "response_too_large",
  "breaker_open",
]);

function firstHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** Aborts the upstream call, or keeps it from starting. */
function stopUpstream(state: Active): void {
  state.stopped = true;
  state.call?.abort();
  state.onStop?.();
}

function timeOut(state: Active): void {
  state.timedOut = true;
  stopUpstream(state);
}

/** Writes a chunk to the client; a full socket pauses the upstream until it drains. */
function relayChunk(res: ServerResponse, call: UpstreamCall, chunk: Uint8Array): void {
  if (!res.write(chunk) && !call.isPaused) {
    call.pause();
    res.once("drain", () => call.resume());
  }
}

/** undici refused the request before sending it (a header value it cannot write, and the like). */
function builtBadRequest(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === "UND_ERR_INVALID_ARG";
}

/** Maps an undici failure before response headers to the reason the client sees. */
function failureReason(
  err: unknown,
): Extract<Reason, "upstream_timeout" | "upstream_unavailable" | "upstream_invalid_response"> {
  const code = (err as { code?: string } | null)?.code ?? "";
  if (code === "UND_ERR_CONNECT_TIMEOUT") return "upstream_timeout";
  // llhttp's parse errors (HPE_*): the peer did not speak HTTP/1.1
  if (code.startsWith("HPE_") || (err as Error | null)?.name === "HTTPParserError") {
    return "upstream_invalid_response";
  }
  return "upstream_unavailable";
}

/**
 * The local data plane: node:http in, undici pools out, the policy core in between. Serves the
 * public routes (ARCHITECTURE.md section 2) with the same verdicts, errors and audit records as
 * the Envoy path.
 */
export async function startEdge(options: EdgeOptions): Promise<Edge> {
  const { logger, metrics } = options;
  let engine = options.engine;
  const cfg = engine.config.edge;
  const audit = options.audit ?? new AuditTrail(logger, metrics, "edge");
  const ownsTracing = options.tracing === undefined;
  const tracing = options.tracing ?? (await tracingFromConfig(engine.config, "edge"));
  metrics.setKnownNames(Object.keys(engine.config.agents), engine.registry.toolNames());
  if (tracing) audit.tracing = tracing;
  const ownsState = options.state === undefined;
  const shared =
    options.state ??
    new GatewayState(
      openStore(engine.config, process.env, engine.configDir),
      metrics,
      logger,
      engine.config.cache,
    );
  const limiter = shared.agentRateLimit(cfg.rateLimit.requestsPerSecond, cfg.rateLimit.burst);
  const pinVerifier = options.pinVerifier ?? new PinVerifier(logger);
  const tokenExchanger = options.tokenExchanger ?? new TokenExchanger(logger, { metrics });
  const upstreamTimeoutMs = durationMs(cfg.upstreamTimeout);
  const requestTimeout = durationMs(cfg.requestTimeout);
  // Node refuses a header timeout longer than the whole-request timeout.
  const headersTimeout =
    requestTimeout > 0
      ? Math.min(durationMs(cfg.headersTimeout), requestTimeout)
      : durationMs(cfg.headersTimeout);
  const upstreamsOf = (policy: GatewayEngine) =>
    policy.registry
      .serverNames()
      .map((name) => ({ name, upstreams: policy.registry.server(name)!.config.upstreams }));
  const upstreams = new Upstreams(
    upstreamsOf(engine),
    {
      breakerFailures: cfg.breaker.consecutiveFailures,
      breakerCooldownMs: durationMs(cfg.breaker.cooldown),
      connectTimeoutMs: upstreamTimeoutMs > 0 ? Math.min(upstreamTimeoutMs, 10_000) : 10_000,
    },
    metrics,
    logger,
  );
  const stalls = new LoopStallWatch();
  /**
   * A connection failure or timeout counts against the upstream's breaker, unless this process's
   * event loop stalled meanwhile: then the gateway, not the upstream, was slow.
   */
  const upstreamFault = (endpoint: Endpoint, ticket: BreakerTicket): void => {
    if (!stalls.recentlyStalled()) return endpoint.breaker.failure(ticket);
    endpoint.breaker.release(ticket);
    logger.warn(
      { upstream: endpoint.label },
      "upstream call failed after an event-loop stall: not counted for the breaker",
    );
  };
  const perAgent = cfg.perAgent;
  const openByAgent = new Map<string, { requests: number; streams: number }>();
  // Bound once: observe() with a labels object builds and checks them on every request.
  const admitSeconds = metrics.decisionSeconds.labels({ phase: "admit" });
  const requestSeconds = metrics.decisionSeconds.labels({ phase: "request" });
  const active = new Set<Active>();
  const stopCounting = metrics.countInflight("edge", () => active.size);
  let idleWaiter: (() => void) | undefined;
  let closing = false;
  let listening = false;
  let ownUrl = "";
  const broker = new Broker({
    engine: () => engine,
    logger,
    metrics,
    hopOrigin: () => engine.config.broker.hopUrl?.replace(/\/$/, "") ?? ownUrl,
    ...(shared.cache.sharedByReplicas ? { listsChangedAt: (server) => shared.listsChangedAt(server) } : {}),
    revocations: shared.sessionRevocations(),
    answers: shared.answerRelay(),
  });
  // A list_changed any client's stream carries drops the broker's kept lists of that server.
  const stopBrokerWatch = shared.onListChanged((server, method) => broker.listChanged(server, method));

  const sendReply = (res: ServerResponse, reply: HttpReply, extra: Record<string, string> = {}): void => {
    if (res.headersSent || res.destroyed) return;
    const body = Buffer.from(reply.body);
    res.writeHead(reply.status, { ...reply.headers, ...extra, "content-length": String(body.length) });
    res.end(body);
  };

  const reject = (
    res: ServerResponse,
    exchange: Exchange,
    reason: Reason,
    extra: Record<string, string> = {},
  ) => {
    const reply = engine.rejection(exchange, reason, undefined, extra);
    // The gateway or the upstream failed; the agent was not denied anything.
    if (UPSTREAM_FAILURES.has(reason)) exchange.decision = "error";
    sendReply(res, reply);
  };

  const upstreamFailure = (server: string, endpoint: Endpoint | undefined, reason: string, err?: unknown) => {
    metrics.upstreamErrors.inc({ server, reason });
    const fields = {
      server,
      upstream: endpoint?.label,
      reason,
      ...(err !== undefined ? { error: (err as { code?: string }).code ?? (err as Error).message } : {}),
    };
    // An open breaker refuses every request: one warning when it opens is enough (below).
    if (reason === "breaker_open") logger.debug(fields, "upstream skipped");
    else logger.warn(fields, "upstream request failed");
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? "";
    const traceparent = req.headers.traceparent;
    const exchange = engine.newExchange(
      method,
      undefined,
      typeof traceparent === "string" ? traceparent : undefined,
    );
    tracing?.begin(exchange, {
      clientAddress: req.socket.remoteAddress,
      clientPort: req.socket.remotePort,
      httpVersion: req.httpVersion,
    });
    const state: Active = {
      res,
      exchange,
      call: undefined,
      stopped: false,
      longLived: method === "GET",
      clientGone: false,
      timedOut: false,
      shuttingDown: false,
      bodyTimeout: false,
      closed: false,
    };
    active.add(state);
    const socket = req.socket;
    (socket as EdgeSocket)[CURRENT] = state;
    res.once("close", () => {
      active.delete(state);
      state.closed = true;
      state.release?.();
      state.release = undefined;
      if ((socket as EdgeSocket)[CURRENT] === state) (socket as EdgeSocket)[CURRENT] = undefined;
      if (!res.writableFinished) {
        state.clientGone = !state.shuttingDown;
        stopUpstream(state);
        if (state.bodyTimeout) denyExchange(exchange, "request_timeout");
        else if (state.clientGone) countOn(exchange, "client_aborted");
      }
      const status = res.headersSent ? res.statusCode : state.bodyTimeout ? 408 : 499;
      audit.finish(exchange, status);
      if (active.size === 0) idleWaiter?.();
    });
    try {
      await serve(req, res, exchange, state);
    } catch (err) {
      logger.error({ err, request_id: exchange.requestId }, "edge request failed");
      if (!res.headersSent) reject(res, exchange, "internal_error");
      else {
        denyExchange(exchange, "internal_error", "error");
        res.destroy();
      }
    }
  }

  async function serve(
    req: IncomingMessage,
    res: ServerResponse,
    exchange: Exchange,
    state: Active,
  ): Promise<void> {
    const method = exchange.httpMethod;
    const refusedName = refusedHeaderName(req.headers);
    if (refusedName !== undefined) return reject(res, exchange, "header_name_invalid");
    const headers = headerMap(req.headers);
    const path = req.url ?? "/";
    const route = engine.route(path);
    if (route.kind === "broker") return serveBroker(req, res, exchange, state);
    const t0 = performance.now();
    const admitted = engine.admitStep(
      { method, path, headers, localAddress: req.socket.localAddress },
      exchange,
      route,
    );
    // A known agent's cached token is admitted at once: no promise to wait for.
    const admission = "then" in admitted ? await admitted : admitted;
    admitSeconds.observe((performance.now() - t0) / 1000);
    if (!admission.ok) return sendReply(res, admission.reply);
    // The aggregated endpoint's hops: the agent's own request to /mcp was already counted.
    if (!admission.principal.viaBroker) {
      const agentAdmitted = admitAgent(res, exchange, state, admission.principal);
      if (typeof agentAdmitted === "boolean" ? !agentAdmitted : !(await agentAdmitted)) return;
    }

    const media = checkMcpMedia(method, headers);
    if (media) {
      return reject(
        res,
        exchange,
        media,
        media === "http_method_not_allowed" ? { allow: MCP_HTTP_METHODS } : {},
      );
    }

    const opened = engine.openSession(exchange, headers["mcp-session-id"]);
    if (!opened.ok) return sendReply(res, opened.reply);
    const session = opened.session;
    // Where the Envoy plane's ext_authz gets it: after admission, before the body.
    const needed = perAgentCredential(engine, exchange, headers);
    const credential = "then" in needed ? await needed : needed;
    if (!credential.ok) return sendReply(res, credential.reply);

    let body: Buffer | undefined;
    if (method === "POST") {
      const limit = engine.limits.maxRequestBytes;
      const read = bufferedBody(req, limit) ?? (await readBody(req, limit));
      if (!read.ok) {
        if (read.problem === "too_large")
          return reject(res, exchange, "body_too_large", { connection: "close" });
        return; // the client left, or the request timeout answered 408 (see clientError below)
      }
      body = read.body;
      const policy = engine;
      const t1 = performance.now();
      let verdict = policy.evaluateRequestBody(exchange, body, headers);
      requestSeconds.observe((performance.now() - t1) / 1000);
      if (verdict.action === "list_tools") {
        // Pins are checked before the first call this process forwards (B4 of the new-user trial).
        await pinVerifier.verify(policy, verdict.server, credential.headers);
        verdict = policy.evaluateRequestBody(exchange, body, headers, { toolsListed: true });
      }
      if (verdict.action === "reply") return sendReply(res, verdict.reply);
      if (verdict.action !== "forward") return reject(res, exchange, "internal_error");
      // Nothing to ask the store (no approval, budget or cache): no promise to wait for.
      const step = shared.forwardStep(policy, exchange, verdict);
      const refused = step instanceof Promise ? await step : step;
      if (refused) return sendReply(res, refused);
      if (verdict.forwardBody) body = Buffer.from(verdict.forwardBody);
      // The 2026-07-28 notification stream: ended at once on shutdown, like a GET stream.
      if (exchange.methods[0] === "subscriptions/listen") state.longLived = true;
    }
    if (res.destroyed) return;

    const group = upstreams.group(admission.server)!;
    const selected = group.pick(session?.endpoint);
    if (!selected.endpoint) {
      upstreamFailure(admission.server, undefined, "breaker_open");
      return reject(res, exchange, "breaker_open");
    }
    const { endpoint, ticket } = selected;
    endpoint.inflight++;
    try {
      await forward(
        req,
        res,
        exchange,
        state,
        group,
        endpoint,
        ticket,
        headers,
        body,
        session?.upstream,
        credential.headers,
      );
    } finally {
      endpoint.inflight--;
      endpoint.breaker.release(ticket); // no-op once an outcome was reported
    }
  }

  /**
   * The exchanged per-agent token a token-exchange server takes (registry `upstream.tokenExchange`),
   * as its upstream header; no headers for other servers. Fails closed: no token, no request.
   * Answers at once (no promise) when no exchange is needed.
   */
  function perAgentCredential(
    policy: GatewayEngine,
    exchange: Exchange,
    headers: ReturnType<typeof headerMap>,
  ): Credential | Promise<Credential> {
    const need = policy.credentialNeed(exchange, headers);
    if (need.kind === "none") return NO_CREDENTIAL;
    if (need.kind === "refused") return { ok: false, reply: need.reply };
    return exchangedCredential(policy, exchange, need.need);
  }

  async function exchangedCredential(
    policy: GatewayEngine,
    exchange: Exchange,
    need: Parameters<TokenExchanger["credential"]>[0],
  ): Promise<Credential> {
    const outcome = await tokenExchanger.credential(need);
    if (!outcome.ok) return { ok: false, reply: policy.credentialUnavailable(exchange, outcome.cause) };
    // A server that echoes its token has it found by DLP, as a static credential would be.
    const held = HeldValue.of(outcome.token);
    if (held) exchange.heldValues.push(held);
    return { ok: true, headers: outcome.headers };
  }

  /**
   * Rate limit and per-agent caps; false when the request was answered (refused, or the client
   * left). Answers at once (no promise) when the rate limiter does (the in-memory store).
   */
  function admitAgent(
    res: ServerResponse,
    exchange: Exchange,
    state: Active,
    principal: Principal,
  ): boolean | Promise<boolean> {
    const taken = limiter.take(principal);
    if (typeof taken === "number") return admitAfterWait(res, exchange, state, principal, taken);
    return taken.then((wait) => admitAfterWait(res, exchange, state, principal, wait));
  }

  function admitAfterWait(
    res: ServerResponse,
    exchange: Exchange,
    state: Active,
    principal: Principal,
    wait: number,
  ): boolean {
    // Agents are namespaced by issuer: two issuers' "bot" are two agents.
    const agentKey = `${principal.issuer ?? ""}\u0000${principal.agent}`;
    if (wait > 0) {
      reject(res, exchange, "rate_limited", { "retry-after": String(wait) });
      return false;
    }
    // Open requests and streams per agent: each holds sockets here and upstream, and a GET
    // stream may stay open for hours, so a rate limit alone does not bound them.
    const open = openByAgent.get(agentKey) ?? { requests: 0, streams: 0 };
    if (open.requests >= perAgent.maxRequests || (state.longLived && open.streams >= perAgent.maxStreams)) {
      reject(res, exchange, "concurrency_limited");
      return false;
    }
    if (state.closed) return false; // the client left while its token was checked
    openByAgent.set(agentKey, open);
    const stream = state.longLived;
    open.requests++;
    if (stream) open.streams++;
    state.release = () => {
      open.requests--;
      if (stream) open.streams--;
      if (open.requests === 0) openByAgent.delete(agentKey);
    };
    return true;
  }

  /** `/mcp` and `/mcp/views/<name>`: the aggregated endpoint (broker/), in this process. */
  async function serveBroker(req: IncomingMessage, res: ServerResponse, exchange: Exchange, state: Active) {
    state.onStop = () => res.destroy();
    await serveBrokerRequest(
      { engine, broker, admitAgent: async (principal) => admitAgent(res, exchange, state, principal) },
      req,
      res,
      exchange,
    );
  }

  async function forward(
    req: IncomingMessage,
    res: ServerResponse,
    exchange: Exchange,
    state: Active,
    group: UpstreamGroup,
    endpoint: Endpoint,
    ticket: BreakerTicket,
    headers: ReturnType<typeof headerMap>,
    body: Buffer | undefined,
    upstreamSession: string | undefined,
    credential: Readonly<Record<string, string>> | undefined,
  ): Promise<void> {
    const server = group.server;
    const method = exchange.httpMethod as "GET" | "POST" | "DELETE";
    const url = req.url ?? "";
    const q = url.indexOf("?");
    const path =
      q < 0 ? endpoint.path : endpoint.path + (endpoint.path.includes("?") ? "&" : "?") + url.slice(q + 1);
    // The server's spans continue the gateway's CLIENT span: in the traceparent header, and in a
    // 2026-07-28 body's params._meta when the agent put its context there.
    const traceparent = tracing?.forwarding(exchange, endpoint);
    if (traceparent !== undefined && body) body = withMetaTraceparent(exchange, body, traceparent);
    const upstreamHeaders = upstreamRequestHeaders(
      req.headers,
      engine.upstreamHeaders(exchange, headers, credential),
      body?.length,
    );
    if (traceparent !== undefined) upstreamHeaders.traceparent = traceparent;
    // The upstream knows the session by its own id; the client only ever holds the sealed one.
    if (upstreamSession !== undefined) upstreamHeaders["mcp-session-id"] = upstreamSession;
    // Bodies must arrive as the upstream wrote them, or the core cannot inspect them.
    upstreamHeaders["accept-encoding"] = "identity";
    if (method === "GET") {
      // The client holds gateway-sealed event ids; the upstream gets back its own (or none).
      delete upstreamHeaders["last-event-id"];
      const resumeFrom = engine.resumeStream(exchange, headers);
      if (resumeFrom !== undefined) upstreamHeaders["last-event-id"] = resumeFrom;
    }

    const call = new UpstreamCall();
    state.call = call;
    if (state.stopped) call.abort();
    // Our own timer (undici's timeouts are coarse): time to the upstream's response headers,
    // then (JSON) to the end of the body.
    const timer = upstreamTimeoutMs > 0 ? setTimeout(timeOut, upstreamTimeoutMs, state) : undefined;
    call.start(endpoint.pool, {
      path,
      method,
      headers: upstreamHeaders,
      body,
      headersTimeout: 0,
      bodyTimeout: 0,
    });
    try {
      await call.response;
    } catch (err) {
      clearTimeout(timer);
      if (state.clientGone || state.shuttingDown) {
        endpoint.breaker.release(ticket);
        return;
      }
      if (builtBadRequest(err)) {
        // The gateway could not even build the request: no fault of the upstream, so not a
        // breaker failure (one odd request must not pause a server for every agent).
        endpoint.breaker.release(ticket);
        logger.error({ err, server, request_id: exchange.requestId }, "upstream request could not be built");
        return reject(res, exchange, "internal_error");
      }
      upstreamFault(endpoint, ticket);
      const reason = state.timedOut ? "upstream_timeout" : failureReason(err);
      upstreamFailure(server, endpoint, reason, state.timedOut ? undefined : err);
      return reject(res, exchange, reason);
    }

    const status = call.status;
    if (upstreamStatusRefused(status)) {
      // A redirect or the upstream's own auth challenge never reaches the agent. Not a breaker
      // failure: the server answers, it is the gateway's hop to it that is misconfigured.
      clearTimeout(timer);
      call.abort();
      endpoint.breaker.release(ticket);
      upstreamFailure(server, endpoint, `http_${status}`);
      return reject(res, exchange, "upstream_invalid_response");
    }
    const upstreamId = firstHeader(call.headers["mcp-session-id"]);
    // A session the upstream opened reaches the client sealed (bound to this agent, and naming
    // the endpoint that owns it, so any edge replica routes it there); never as the raw id.
    const sealedSession =
      upstreamId === undefined
        ? undefined
        : upstreamId === upstreamSession
          ? headers["mcp-session-id"]
          : engine.sealSession(exchange, upstreamId, group.endpoints.length > 1 ? endpoint.label : undefined);
    const responseHeaders = clientResponseHeaders(call.headers, sealedSession);
    const contentType = firstHeader(call.headers["content-type"]);
    const transformer = engine.responseTransformer(exchange, contentType, status);
    shared.watchResponse(exchange, transformer);
    if (transformer.mode === "json") {
      timer?.refresh();
      try {
        return await relayJson(
          res,
          exchange,
          state,
          server,
          endpoint,
          ticket,
          call,
          transformer,
          responseHeaders,
        );
      } finally {
        clearTimeout(timer);
      }
    }
    clearTimeout(timer);
    if (status >= 500) {
      endpoint.breaker.failure(ticket);
      upstreamFailure(server, endpoint, "http_5xx");
    } else endpoint.breaker.success(ticket);
    if (transformer.mode === "sse")
      return relaySse(res, exchange, state, server, endpoint, call, transformer, responseHeaders);
    return relayRaw(res, state, server, endpoint, call, responseHeaders);
  }

  async function relayJson(
    res: ServerResponse,
    exchange: Exchange,
    state: Active,
    server: string,
    endpoint: Endpoint,
    ticket: BreakerTicket,
    call: UpstreamCall,
    transformer: ResponseTransformer,
    headers: Record<string, string | string[]>,
  ): Promise<void> {
    // Over the limit, the call is aborted at once: nothing more is read.
    const got = await call.collect(engine.limits.maxResponseBytes);
    if (state.clientGone || state.shuttingDown) {
      endpoint.breaker.release(ticket);
      return;
    }
    if (got.kind !== "complete") {
      const reason =
        got.kind === "too_large"
          ? "response_too_large"
          : state.timedOut
            ? "upstream_timeout"
            : "upstream_unavailable";
      if (got.kind === "too_large") endpoint.breaker.success(ticket);
      else upstreamFault(endpoint, ticket);
      upstreamFailure(server, endpoint, reason, got.kind === "failed" ? got.error : undefined);
      return reject(res, exchange, reason);
    }
    const raw = got.body;
    const replaced = transformer.transformJson(raw);
    let status = call.status;
    const refusal = transformer.refusal;
    if (refusal) {
      status = Reasons[refusal].status;
      if (refusal === "upstream_invalid_response") endpoint.breaker.failure(ticket);
      else endpoint.breaker.success(ticket);
      upstreamFailure(server, endpoint, refusal);
    } else {
      if (status >= 500) endpoint.breaker.failure(ticket);
      else endpoint.breaker.success(ticket);
      // An error body the gateway replaced (a wrong path, a server that is not MCP: trial B10)
      // is an upstream error too, counted and logged with its status; the body is never logged.
      const cause = transformer.replacedErrorBody
        ? { code: `HTTP ${status} without a JSON-RPC body (replaced)` }
        : undefined;
      if (status >= 500) upstreamFailure(server, endpoint, "http_5xx", cause);
      else if (cause) upstreamFailure(server, endpoint, "http_4xx", cause);
    }
    let out = replaced ?? raw;
    const classifier = classifierFor(engine);
    let judged: Uint8Array | undefined;
    if (classifier && !refusal && out.byteLength > 0) {
      judged = await classifyResponse(classifier, exchange, out);
      if (judged) out = judged;
    }
    if (res.destroyed) return;
    headers["content-length"] = String(out.byteLength);
    if (judged) {
      headers["content-type"] = "application/json";
      delete headers["content-encoding"];
    }
    if (refusal || transformer.replacedErrorBody) {
      // The gateway's own JSON replaces the body: the upstream's encoding does not apply to it.
      headers["content-type"] = "application/json";
      delete headers["content-encoding"];
    }
    res.writeHead(status, headers);
    res.end(out);
  }

  async function relaySse(
    res: ServerResponse,
    exchange: Exchange,
    state: Active,
    server: string,
    endpoint: Endpoint,
    call: UpstreamCall,
    transformer: ResponseTransformer,
    headers: Record<string, string | string[]>,
  ): Promise<void> {
    if (res.destroyed) return call.abort();
    res.writeHead(call.status, headers);
    res.flushHeaders();
    let stopped = false;
    const cut = await call.stream((chunk) => {
      const out = transformer.push(chunk);
      if (out.byteLength > 0) relayChunk(res, call, out);
      // An event over maxSseEventBytes ends the stream: stop reading the upstream too.
      if (res.destroyed || (out.byteLength > 0 && exchange.reasons.includes("response_too_large"))) {
        stopped = true;
        call.abort();
      }
    });
    const broken = stopped ? undefined : cut;
    if (state.clientGone || res.destroyed) return;
    const tail = transformer.end();
    if (tail.byteLength > 0) res.write(tail);
    if (broken !== undefined && !state.shuttingDown) {
      endpoint.breaker.recordFailure();
      upstreamFailure(server, endpoint, "stream_broken", broken);
    }
    // A stream that ends without answering its requests, and cannot be resumed (no event ids),
    // would leave the client waiting: answer them with an error instead.
    if (exchange.pending.size > 0 && transformer.lastEventId === undefined) {
      const reason: Reason = exchange.reasons.includes("response_too_large")
        ? "response_too_large"
        : broken !== undefined
          ? "upstream_unavailable"
          : "upstream_invalid_response";
      denyExchange(exchange, reason, "error");
      const info = Reasons[reason];
      let events = "";
      for (const key of exchange.pending.keys()) {
        events += formatSseEvent({
          event: "message",
          data: JSON.stringify(
            errorResponse(idOfKey(key), info.code, info.message, {
              reason,
              request_id: exchange.requestId,
            }),
          ),
        });
      }
      exchange.pending.clear();
      res.write(encoder.encode(events));
    }
    res.end();
  }

  async function relayRaw(
    res: ServerResponse,
    state: Active,
    server: string,
    endpoint: Endpoint,
    call: UpstreamCall,
    headers: Record<string, string | string[]>,
  ): Promise<void> {
    if (res.destroyed) return call.abort();
    const length = firstHeader(call.headers["content-length"]);
    if (length !== undefined) headers["content-length"] = length;
    res.writeHead(call.status, headers);
    let stopped = false;
    const cut = await call.stream((chunk) => {
      relayChunk(res, call, chunk);
      if (res.destroyed) {
        stopped = true;
        call.abort();
      }
    });
    if (stopped) return;
    if (cut !== undefined) {
      if (!state.clientGone && !state.shuttingDown) upstreamFailure(server, endpoint, "stream_broken", cut);
      res.destroy(); // a cut body must not look complete
      return;
    }
    res.end();
  }

  const http: Server = createServer(
    {
      // Room for the broker's hop identities and agents' large tokens (policy/header-limits.ts).
      maxHeaderSize: MAX_REQUEST_HEADER_BYTES,
      headersTimeout,
      requestTimeout,
      // Node checks both timeouts on this interval (default 30 s): keep it well below them.
      connectionsCheckingInterval: Math.max(
        100,
        Math.min(headersTimeout || 30_000, requestTimeout || 30_000) / 4,
      ),
      keepAliveTimeout: 5_000,
    },
    (req, res) => {
      handle(req, res).catch((err: unknown) => {
        logger.error({ err }, "edge handler failed");
        if (!res.headersSent) res.writeHead(500).end();
        else res.destroy();
      });
    },
  );

  // Protocol errors and timeouts Node detects before or while reading a request. A body that
  // stops arriving (slow client) gets 408 with a JSON-RPC error; malformed HTTP a bare 400/431.
  http.on("clientError", (err: NodeJS.ErrnoException, socket: Socket) => {
    if (err.code === "HPE_HEADER_OVERFLOW") return headersTooLarge(socket);
    const current = (socket as EdgeSocket)[CURRENT];
    if (err.code === "ECONNRESET" || !socket.writable || current?.res.headersSent) {
      socket.destroy();
      return;
    }
    let head: string;
    let body = "";
    if (err.code === "ERR_HTTP_REQUEST_TIMEOUT") {
      if (current) current.bodyTimeout = true;
      const info = Reasons.request_timeout;
      // `"id": null`: the body never arrived, so no id can be read (docs/REASONS.md).
      body = JSON.stringify(
        errorResponse(null, info.code, info.message, {
          reason: "request_timeout",
          ...(current ? { request_id: current.exchange.requestId } : {}),
        }),
      );
      head = "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json";
    } else {
      head = "HTTP/1.1 400 Bad Request";
    }
    socket.end(`${head}\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
    socket.destroySoon();
  });

  /**
   * Headers longer than MAX_REQUEST_HEADER_BYTES (an agent's token of tens of KB): a 431 with the
   * JSON-RPC error an MCP client can show, one audit record (nothing of the request is known: no
   * agent, no id), and the connection drained before it closes (answerHeaderOverflow).
   */
  function headersTooLarge(socket: Socket): void {
    const exchange = engine.newExchange("");
    const reply = engine.rejection(exchange, "headers_too_large");
    if (answerHeaderOverflow(socket, reply.status, reply.headers, reply.body))
      audit.finish(exchange, reply.status);
  }

  return new Promise((resolve, reject) => {
    const failed = (err: Error) => {
      stopCounting();
      if (ownsState) void shared.close();
      reject(err);
    };
    http.once("error", failed);
    http.listen(
      options.port ?? engine.config.listen.edge.port,
      options.host ?? engine.config.listen.edge.host,
      () => {
        http.off("error", failed);
        listening = true;
        const port = (http.address() as AddressInfo).port;
        const host = options.host ?? engine.config.listen.edge.host;
        const shownHost =
          host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host.includes(":") ? `[${host}]` : host;
        ownUrl = `http://${shownHost}:${port}`;
        let closed: Promise<void> | undefined;
        resolve({
          get engine() {
            return engine;
          },
          setEngine(next) {
            engine = next;
            upstreams.update(upstreamsOf(next));
            metrics.setKnownNames(Object.keys(next.config.agents), next.registry.toolNames());
          },
          port,
          state: shared,
          audit,
          broker,
          url: `http://${shownHost}:${port}`,
          upstreamStatus: () => upstreams.status(),
          ready: () => listening && !closing && shared.ready(),
          close(graceMs = durationMs(engine.config.shutdownGrace)) {
            closed ??= (async () => {
              closing = true;
              stalls.close();
              const stopped = new Promise<void>((done) => http.close(() => done()));
              http.closeIdleConnections();
              for (const a of active) {
                if (a.longLived) {
                  a.shuttingDown = true;
                  stopUpstream(a);
                }
              }
              if (active.size > 0) {
                await new Promise<void>((done) => {
                  const timer = setTimeout(done, graceMs);
                  idleWaiter = () => {
                    clearTimeout(timer);
                    done();
                  };
                });
              }
              for (const a of active) {
                a.shuttingDown = true;
                stopUpstream(a);
              }
              http.closeAllConnections();
              await stopped;
              listening = false;
              stopCounting();
              await upstreams.close();
              stopBrokerWatch();
              await broker.close();
              if (ownsState) await shared.close();
              // The last exchanges' spans: exported before the process goes.
              if (ownsTracing) await tracing?.shutdown();
            })();
            return closed;
          },
        });
      },
    );
  });
}
