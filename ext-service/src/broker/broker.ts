import { randomBytes } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { Client, type StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import {
  WebStandardStreamableHTTPServerTransport,
  createMcpHandler,
  isInitializeRequest,
  isLegacyRequest,
  type JSONRPCMessage,
  type McpHttpHandler,
  type ServerEvent,
} from "@modelcontextprotocol/server";
import { LRUCache } from "lru-cache";
import { Authenticator, type Principal } from "../policy/identity.js";
import { JsonRpcCode } from "../policy/reasons.js";
import { isPlainObject, type JsonRpcId } from "../mcp/jsonrpc.js";
import type { Logger } from "../telemetry/logger.js";
import type { Metrics } from "../telemetry/metrics.js";
import type { GatewayEngine } from "../config/compile.js";
import { durationMs } from "../config/schema.js";
import { PARAM_HEADER_PREFIX, paramHeaderDeclarations, paramHeaderMismatch } from "../mcp/param-headers.js";
import { answerKey, type AnswerRelay } from "./answers.js";
import { fanOut, fanoutMs } from "./fanout.js";
import { BrokerAggregate } from "./aggregate.js";
import { BrokerListCache } from "./list-cache.js";
import { LIST_PAGES } from "./list-page.js";
import { closeHop } from "./hop-pool.js";
import { buildServer, offeredCapabilities, type ServerParts } from "./handlers.js";
import { ParkedHopStreams } from "./hop-resume.js";
import { BrokerHops, HOP_CLIENT_INFO, HOP_TIMEOUT_MS, STATELESS_HOP } from "./hops.js";
import {
  BrokerListenBus,
  LIST_CHANGED_EVENTS,
  listenFilter,
  subscriptionsByServer,
  type ListenFilter,
  type ListenWatch,
} from "./listen.js";
import { relayed, type LiveSession, type SessionEnd } from "./live-session.js";
import { SessionAnswers } from "./session-answers.js";
import { ServerPresence, type ListChangedKind, type PresenceWatcher } from "./presence.js";
import type { BrokerAudit, BrokerRefusal } from "./refusals.js";
import { BrokerReplay, postStreams, writeSharingSerialisation } from "./replay.js";
import { hopCapabilities, RELAYED_REQUESTS, type Scope } from "./scope.js";
import { InputBridge } from "./bridge.js";
import {
  brokerSessionOwner,
  OpenedBrokerSessions,
  sealBrokerSession,
  type BrokerSession,
  type SessionRevocations,
} from "./session.js";
import { UpstreamStreams } from "./upstream-streams.js";
import { answer, onlyAnswers, requestIdOf, sendResponse, webRequest } from "./web.js";

export interface BrokerOptions {
  /** The policy in force (it changes on reload). */
  engine: () => GatewayEngine;
  logger: Logger;
  metrics: Metrics;
  /**
   * Origin through which the broker reaches `/mcp/<server>` (each hop is decided there, exactly as
   * a direct client's request): the edge itself on the local plane, Envoy's listener behind Envoy.
   */
  hopOrigin: () => string;
  /**
   * When (ms) any replica last saw a server change its lists (GatewayState.listsChangedAt, given
   * when the cache is shared by replicas): the kept lists of other replicas follow it.
   */
  listsChangedAt?: (server: string) => Promise<number>;
  /**
   * Sessions ended with DELETE on any replica (the shared state store, Redis). Absent: only this
   * process knows of a DELETE; another replica still opens the sealed id.
   */
  revocations?: SessionRevocations;
  /**
   * Answers to relayed requests that reach another replica, handed over through the shared state
   * store (answers.ts). Absent: an answer is taken only by the process whose request waits for it.
   */
  answers?: AnswerRelay;
}

const LIST_CHANGED = [
  "notifications/tools/list_changed",
  "notifications/prompts/list_changed",
  "notifications/resources/list_changed",
] as const;
/** The longest delay a timer takes (2^31 - 1 ms, about 24.8 days). */
const MAX_TIMER_MS = 2_147_483_647;

/**
 * The aggregated endpoint (`/mcp`, `/mcp/views/<name>`): one MCP server, built with the SDK's
 * server classes, over every server the agent may use. Each of its hops is an SDK client of the
 * gateway's own `/mcp/<server>` route, presenting a gateway-sealed identity for the agent
 * (policy/hop-token.ts), so every decision, DLP, injection check, pin check and audit record of a
 * hop is exactly the one a direct client gets. See docs/design/broker.md.
 */
export class Broker {
  /**
   * The 2025 sessions this process serves, at most broker.liveSessions.max (read at start; the
   * least recently used goes first), each dropped after broker.liveSessions.idle with nothing in
   * progress (Broker.release). One that leaves takes with it what only this process knew of it:
   * the hop sessions it opened (ended on their servers), its streams, its kept events.
   */
  private readonly sessions: LRUCache<string, LiveSession>;
  /** The broker is closing (close): sessions leaving now end no hop sessions. */
  private closing = false;
  /**
   * Sessions ended with DELETE, seen by this process (its own DELETEs, and ends the shared store
   * reported). Their sealed ids still open until they expire, so without this a terminated id
   * would be restored like one from another replica; they are answered 404 as a server does.
   * Without a shared store another replica does not know: there the id reopens, and its hops
   * answer 404 from each server, whose sessions the DELETE ended.
   */
  private readonly terminated = new LRUCache<string, true>({ max: 10_000, ttl: 24 * 3_600_000 });
  /** Sealed ids this process opened, with the session each carries (session.ts). */
  private readonly opened = new OpenedBrokerSessions(10_000);
  private readonly modern: McpHttpHandler;
  /**
   * Prefixed to the ids of requests that share an id space with other processes' and other SDK
   * objects' (each numbers its own from 0): with an answer relay, those the session servers send
   * clients (an answer must reach the request it answers, not another replica's with the same
   * number); the 2025 hops' to servers (hop).
   */
  private readonly wireIdPrefix = `gw-${randomBytes(9).toString("base64url")}-`;
  /** The clients' answers to the requests relayed to them (session-answers.ts). */
  private readonly answers: SessionAnswers;
  /** The hops to the servers (hops.ts). */
  private readonly hops: BrokerHops;
  /** The servers of a view as one (aggregate.ts). */
  private readonly aggregate: BrokerAggregate;
  /** What the aggregate's MCP servers are built from (handlers.ts). */
  private readonly serverParts: ServerParts;
  /** 2026-07-28 calls to 2025-only servers held for their client's input (bridge.ts). */
  readonly bridge = new InputBridge();
  /** Lists per agent view and server (list-cache.ts). */
  private readonly lists: BrokerListCache;
  /** What the 2025 sessions' streams sent, to replay for a client that resumes (replay.ts). */
  private readonly replay: BrokerReplay;
  /** 2026-07-28 `subscriptions/listen` on the aggregate, fed per subscriber (listen.ts). */
  private readonly listenBus = new BrokerListenBus();
  /** The servers' streams held behind the clients' streams, bounded per agent (upstream-streams.ts). */
  private readonly upstreamStreams: UpstreamStreams;
  /** Servers' capabilities, and which are left out of the views (presence.ts). */
  private readonly presence: ServerPresence;
  /** Capabilities being asked of servers not known yet, for 2026-07-28 requests (discover). */
  private readonly discovering = new Map<string, { asked: Promise<void>; until: number }>();

  constructor(private readonly options: BrokerOptions) {
    this.sessions = new LRUCache<string, LiveSession>({
      max: options.engine().config.broker.liveSessions.max,
      dispose: (live, sessionId) => this.disposed(live, sessionId),
    });
    this.lists = new BrokerListCache(options.metrics, options.listsChangedAt);
    this.replay = new BrokerReplay(options.engine().config.broker.replay.maxTotalBytes, options.metrics);
    this.upstreamStreams = new UpstreamStreams(options.metrics);
    this.presence = new ServerPresence(
      () => durationMs(this.engine.config.broker.probeInterval),
      (server, present, told) =>
        options.logger.info(
          { server, clients: told },
          present
            ? "aggregated endpoint: server back in the view; its clients are told (list_changed)"
            : "aggregated endpoint: server left out of the view; its clients are told (list_changed)",
        ),
    );
    this.answers = new SessionAnswers(options.logger, this.wireIdPrefix);
    this.hops = new BrokerHops(
      options,
      this.presence,
      this.lists,
      {
        get: (id) => this.sessions.get(id),
        ended: (id) => this.terminated.has(id),
        joined: (live, server) => this.listenTo(live, server),
        namesOf: (view) => this.aggregate.namesOf(view),
      },
      this.wireIdPrefix,
    );
    this.aggregate = new BrokerAggregate(options.engine, this.lists, this.hops);
    this.serverParts = {
      engine: options.engine,
      aggregate: this.aggregate,
      hops: this.hops,
      presence: this.presence,
      bridge: this.bridge,
    };
    this.modern = createMcpHandler(
      async (ctx) => {
        const scope = ctx.authInfo?.extra?.scope;
        if (!isPlainObject(scope)) throw new Error("broker: request without its scope");
        // What the aggregate advertises (server/discover) and serves depends on what its
        // servers offer: asked of those not known yet, once per process.
        await this.discover(scope as unknown as Scope, ctx.authInfo?.extra?.audit as BrokerAudit | undefined);
        return buildServer(this.serverParts, scope as unknown as Scope);
      },
      {
        legacy: "reject",
        bus: this.listenBus,
        onerror: (err) => options.logger.debug({ err }, "broker: request refused"),
      },
    );
  }

  private get engine(): GatewayEngine {
    return this.options.engine();
  }

  /**
   * A 2025 session left `sessions`: over (its sealed id expired; the client's DELETE, here or on
   * another replica) or only gone from this process (evicted, idle), its id still valid. Its hop
   * sessions end on their servers in the background: every one when its id expired; else those
   * only this process knew (LiveSession.lateHops), which nothing could use or end once it is gone
   * (a DELETE here has ended every one already; the sealed ones of a session only gone from this
   * process stay for its id to be restored).
   */
  private disposed(live: LiveSession, sessionId: string): void {
    clearTimeout(live.expiry);
    clearTimeout(live.idle);
    const reason: SessionEnd =
      live.leaving ??
      (this.terminated.has(sessionId)
        ? "deleted"
        : live.session.expiresAt <= Date.now()
          ? "expired"
          : "evicted");
    live.left = reason;
    if (!this.closing)
      void this.hops.closeHops(
        live,
        live.scope.principal,
        sessionId,
        reason,
        reason === "expired" ? "all" : "late",
      );
    this.unlisten(live);
    for (const { stop } of live.awaiting.values()) stop();
    live.awaiting.clear();
    live.events.clear();
    void live.server.close().catch(() => undefined);
    this.hops.dropHops((key) => key.session === sessionId);
  }

  /** Removes session `id` from this process for `reason`, if `live` is still the one held. */
  private leave(id: string, live: LiveSession, reason: "idle" | "expired"): void {
    if (this.sessions.peek(id) !== live) return;
    live.leaving = reason;
    this.sessions.delete(id);
  }

  /** A request of session `live` is being served (its idle time stops) until `release`. */
  private use(live: LiveSession): void {
    live.active++;
    clearTimeout(live.idle);
    live.idle = undefined;
  }

  /**
   * A request of session `id` is done: with nothing else in progress (no request, no client
   * stream open), the session leaves the process after broker.liveSessions.idle unless used again.
   */
  private release(id: string, live: LiveSession): void {
    live.active--;
    if (live.expired && live.posts === 0) return this.leave(id, live, "expired");
    if (live.active > 0 || live.left !== undefined) return;
    clearTimeout(live.idle);
    const idleMs = durationMs(this.engine.config.broker.liveSessions.idle);
    live.idle = setTimeout(() => this.leave(id, live, "idle"), Math.min(idleMs, MAX_TIMER_MS));
    live.idle.unref();
  }

  /**
   * Serves one HTTP request on the aggregated endpoint; the agent is already authenticated. A
   * refusal of the whole request is returned, not answered: the caller answers and audits it (as
   * it does its own refusals); refusals of single messages inside an answer go to `audit`.
   */
  async handle(
    req: IncomingMessage,
    res: ServerResponse,
    principal: Principal,
    view: string | undefined,
    body: unknown,
    audit: BrokerAudit,
  ): Promise<BrokerRefusal | undefined> {
    const origin = this.options.hopOrigin();
    const request = webRequest(req, origin);
    const agentToken = Authenticator.bearerToken(req.headers.authorization) ?? undefined;
    // Handlers reach `audit` through the SDK's authInfo (auditOf): per request, also inside a
    // 2025 session that serves several at once.
    const authInfo = { token: "", clientId: principal.agent, scopes: [], extra: { audit } };
    if (req.method === "POST" && !(await isLegacyRequest(request, body))) {
      const paramHeaders: Record<string, string> = {};
      for (const [name, value] of Object.entries(req.headers))
        if (name.startsWith(PARAM_HEADER_PREFIX) && typeof value === "string") paramHeaders[name] = value;
      const refused = this.paramHeadersRefused(principal, view, body, paramHeaders);
      if (refused) return refused;
      const scope: Scope = {
        principal,
        view,
        modern: true,
        session: undefined,
        sessionId: undefined,
        clientCapabilities: {},
        paramHeaders,
        bearer: { token: agentToken },
      };
      // A 2026-07-28 request is cancelled by closing its stream: the agent going away aborts it.
      const modernRequest = webRequest(req, origin, res);
      const serve = () =>
        this.modern.fetch(modernRequest, {
          parsedBody: body,
          authInfo: { ...authInfo, extra: { scope, audit } },
        });
      if (!isPlainObject(body) || body.method !== "subscriptions/listen") return answer(res, await serve());
      // Counted against the agent's streams before anything opens: refused, nothing opened.
      const opened: { watch?: ListenWatch } = {};
      const hold = this.upstreamStreams.open(
        principal,
        this.streamLimits.maxPerAgent,
        this.aggregate.servers(principal, view).length,
        () => opened.watch?.close(),
      );
      if (!hold) return this.streamsLimited(principal, requestIdOf(body));
      // The servers' listens open first, so no change after the acknowledgement is missed.
      const watch = await this.watch(scope, listenFilter(body), () => hold.close());
      opened.watch = watch;
      const response = await this.listenBus.current.run(watch, serve);
      // Refused, or nothing to listen for: the SDK never subscribed.
      if (!watch.attached) watch.close();
      return answer(res, response);
    }
    const owner = brokerSessionOwner(principal.issuer, principal.agent, view);
    const sessionId = req.headers["mcp-session-id"];
    if (typeof sessionId !== "string") {
      if (req.method === "POST" && isInitializeRequest(body)) {
        return this.initialize(
          res,
          request,
          principal,
          view,
          body as { params?: Record<string, unknown> },
          agentToken,
          authInfo,
          audit,
        );
      }
      return { reason: "session_required", id: requestIdOf(body) };
    }
    // Opened on every request, also when this process holds the session: the id must be one the
    // gateway sealed for this agent, issuer and view, with a key it still holds (an earlier open
    // of the same id, owner and keys answers that: OpenedBrokerSessions).
    const now = Date.now();
    const session = this.opened.open(this.engine.sessions, sessionId, owner, now);
    if (!session || this.terminated.has(sessionId))
      return { reason: "session_unknown", id: requestIdOf(body) };
    const revocations = this.options.revocations;
    if (revocations) {
      // Ended on another replica? Unknown when the store cannot say: refused, not served.
      let ended: boolean;
      try {
        ended = await revocations.revoked(sessionId);
      } catch (err) {
        return this.sessionUnavailable("check", err, body);
      }
      if (ended) {
        this.ended(sessionId, session, now);
        return { reason: "session_unknown", id: requestIdOf(body) };
      }
    }
    if (req.method === "DELETE" && revocations) {
      // Recorded first: a DELETE succeeds only once every replica will refuse the id.
      try {
        await revocations.revoke(sessionId, session.expiresAt);
      } catch (err) {
        return this.sessionUnavailable("record", err, body);
      }
    }
    const held = this.sessions.get(sessionId);
    if (req.method === "POST" && onlyAnswers(body)) {
      const relay = this.options.answers;
      if (relay) {
        const answers = (Array.isArray(body) ? body : [body]) as JSONRPCMessage[];
        const elsewhere = answers.filter((m) => !held?.awaiting.has(answerKey((m as { id: unknown }).id)));
        if (elsewhere.length > 0)
          return this.answers.handOver(res, relay, sessionId, held, { elsewhere, answers });
      } else if ((held?.relaying ?? 0) === 0) {
        // An answer to a relayed request this process did not send (the session's requests did
        // not stick to one replica) or no longer waits for: accepting it would drop it silently.
        return this.answers.notPending(held !== undefined);
      }
    }
    const live = held ?? (await this.restore(sessionId, session, principal, view, origin));
    this.use(live);
    const posting = req.method === "POST";
    if (posting) live.posts++;
    try {
      return await this.serveSession(
        req,
        res,
        live,
        principal,
        view,
        sessionId,
        session,
        now,
        request,
        body,
        authInfo,
        agentToken,
      );
    } finally {
      if (posting) live.posts--;
      this.release(sessionId, live);
    }
  }

  /** Serves one request of the 2025 session `live` (handle). */
  private async serveSession(
    req: IncomingMessage,
    res: ServerResponse,
    live: LiveSession,
    principal: Principal,
    view: string | undefined,
    sessionId: string,
    session: BrokerSession,
    now: number,
    request: Request,
    body: unknown,
    authInfo: { token: string; clientId: string; scopes: string[]; extra: Record<string, unknown> },
    agentToken: string | undefined,
  ): Promise<BrokerRefusal | undefined> {
    this.touch(live, agentToken);
    if (req.method === "DELETE") {
      live.leaving = "deleted";
      await this.hops.closeHops(live, principal, sessionId, "deleted", "all");
    }
    let resumedStream: string | undefined;
    if (req.method === "GET") {
      const lastEventId = req.headers["last-event-id"];
      if (typeof lastEventId === "string") {
        // An id whose event is not held here (evicted, expired, sent by another replica or by
        // this process before a restart) cannot be replayed without a hole: the stream starts
        // afresh, as for a client that sent none (the spec leaves replaying to the server).
        const held = live.events.holds(lastEventId);
        this.replay.resumptions.inc({ result: held ? "replayed" : "unknown" });
        if (held) resumedStream = await live.events.getStreamIdForEventId(lastEventId);
        else request.headers.delete("last-event-id");
      }
      if (live.listeners === undefined && !this.listen(live, principal, view, sessionId))
        return this.streamsLimited(principal, null);
    }
    // A POST's requests learn which of the transport's streams answers them (replay.ts).
    const response = await (req.method === "POST"
      ? postStreams.run({ id: undefined }, () =>
          live.transport.handleRequest(request, { parsedBody: body, authInfo }),
        )
      : live.transport.handleRequest(request, { parsedBody: body, authInfo }));
    if (req.method === "DELETE" && response.ok) this.ended(sessionId, session, now);
    if (req.method !== "GET" || !response.ok) {
      // A GET refused (a second stream of the session, ...): nothing to hold the servers' for.
      if (req.method === "GET" && live.streams === 0) live.hold?.linger(this.streamLimits.lingerMs);
      return answer(res, response);
    }
    // The stream is the client's again: the hops a server closed on it resume now (hop-resume.ts).
    if (resumedStream !== undefined) live.parkedHops.resume(resumedStream);
    live.streams++;
    live.hold?.attach();
    try {
      await sendResponse(res, response);
    } finally {
      // The client's stream ended (closed, often without a DELETE): the servers' streams behind
      // it stay while the client may still resume (what they send is kept for it), then are
      // closed (after broker.streams.linger, or sooner for a newer stream of the same agent over
      // its limit), and opened again with the client's next GET.
      if (--live.streams === 0) live.hold?.linger(this.streamLimits.lingerMs);
    }
    return undefined;
  }

  /**
   * A request of session `live` was admitted with `token`: from now on every hop of the session
   * presents it (LiveSession.scope.bearer), also a server's GET stream that reopens later, and
   * the reopenings held back for a newer token (reopenStream) run now.
   */
  private touch(live: LiveSession, token: string | undefined): void {
    if (live.scope.bearer.token === token) return;
    live.scope.bearer.token = token;
    const waiting = [...live.awaitingToken];
    live.awaitingToken.clear();
    for (const reopen of waiting) reopen();
  }

  /**
   * The SDK's reopening of a server's GET stream behind session `live` (it closed): after
   * `delayMs`, as the SDK would, when the session's agent token is still valid; held back until a
   * request of the agent brings a newer one (touch) when it has expired and `server` would need
   * it (a token-exchange server), rather than presented expired and refused.
   */
  private reopenStream(live: LiveSession, server: string, reopen: () => void, delayMs: number): () => void {
    const run = () => {
      if (!this.hops.bearerExpired(live.scope.bearer.token, server)) return reopen();
      this.options.logger.info(
        { server },
        "aggregated endpoint: the agent's token has expired; the server's stream reopens with the agent's next request",
      );
      live.awaitingToken.add(run);
    };
    const timer = setTimeout(run, delayMs);
    return () => {
      clearTimeout(timer);
      live.awaitingToken.delete(run);
    };
  }

  /**
   * The per-agent bound on the servers' streams (broker.streams): by default the number of
   * streams an agent may hold on `/mcp/<server>`, each client stream of `/mcp` counting once, and
   * a linger no longer than the replay buffer keeps what they send.
   */
  private get streamLimits(): { maxPerAgent: number; lingerMs: number } {
    const config = this.engine.config;
    return {
      maxPerAgent: config.broker.streams.maxPerAgent ?? config.edge.perAgent.maxStreams,
      lingerMs: Math.min(durationMs(config.broker.streams.linger), durationMs(config.broker.replay.ttl)),
    };
  }

  /** A new client stream over the agent's limit, every stream it holds still open (429). */
  private streamsLimited(principal: Principal, id: JsonRpcId | null): BrokerRefusal {
    this.options.logger.info(
      { agent: principal.agent, limit: this.streamLimits.maxPerAgent },
      "aggregated endpoint: stream refused, the agent holds its limit of streams",
    );
    return { reason: "upstream_streams_limited", id };
  }

  /** Closes the servers' GET streams of a session (listen) and frees their room. */
  private unlisten(live: LiveSession): void {
    const hold = live.hold;
    live.hold = undefined;
    // Its close closes the listeners (listen).
    if (hold) hold.close();
    else this.closeListeners(live);
  }

  private closeListeners(live: LiveSession): void {
    live.hold = undefined;
    live.unwatch?.();
    live.unwatch = undefined;
    live.awaitingToken.clear();
    const listeners = live.listeners;
    live.listeners = undefined;
    live.listenScope = undefined;
    for (const { client } of listeners?.values() ?? []) void client.close().catch(() => undefined);
  }

  /**
   * 2026-07-28 `tools/call`: the `Mcp-Param-*` headers must agree with the arguments, as the
   * tool's pinned input schema declares them (SEP-2243). A server checks this before it runs the
   * tool and answers HTTP 400; the broker is that server for the agent, so it checks here, before
   * the SDK answers in-band. Undefined when there is nothing to refuse (or the name routes
   * nowhere: the call itself answers that).
   */
  private paramHeadersRefused(
    principal: Principal,
    view: string | undefined,
    body: unknown,
    headers: Record<string, string>,
  ): BrokerRefusal | undefined {
    if (!isPlainObject(body) || body.method !== "tools/call" || !isPlainObject(body.params)) return undefined;
    const name = body.params.name;
    if (typeof name !== "string") return undefined;
    const target = this.aggregate.namesOf(view).split(name);
    if (!target || !this.aggregate.servers(principal, view).includes(target.server)) return undefined;
    const tool = this.engine.registry.server(target.server)?.tools.get(target.name);
    if (!tool) return undefined;
    const problem = paramHeaderMismatch(
      paramHeaderDeclarations(tool.inputSchema),
      body.params.arguments,
      (header) => headers[header],
    );
    if (problem === undefined) return undefined;
    return {
      reason: "header_mismatch",
      id: requestIdOf(body),
      detail: problem,
      server: target.server,
      subject: { kind: "tools", name },
    };
  }

  /** Session `id` ended (here or, as the shared store says, on another replica). */
  private ended(id: string, session: BrokerSession, now: number): void {
    // Known as ended first: the session's dispose reads it.
    this.terminated.set(id, true, { ttl: Math.max(1, session.expiresAt - now) });
    this.sessions.delete(id);
  }

  private sessionUnavailable(what: "check" | "record", err: unknown, body: unknown): BrokerRefusal {
    this.options.logger.error(
      { error: (err as { message?: string } | null)?.message },
      `aggregated endpoint: cannot ${what} a session's end in the state store`,
    );
    return { reason: "session_unavailable", id: requestIdOf(body) };
  }

  /**
   * `initialize` without a session: opens a session on each server of the view (in parallel; one
   * that fails, or has not answered by the fan-out's deadline, is left out and opened later when
   * it is used), seals them into the client's id. A late one's session, once opened, is the
   * client session's (BrokerHops.lateOpening).
   */
  private async initialize(
    res: ServerResponse,
    request: Request,
    principal: Principal,
    view: string | undefined,
    body: { params?: Record<string, unknown> },
    agentToken: string | undefined,
    authInfo: { token: string; clientId: string; scopes: string[]; extra: Record<string, unknown> },
    audit: BrokerAudit,
  ): Promise<BrokerRefusal | undefined> {
    const params = body.params ?? {};
    const clientCapabilities = isPlainObject(params.capabilities) ? params.capabilities : {};
    const info = isPlainObject(params.clientInfo) ? params.clientInfo : {};
    const session: BrokerSession = {
      protocolVersion: typeof params.protocolVersion === "string" ? params.protocolVersion : "2025-03-26",
      clientCapabilities,
      clientInfo: {
        name: typeof info.name === "string" ? info.name : "client",
        version: typeof info.version === "string" ? info.version : "0",
      },
      hops: {},
      expiresAt: Date.now() + durationMs(this.engine.config.broker.sessionTtl),
    };
    const scope: Scope = {
      principal,
      view,
      modern: false,
      session,
      sessionId: undefined,
      clientCapabilities,
      bearer: { token: agentToken },
    };
    // A server this agent's hop identity is too long for is left out (it is not down: a request
    // naming it is refused with agent_token_too_large, withHopOnce).
    const servers = this.aggregate
      .servers(principal, view)
      .filter((server) => !this.hops.hopTokenTooLarge(scope, server));
    const late = new Map<string, Promise<string>>();
    const opened = await fanOut(
      servers.map((server) => this.hops.openHopSession(scope, server)),
      fanoutMs(this.engine),
      (i, opening) => {
        this.hops.late(servers[i]!, "initialize");
        late.set(servers[i]!, opening);
      },
    );
    opened.forEach((result, i) => {
      const server = servers[i]!;
      if (result.status === "fulfilled") session.hops[server] = result.value;
      else {
        if (result.status === "rejected") this.hops.dropped(server, "initialize", result.reason);
        audit.leftOut(server, result.status === "late");
      }
    });
    // What the client is told it may use (sealed: a replica that restores the session serves the
    // same), fixed for the session: 2025 has no notification of a change of capabilities. From
    // every server of the view whose capabilities this process knows: those that answered now,
    // and one down now with what it offered when a hop or probe last reached it (it rejoins the
    // session when it answers again). One never reached since the start or the last reload
    // offers nothing the session is told of.
    session.offers = offeredCapabilities(this.serverParts, servers);
    const sealed = sealBrokerSession(
      this.engine.sessions,
      brokerSessionOwner(principal.issuer, principal.agent, view),
      session,
    );
    const live = await this.liveSession(sealed, session, principal, view);
    this.use(live);
    try {
      this.touch(live, agentToken);
      for (const [server, opening] of late) this.hops.lateOpening(live, server, opening);
      const response = await live.transport.handleRequest(request, { parsedBody: body, authInfo });
      return await answer(res, response);
    } finally {
      this.release(sealed, live);
    }
  }

  private async liveSession(
    sealed: string,
    session: BrokerSession,
    principal: Principal,
    view: string | undefined,
  ): Promise<LiveSession> {
    const scope: Scope = {
      principal,
      view,
      modern: false,
      session,
      sessionId: sealed,
      clientCapabilities: session.clientCapabilities,
      bearer: { token: undefined },
    };
    const server = buildServer(this.serverParts, scope);
    const replay = this.engine.config.broker.replay;
    const events = this.replay.session({
      maxEvents: replay.maxEvents,
      maxBytes: replay.maxBytes,
      ttlMs: durationMs(replay.ttl),
    });
    const transport = new WebStandardStreamableHTTPServerTransport({
      sessionIdGenerator: () => sealed,
      onsessionclosed: (id) => void this.sessions.delete(id),
      // Resumable streams: every SSE event gets an id, 2025-11-25 clients a priming event and
      // the retry interval, and a GET with Last-Event-ID replays what followed on that stream.
      eventStore: events,
      retryInterval: durationMs(replay.retry),
    });
    writeSharingSerialisation(transport, events);
    await server.connect(transport);
    const live: LiveSession = {
      transport,
      server,
      session,
      events,
      scope,
      awaitingToken: new Set(),
      listeners: undefined,
      listenScope: undefined,
      unwatch: undefined,
      relaying: 0,
      awaiting: new Map(),
      streams: 0,
      hold: undefined,
      parkedHops: new ParkedHopStreams(),
      expiry: undefined,
      lateHops: new Map(),
      active: 0,
      idle: undefined,
      posts: 0,
      expired: false,
      leaving: undefined,
      left: undefined,
    };
    const relay = this.options.answers;
    if (relay) this.answers.wire(live, relay);
    this.sessions.set(sealed, live);
    // Its sealed id expires then, on every replica: the session is over, its hop sessions are
    // ended on their servers (dispose), as a DELETE of the client would. The id opens no new
    // request from then on; a POST still being answered is answered first (its call would
    // otherwise never be: the transport closes its stream without the answer), bounded by the
    // hop's own timeout, and the session leaves when the last one is done (release).
    live.expiry = setTimeout(
      () => (live.posts > 0 ? (live.expired = true) : this.leave(sealed, live, "expired")),
      Math.min(Math.max(0, session.expiresAt - Date.now()), MAX_TIMER_MS),
    );
    live.expiry.unref();
    // Idle until its first request is served (use, release).
    live.active = 1;
    this.release(sealed, live);
    return live;
  }

  /**
   * A valid sealed id this process does not hold (another replica opened it, or this process
   * restarted or evicted it): the SDK session is rebuilt by replaying the client's initialize.
   */
  private async restore(
    sealed: string,
    session: BrokerSession,
    principal: Principal,
    view: string | undefined,
    origin: string,
  ): Promise<LiveSession> {
    const live = await this.liveSession(sealed, session, principal, view);
    const replay = await live.transport.handleRequest(
      new Request(`${origin}/mcp`, {
        method: "POST",
        headers: { "content-type": "application/json", accept: "application/json, text/event-stream" },
      }),
      {
        parsedBody: {
          jsonrpc: "2.0",
          id: "gateway-restore",
          method: "initialize",
          params: {
            protocolVersion: session.protocolVersion,
            capabilities: session.clientCapabilities,
            clientInfo: session.clientInfo,
          },
        },
      },
    );
    await replay.text();
    // The replayed initialize's answer is no event of the client's.
    live.events.clear();
    return live;
  }

  /**
   * The merged GET stream: the client opened its stream, so the broker opens each server's (its
   * own GET on /mcp/<server>, inspected there like any stream) and relays what arrives on the
   * client's: list changes, resource updates (URIs prefixed), log messages (logger named by
   * server), and requests outside any call (relayed with the SDK's ids on each side). False,
   * with nothing opened, when the agent holds its limit of streams, each still open.
   */
  private listen(
    live: LiveSession,
    principal: Principal,
    view: string | undefined,
    sessionId: string,
  ): boolean {
    const scope: Scope = {
      principal,
      view,
      modern: false,
      session: live.session,
      sessionId,
      clientCapabilities: live.session.clientCapabilities,
      bearer: live.scope.bearer,
    };
    // A stateless server has no stream of its own to open (and may answer GET with 405). One
    // without a hop session yet (down at initialize) counts: it gets its stream when it joins.
    const servers = this.aggregate
      .servers(principal, view)
      .filter((s) => this.hops.hopSessionId(scope, s) !== STATELESS_HOP);
    if (servers.length > 0) {
      const hold = this.upstreamStreams.open(principal, this.streamLimits.maxPerAgent, servers.length, () =>
        this.closeListeners(live),
      );
      if (!hold) return false;
      live.hold = hold;
    }
    live.listeners = new Map();
    live.listenScope = scope;
    // Servers leaving or rejoining the view reach the client on this stream (presence.ts); one
    // that rejoins gets its stream opened again (the old one may have given up reconnecting).
    live.unwatch = this.presence.watch(
      this.presenceWatcher(scope, (kind, server, present) => {
        void live.server
          .notification({ method: `notifications/${kind}/list_changed` })
          .catch(() => undefined);
        if (present) this.listenTo(live, server);
      }),
    );
    for (const server of servers) this.listenTo(live, server);
    return true;
  }

  /**
   * Opens `server`'s GET stream behind the client's of `live` (listen), unless one is open that
   * was opened since the server last left the view; one opened before is closed first. Nothing
   * when the client has no stream open, or the session has no hop session on the server yet (it
   * gets one when a hop first needs it: withHopOnce calls this again then).
   */
  private listenTo(live: LiveSession, server: string): void {
    const scope = live.listenScope;
    const listeners = live.listeners;
    if (scope === undefined || listeners === undefined) return;
    const hopSession = this.hops.hopSessionId(scope, server);
    if (!hopSession) return;
    const generation = this.presence.generation(server);
    const held = listeners.get(server);
    if (held !== undefined) {
      if (held.generation >= generation) return;
      void held.client.close().catch(() => undefined);
    }
    const names = this.aggregate.namesOf(scope.view);
    const capabilities: Record<string, unknown> = {};
    for (const [, capability] of RELAYED_REQUESTS) {
      if (scope.clientCapabilities[capability] !== undefined)
        capabilities[capability] = scope.clientCapabilities[capability];
    }
    const client = new Client(HOP_CLIENT_INFO, { capabilities });
    for (const method of LIST_CHANGED) {
      client.setNotificationHandler(method, () => {
        // Dropped before the client hears of it: the list it asks for next is the new one.
        this.listChanged(server, method);
        void live.server.notification({ method }).catch(() => undefined);
      });
    }
    client.setNotificationHandler("notifications/resources/updated", (n) =>
      live.server
        .notification({
          method: "notifications/resources/updated",
          params: { ...n.params, uri: names.joinUri(server, n.params.uri) },
        })
        .catch(() => undefined),
    );
    client.setNotificationHandler("notifications/message", (n) =>
      live.server
        .notification({
          method: "notifications/message",
          params: {
            ...n.params,
            logger: n.params.logger === undefined ? server : names.join(server, n.params.logger),
          },
        })
        .catch(() => undefined),
    );
    for (const [method, capability] of RELAYED_REQUESTS) {
      if (capabilities[capability] === undefined) continue;
      client.setRequestHandler(method, (request) =>
        relayed(live, () =>
          live.server.request({ method, params: request.params } as never, { timeout: HOP_TIMEOUT_MS }),
        ),
      );
    }
    listeners.set(server, { client, generation });
    const transport = this.hops.hopTransport(scope, server, hopSession, (reopen, delayMs) =>
      this.reopenStream(live, server, reopen, delayMs),
    );
    transport.setProtocolVersion(live.session.protocolVersion);
    void client
      .connect(transport)
      .then(() => transport.resumeStream(""))
      .catch((err: unknown) => {
        // Opened again when the server rejoins (listenTo).
        if (listeners.get(server)?.client === client) listeners.delete(server);
        this.hops.dropped(server, "GET", err);
      });
  }

  /**
   * A server's `notifications/*\/list_changed` (`method`), seen on a hop's GET stream or by the
   * per-server path for any client: its lists of that kind kept for any agent are stale.
   */
  listChanged(server: string, method: string): void {
    this.lists.listChanged(server, method);
    this.options.logger.debug({ server, method }, "aggregated endpoint: list changed");
  }

  /**
   * The broker's listens for one `subscriptions/listen` of the aggregate (2026-07-28): on each
   * server of the agent's view, as that agent, a `subscriptions/listen` of its own (a server that
   * speaks only 2025: a session of its own, its GET stream and `resources/subscribe`), each
   * through `/mcp/<server>` like any hop. Their list_changed drop the kept lists and go to this
   * subscriber only, as do updates of the resources it subscribed to (`filter`), under the URIs
   * it gave. Waits for them until the fan-out's deadline (broker.fanoutTimeout); one that opens later still delivers, one that
   * fails is left out. `onClosed` runs once when the subscription ends.
   */
  private async watch(scope: Scope, filter: ListenFilter, onClosed: () => void): Promise<ListenWatch> {
    let deliver: ((event: ServerEvent) => void) | undefined;
    const queued: ServerEvent[] = [];
    let closed = false;
    // By server: the listen's hop (once connected) and the server's ServerPresence.generation
    // when it was opened.
    const listening = new Map<string, { client?: Client; generation: number }>();
    const emit = (event: ServerEvent) => {
      if (closed) return;
      if (deliver) deliver(event);
      else queued.push(event);
    };
    const end = (client: Client) => {
      const transport = client.transport as StreamableHTTPClientTransport | undefined;
      const legacy = client.getProtocolEra() !== "modern";
      void (legacy && transport ? transport.terminateSession() : Promise.resolve())
        .catch(() => undefined)
        .then(() => client.close())
        .catch(() => undefined);
    };
    const servers = this.aggregate.servers(scope.principal, scope.view);
    const subscribed = subscriptionsByServer(
      this.aggregate.namesOf(scope.view),
      servers,
      filter.resourceSubscriptions,
    );
    const open = async (server: string) => {
      // The server's own URI -> the URI the client subscribed with.
      const resources = subscribed.get(server) ?? new Map<string, string>();
      const held = { generation: this.presence.generation(server) } as {
        client?: Client;
        generation: number;
      };
      listening.set(server, held);
      let client: Client;
      try {
        // A hop of its own (not kept: it holds the stream until the subscription ends).
        ({ client } = await this.hops.hop(scope, server, undefined, hopCapabilities(scope, undefined)));
      } catch (err) {
        // It could not connect (unlike a listen refused): opened when it answers again (presence.ts).
        if (listening.get(server) === held) listening.delete(server);
        return this.hops.dropped(server, "connect", err);
      }
      try {
        if (closed || listening.get(server) !== held) return end(client);
        held.client = client;
        for (const method of LIST_CHANGED) {
          client.setNotificationHandler(method, () => {
            this.listChanged(server, method);
            emit(LIST_CHANGED_EVENTS[method]!);
          });
        }
        client.setNotificationHandler("notifications/resources/updated", (n) => {
          // Only what this subscriber asked for; a server's update of any other URI goes nowhere.
          const uri = resources.get(n.params.uri);
          if (uri !== undefined) emit({ kind: "resource_updated", uri });
        });
        const uris = [...resources.keys()];
        if (client.getProtocolEra() === "modern")
          await client.listen({
            toolsListChanged: true,
            promptsListChanged: true,
            resourcesListChanged: true,
            ...(uris.length > 0 ? { resourceSubscriptions: uris } : {}),
          });
        else {
          // The SDK client opened the session's GET stream itself, after initialize.
          for (const uri of uris)
            await client.request({ method: "resources/subscribe", params: { uri } }).catch((err: unknown) => {
              this.hops.dropped(server, "listen", err);
            });
        }
      } catch (err) {
        this.hops.dropped(server, "listen", err);
      }
    };
    await fanOut(servers.map(open), fanoutMs(this.engine), () => undefined);
    // Servers leaving or rejoining the view reach this subscriber only (presence.ts); one that
    // rejoins is listened to again unless its listen was opened since it left.
    const unwatch = this.presence.watch(
      this.presenceWatcher(scope, (kind, server, present) => {
        emit(LIST_CHANGED_EVENTS[`notifications/${kind}/list_changed`]!);
        const held = listening.get(server);
        if (!present || closed || (held !== undefined && held.generation >= this.presence.generation(server)))
          return;
        if (held?.client) end(held.client);
        void open(server);
      }),
    );
    return {
      attach(listener) {
        deliver = listener;
        for (const event of queued.splice(0)) listener(event);
      },
      get attached() {
        return deliver !== undefined;
      },
      close() {
        if (closed) return;
        closed = true;
        unwatch();
        for (const { client } of listening.values()) if (client) end(client);
        listening.clear();
        onClosed();
      },
    };
  }

  /**
   * A client stream's side of ServerPresence: the servers of its agent's view, a list change sent
   * as `tell` sends it, and a probe made as its agent: a `tools/list` through /mcp/<server> like
   * any hop (decided and audited there), which brings the server back (withHopOnce) when it
   * answers. A server without tools answers method not found: it answers all the same.
   */
  private presenceWatcher(
    scope: Scope,
    tell: (kind: ListChangedKind, server: string, present: boolean) => void,
  ): PresenceWatcher {
    return {
      servers: () => this.aggregate.servers(scope.principal, scope.view),
      changed: (server, kinds, present) => {
        for (const kind of kinds) tell(kind, server, present);
      },
      probe: (server) =>
        this.hops
          .withHop(scope, server, undefined, (client) =>
            client.request({ method: "tools/list", params: {} }, LIST_PAGES.tools),
          )
          .then(
            () => undefined,
            (err: unknown) => {
              const e = err as { code?: unknown; data?: { reason?: unknown } } | null;
              if (e?.code === JsonRpcCode.MethodNotFound && e.data?.reason === undefined)
                this.presence.up(server);
            },
          ),
    };
  }

  /**
   * Asks the servers of a 2026-07-28 request's view whose capabilities this process does not
   * know yet (none of its hops connected to them since the start or the last reload), with a hop
   * of the request's agent: its `server/discover` (or `initialize`, for a server that speaks only
   * 2025) answers them. Once per server, shared by concurrent requests; a server left out is not
   * asked (its probe or next hop brings them). Each ask is waited for until the fan-out's deadline
   * (broker.fanoutTimeout) counted from when it was asked, by every request that finds it
   * pending: one that missed it delays no later request (the request is served with what is
   * known, and the server's capabilities count from when it answers). A request that waited
   * for a server in vain counts it left out (`fanout_timeout:<server>`).
   */
  private async discover(scope: Scope, audit: BrokerAudit | undefined): Promise<void> {
    const engine = this.engine;
    const now = Date.now();
    const asking = this.aggregate
      .servers(scope.principal, scope.view)
      .filter((server) => this.presence.capabilitiesOf(engine, server) === undefined)
      .filter((server) => !this.presence.isAbsent(server))
      .map((server) => {
        let pending = this.discovering.get(server);
        if (pending === undefined) {
          const asked = this.hops
            .hop(scope, server, undefined, hopCapabilities(scope, undefined))
            .then(
              (hop) => closeHop(hop),
              (err: unknown) => this.hops.dropped(server, "connect", err),
            )
            .finally(() => this.discovering.delete(server));
          pending = { asked, until: now + fanoutMs(engine) };
          this.discovering.set(server, pending);
        }
        return { server, pending };
      })
      .filter(({ pending }) => pending.until > now);
    await Promise.all(
      asking.map(async ({ server, pending }) => {
        const [answered] = await fanOut([pending.asked], pending.until - now, () => undefined);
        if (answered?.status !== "late") return;
        this.hops.late(server, "server/discover");
        audit?.leftOut(server, true);
      }),
    );
  }

  /** Hop clients kept idle for later requests (hop-pool.ts), for tests and diagnostics. */
  get keptHops(): number {
    return this.hops.kept;
  }

  close(): Promise<void> {
    // The process stops: what it alone knew of its sessions is left for the servers to expire.
    this.closing = true;
    this.sessions.clear();
    this.opened.clear();
    this.upstreamStreams.closeAll();
    this.bridge.clear();
    this.hops.clear();
    this.lists.clear();
    this.presence.clear();
    return this.modern.close();
  }
}
