import {
  Client,
  StreamableHTTPClientTransport,
  type ReconnectionScheduler,
  type JSONRPCMessage,
} from "@modelcontextprotocol/client";
import { ProtocolError, type ServerContext } from "@modelcontextprotocol/server";
import { decodeJwt } from "jose";
import { Counter } from "prom-client";
import type { Principal } from "../policy/identity.js";
import { JsonRpcCode } from "../policy/reasons.js";
import { isPlainObject, type JsonRpcId } from "../mcp/jsonrpc.js";
import type { Logger } from "../telemetry/logger.js";
import type { Metrics } from "../telemetry/metrics.js";
import type { GatewayEngine } from "../config/compile.js";
import { durationMs } from "../config/schema.js";
import { MAX_HOP_TOKEN_LENGTH, type HopTokens } from "../policy/hop-token.js";
import type { BrokerListCache } from "./list-cache.js";
import { hopFetch } from "./hop-fetch.js";
import { closeHop, HopPool, type PooledHop } from "./hop-pool.js";
import type { ViewNames } from "./names.js";
import { postStreams } from "./replay.js";
import { callResultProblem, type CallResult } from "./call-result.js";
import { refusedInBand } from "./refusals.js";
import type { ServerPresence } from "./presence.js";
import {
  BRIDGED_CAPABILITIES,
  hopCapabilities,
  legacyHopCapabilities,
  RELAYED_REQUESTS,
  type Scope,
} from "./scope.js";
import type { HopUse } from "./bridge.js";
import { relayed, type LiveSession, type SessionEnd } from "./live-session.js";
import {
  AgentTokenExpired,
  AgentTokenTooLarge,
  HopSessionGone,
  relayedError,
  SERVER_DOWN,
  serverDown,
  hopSessionGone,
  sessionLost,
} from "./hop-errors.js";

// The broker's hops: SDK clients of the gateway's own /mcp/<server>, the hop sessions they attach
// to, the identities they present, and the kept ones (hop-pool.ts).

export const HOP_CLIENT_INFO = { name: "mcp-gateway-broker", version: "1.0.0" };
export const HOP_TIMEOUT_MS = 60_000;
/** How long ending a hop session (its DELETE) may take before it is given up on. */
const HOP_END_TIMEOUT_MS = 5_000;
/**
 * Hop clients kept between requests (hop-pool.ts): keys (an agent session's or a stateless
 * agent's hops to one server), idle hops per key, and how long an unused key stays.
 */
const HOP_POOL = { maxKeys: 2_000, perKey: 4, idleMs: 60_000 };
/**
 * A hop identity is minted for an agent and a server, then reused for at most this share of its
 * lifetime (broker.hopTokenTtl) and this long: a hop request always presents one with most of its
 * lifetime left.
 */
const HOP_TOKEN_REUSE_SHARE = 0.25;
const HOP_TOKEN_REUSE_MAX_MS = 15_000;
/**
 * The hop "session" of a 2025 server that opened none (a stateless server): kept in the sealed
 * session like an id, so the server is not asked to initialize again on every hop. Given to the
 * SDK transport as its session id, it makes the client skip `initialize` and, being empty, is
 * never sent as `Mcp-Session-Id` nor ended with a DELETE.
 */
export const STATELESS_HOP = "";

/**
 * A kept hop's key: the server first and the client's session second (BrokerHops.dropHops matches
 * them), then everything the hop depends on. 2025: the client's sealed session (one agent, issuer
 * and view; its client capabilities and revision) and the hop session on the server. 2026-07-28:
 * no session, so the agent (issuer, name, anonymous, roles) and the capabilities this request
 * declares. Server names and sealed ids hold no newline.
 */
export function hopKey(
  scope: Scope,
  server: string,
  origin: string,
  hopSession: string | undefined,
  capabilities: Record<string, unknown>,
): string | undefined {
  if (!scope.modern) {
    if (scope.sessionId === undefined || hopSession === undefined || !scope.session) return undefined;
    return `${server}\n${scope.sessionId}\n${JSON.stringify([origin, hopSession, scope.session.protocolVersion])}`;
  }
  const p = scope.principal;
  return `${server}\n\n${JSON.stringify([origin, p.issuer ?? null, p.agent, p.anonymous, [...p.roles].sort(), capabilities])}`;
}

/** A JWT's `exp` in epoch milliseconds, when it is a JWT that has one (read unverified). */
export function jwtExpiry(token: string | undefined): number | undefined {
  if (token === undefined) return undefined;
  try {
    const { exp } = decodeJwt(token);
    return typeof exp === "number" ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

/** The number a hop's SDK client gave a request, from `value` as the wire has it (`<prefix><n>`). */
export function hopNumber(value: unknown, prefix: string): number | undefined {
  if (typeof value !== "string" || !value.startsWith(prefix)) return undefined;
  const digits = value.slice(prefix.length);
  if (!/^(0|[1-9][0-9]*)$/.test(digits)) return undefined;
  const n = Number(digits);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** The raw tools/call result a 2026-07-28 hop client last received (keepRawCallResult). */
const rawCallResults = new WeakMap<Client, CallResult>();

/**
 * A 2026-07-28 hop's answer to its tools/call: the v2 SDK client's codec for that revision checks
 * a complete result against its wire schema before the request's own (CALL_RESULT), and refuses a
 * content part of a kind that schema does not know, which the per-server path relays. A complete
 * result with the shape the broker relies on (callResultProblem) is kept aside for the request
 * (takeRawCallResult) and the SDK is handed an empty one in its place; anything else goes to the
 * SDK as it came (input_required, errors, a result the broker refuses too).
 */
function keepRawCallResult(client: Client, message: JSONRPCMessage): JSONRPCMessage {
  if (!("result" in message)) return message;
  const result: unknown = message.result;
  if (!isPlainObject(result) || result.resultType !== "complete" || callResultProblem(result) !== undefined)
    return message;
  const raw: CallResult = { ...result };
  delete raw.resultType;
  rawCallResults.set(client, raw);
  return { ...message, result: { resultType: "complete", content: [] } } as JSONRPCMessage;
}

/** The tools/call result `client` received as the server sent it (keepRawCallResult), once. */
export function takeRawCallResult(client: Client): CallResult | undefined {
  const raw = rawCallResults.get(client);
  rawCallResults.delete(client);
  return raw;
}

const endCounters = new WeakMap<Metrics, Counter<"reason" | "result">>();

function endCounter(metrics: Metrics): Counter<"reason" | "result"> {
  let counter = endCounters.get(metrics);
  if (!counter) {
    counter = new Counter({
      name: "mcp_gateway_broker_hop_session_ends_total",
      help: "Hop sessions the aggregated endpoint ended on their servers (DELETE) as a 2025 session ended or left the process, by why (deleted, expired, evicted, idle) and result (ended, failed)",
      labelNames: ["reason", "result"],
      registers: [metrics.registry],
    });
    endCounters.set(metrics, counter);
  }
  return counter;
}

/** The server and the client session of a hop key. */
export function hopKeyParts(key: string): { server: string; session: string } {
  const [server = "", session = ""] = key.split("\n", 2);
  return { server, session };
}

/** What the hops need of the broker's options (BrokerOptions). */
export interface HopOptions {
  engine: () => GatewayEngine;
  logger: Logger;
  metrics: Metrics;
  hopOrigin: () => string;
}

/** What the hops need of the broker's 2025 sessions and views. */
export interface HopSessions {
  /** The 2025 session this process serves under the sealed id `id`. */
  get(id: string): LiveSession | undefined;
  /** Whether the client session `id` ended (DELETE) as this process knows. */
  ended(id: string): boolean;
  /** A hop session opened late for `server`: its GET stream joins the client's, if open (Broker.listenTo). */
  joined(live: LiveSession, server: string): void;
  /** How the view names things (BrokerAggregate.namesOf). */
  namesOf(view: string | undefined): ViewNames;
}

/**
 * The hops of the aggregated endpoint: each an SDK client of the gateway's own `/mcp/<server>`,
 * presenting a gateway-sealed identity for the agent (policy/hop-token.ts), kept between requests
 * (hop-pool.ts), attached to the hop sessions of a 2025 client session.
 */
export class BrokerHops {
  /** Hop clients kept between requests (hop-pool.ts, hopKey). */
  private readonly hopPool = new HopPool(HOP_POOL);
  /** Hop identities minted per agent (the admitted principal) and server, reused briefly. */
  private readonly hopTokens = new WeakMap<
    Principal,
    Map<string, { tokens: HopTokens; agentToken: string | undefined; token: string; until: number }>
  >();
  /** mcp_gateway_broker_hop_session_ends_total (closeHops). */
  private readonly ends: Counter<"reason" | "result">;
  /** Hop sessions still being opened for a client session's initialize that did not wait (lateOpening). */
  private readonly opening = new Map<string, Promise<string>>();
  /** Hop clients built so far: numbers each hop's own id prefix (hop). */
  private hopsBuilt = 0;

  constructor(
    private readonly options: HopOptions,
    private readonly presence: ServerPresence,
    private readonly lists: BrokerListCache,
    private readonly sessions: HopSessions,
    /** The broker's own prefix of wire ids (Broker.wireIdPrefix): each hop's ids carry it. */
    private readonly wireIdPrefix: string,
  ) {
    this.ends = endCounter(options.metrics);
  }

  private get engine(): GatewayEngine {
    return this.options.engine();
  }

  /**
   * Whether a hop to `server` would carry `token` (a token-exchange server) and it has expired
   * (its `exp`, read unverified: the hop's path verifies it again). Such a hop is not sent.
   */
  bearerExpired(token: string | undefined, server: string): boolean {
    if (token === undefined || !this.engine.hopTokens.sealsSubject(server)) return false;
    return (jwtExpiry(token) ?? Infinity) <= Date.now();
  }

  /**
   * Ends hop sessions of client session `sessionId` on their servers, for `reason`: `all` when the
   * session is over here (the client's DELETE, its id expired), `late` (only those this process
   * alone knows, LiveSession.lateHops) when it merely leaves the process (evicted, idle) or
   * another replica ended it: the sealed ones stay for the id to be restored, here or on another
   * replica, or were ended there. Kept hops of the session are closed (endHopSession says how
   * each ends).
   */
  async closeHops(
    live: LiveSession,
    principal: Principal,
    sessionId: string,
    reason: SessionEnd,
    which: "all" | "late",
  ): Promise<void> {
    const scope: Scope = {
      principal,
      view: undefined,
      modern: false,
      session: live.session,
      sessionId,
      clientCapabilities: {},
      bearer: live.scope.bearer,
    };
    this.dropHops((key) => key.session === sessionId);
    const ending = new Map(which === "all" ? Object.entries(live.session.hops) : []);
    for (const [server, hopSession] of live.lateHops) ending.set(server, hopSession);
    live.lateHops.clear();
    for (const [server, hopSession] of ending) if (hopSession === STATELESS_HOP) ending.delete(server);
    if (ending.size === 0) return;
    if (which === "late")
      this.options.logger.info(
        { reason, servers: [...ending.keys()] },
        "aggregated endpoint: a 2025 session left this process; the hop sessions only it knew are ended on their servers",
      );
    await Promise.allSettled(
      [...ending].map(([server, hopSession]) => this.endHopSession(scope, server, hopSession, reason)),
    );
  }

  /**
   * Ends one hop session on its server: a DELETE with its id (never the agent's token: the hop's
   * own identity), given at most HOP_END_TIMEOUT_MS; a server that cannot be told is logged and
   * counted, and the session expires there on its own.
   */
  private async endHopSession(
    scope: Scope,
    server: string,
    hopSession: string,
    reason: SessionEnd,
  ): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    try {
      const transport = this.hopTransport(scope, server, hopSession);
      await Promise.race([
        transport.terminateSession(),
        new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`no answer within ${HOP_END_TIMEOUT_MS} ms`)),
            HOP_END_TIMEOUT_MS,
          );
        }),
      ]);
      this.ends.inc({ reason, result: "ended" });
    } catch (err) {
      this.ends.inc({ reason, result: "failed" });
      this.options.metrics.upstreamErrors.inc({ server, reason: "broker_session_end" });
      this.options.logger.warn(
        { server, reason, error: (err as { message?: string } | null)?.message },
        "aggregated endpoint: could not end a hop session on its server; it expires there",
      );
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Keeps `hopSession`, just opened on `server` by this process, as the client session's
   * (LiveSession.lateHops), in `live`, the session the request runs in. Undefined when kept; the
   * reason the session left when it left the process meanwhile (evicted while the server was
   * being initialized): then no one holds the id, and the request that opened it ends it when it
   * is done (withHop), instead of leaving it open on the server.
   */
  private remember(
    live: LiveSession | undefined,
    server: string,
    hopSession: string,
  ): SessionEnd | undefined {
    if (live === undefined) return "evicted";
    if (live.left !== undefined) return live.left;
    live.lateHops.set(server, hopSession);
    return undefined;
  }

  dropped(server: string, method: string, err: unknown): void {
    // A stream refused is no sign the server is down: it may offer no stream or listen at all.
    if (method !== "GET" && method !== "listen") {
      this.lists.serverFailed(server);
      if (serverDown(err, server)) this.presence.down(server);
    }
    this.options.metrics.upstreamErrors.inc({ server, reason: "broker_dropped" });
    const e = err as { message?: string; cause?: { message?: string } } | null;
    this.options.logger.warn(
      { server, method, error: e?.message, ...(e?.cause?.message ? { cause: e.cause.message } : {}) },
      "aggregated endpoint: server left out of the view",
    );
  }

  /**
   * `server` had not answered `method` of a fan-out by its deadline (broker.fanoutTimeout,
   * fanout.ts): left out of that answer, counted and logged. Not a failure: its hop goes on, and
   * only how it ends (an answer, or a failure such as the per-server path's upstream_timeout)
   * says whether the server is up or down (presence.ts); its kept lists stay.
   */
  late(server: string, method: string): void {
    this.options.metrics.upstreamErrors.inc({ server, reason: "broker_fanout_timeout" });
    this.options.logger.warn(
      { server, method, waited: this.engine.config.broker.fanoutTimeout },
      "aggregated endpoint: server left out of an answer, no answer by broker.fanoutTimeout",
    );
  }

  /**
   * `opening`: the hop session on `server` that the initialize of client session `live` asked for
   * and was answered without (a late member of its fan-out). Once opened it is the session's, as
   * one opened on first use is (LiveSession.lateHops; its GET stream joins the client's), or,
   * when the session left the process meanwhile, it is ended on its server. A hop that needs it
   * before it is open waits for it rather than opening another (withHopOnce). A failure leaves
   * the server out as any.
   */
  lateOpening(live: LiveSession, server: string, opening: Promise<string>): void {
    const sessionId = live.scope.sessionId;
    if (sessionId === undefined) return;
    const key = `${sessionId} ${server}`;
    this.opening.set(key, opening);
    const done = () => {
      if (this.opening.get(key) === opening) this.opening.delete(key);
    };
    opening.then(
      (id) => {
        done();
        const left = this.remember(live, server, id);
        if (left === undefined) this.sessions.joined(live, server);
        else if (id !== STATELESS_HOP) void this.endHopSession(live.scope, server, id, left);
      },
      (err: unknown) => {
        done();
        this.dropped(server, "initialize", err);
      },
    );
  }

  /**
   * The client session's hop session on `server`: one this process opened later (the server was
   * down at initialize, or its session was gone and renewed) before the one sealed at initialize.
   */
  hopSessionId(scope: Scope, server: string): string | undefined {
    const live = scope.sessionId === undefined ? undefined : this.sessions.get(scope.sessionId);
    return live?.lateHops.get(server) ?? scope.session?.hops[server];
  }

  hopTransport(
    scope: Scope,
    server: string,
    sessionId: string | undefined,
    reconnectionScheduler?: ReconnectionScheduler,
    { stream = true }: { stream?: boolean } = {},
  ): StreamableHTTPClientTransport {
    return new StreamableHTTPClientTransport(new URL(`${this.options.hopOrigin()}/mcp/${server}`), {
      sessionId,
      reconnectionScheduler,
      // An identity for this agent and this server only, short-lived (with the agent's latest
      // token sealed in for a token-exchange server). Read at each request: a kept hop speaks
      // for the agent of the request using it, under the policy in force. Without `stream`, the
      // GET the SDK opens after initialize is answered 405 here (the SDK then opens none).
      fetch: (url, init) =>
        !stream && init?.method === "GET"
          ? Promise.resolve(new Response(null, { status: 405 }))
          : hopFetch(url, init, `Bearer ${this.hopToken(scope.principal, server, scope.bearer.token)}`),
    });
  }

  /**
   * The hop identity for `principal` on `server` (and `agentToken`, sealed in for a token-exchange
   * server): minted, then reused for the same admitted principal object (the authenticator hands
   * out one per verified token), server and agent token while most of its lifetime is left, and
   * never across a policy reload (new keys, new lifetime). A hop bounded by an agent token that
   * expires soon is minted afresh each time.
   */
  private hopToken(principal: Principal, server: string, agentToken: string | undefined): string {
    // Fails closed: an expired token is never sealed into a hop (it would be refused there).
    if (this.bearerExpired(agentToken, server)) throw new AgentTokenExpired(server);
    const engine = this.engine;
    const tokens = engine.hopTokens;
    const now = Date.now();
    let held = this.hopTokens.get(principal);
    const kept = held?.get(server);
    if (kept !== undefined && kept.tokens === tokens && kept.agentToken === agentToken && now < kept.until)
      return kept.token;
    const token = tokens.mint(principal, server, agentToken);
    if (token.length > MAX_HOP_TOKEN_LENGTH) throw new AgentTokenTooLarge(server, token.length);
    const ttlMs = durationMs(engine.config.broker.hopTokenTtl);
    const reuseMs = Math.min(ttlMs * HOP_TOKEN_REUSE_SHARE, HOP_TOKEN_REUSE_MAX_MS);
    // The hop expires no later than the agent's token it may carry (HopTokens.mint).
    const expires = Math.min(now + ttlMs, jwtExpiry(agentToken) ?? Infinity);
    // Kept only while what is left of it stays above the lifetime minus the reuse window.
    const until = Math.min(now + reuseMs, expires - (ttlMs - reuseMs));
    if (until > now) {
      if (held === undefined) this.hopTokens.set(principal, (held = new Map()));
      held.set(server, { tokens, agentToken, token, until });
    } else held?.delete(server);
    return token;
  }

  /**
   * Whether this agent's hop identity for `server` is too long to send (hopToken): such a server is
   * left out at initialize, and a request to it is refused with agent_token_too_large.
   */
  hopTokenTooLarge(scope: Scope, server: string): boolean {
    try {
      this.hopToken(scope.principal, server, scope.bearer.token);
      return false;
    } catch (err) {
      return err instanceof AgentTokenTooLarge;
    }
  }

  /**
   * Opens a 2025 session on `/mcp/<server>` for this agent and returns its (gateway-sealed) id,
   * or STATELESS_HOP for a server that opened none.
   */
  async openHopSession(scope: Scope, server: string): Promise<string> {
    const client = new Client(HOP_CLIENT_INFO, { capabilities: scope.clientCapabilities });
    // No GET stream: it would be closed at once, and the session's own stream (listen) could
    // find it still held by the server (409).
    const transport = this.hopTransport(scope, server, undefined, undefined, { stream: false });
    await client.connect(transport, { timeout: HOP_TIMEOUT_MS });
    this.presence.learned(this.engine, server, client.getServerCapabilities());
    this.presence.up(server);
    const id = transport.sessionId ?? STATELESS_HOP;
    // Only the id is kept: the hops of the client's requests attach clients of their own to it.
    await transport.close();
    return id;
  }

  /**
   * A new SDK client of `/mcp/<server>` with `capabilities`: attached to the hop session
   * `sessionId` (2025), or stateless (2026-07-28, falling back to a session of its own for a
   * server that serves only 2025). Its handlers act for the request that uses the hop at the time
   * (PooledHop.ctx): server-to-client requests are relayed to the agent's client in that request's
   * context, log messages are relayed on its stream.
   */
  async hop(
    scope: Scope,
    server: string,
    sessionId: string | undefined,
    capabilities: Record<string, unknown>,
  ): Promise<PooledHop> {
    const client = new Client(HOP_CLIENT_INFO, {
      capabilities,
      ...(scope.modern ? { versionNegotiation: { mode: "auto" as const } } : {}),
    });
    // The hop's own scope: who it speaks for follows the request using it (withHop).
    const speaker: Scope = { ...scope };
    const transport = this.hopTransport(speaker, server, sessionId, (reconnect, delayMs, attempt) =>
      this.scheduleHopResume(hop, scope, reconnect, delayMs, attempt),
    );
    const hop: PooledHop = {
      client,
      transport,
      speaker,
      ctx: undefined,
      clientStream: undefined,
      asker: undefined,
      sent: [],
      ownSession: false,
    };
    for (const [method, capability] of RELAYED_REQUESTS) {
      if (capabilities[capability] === undefined) continue;
      if (scope.modern) {
        // Sent only by a server that speaks only 2025 (declared in its initialize): the call
        // using the hop turns it into an input_required result for the client (bridge.ts).
        if (!BRIDGED_CAPABILITIES.has(capability)) continue;
        client.setRequestHandler(method, (request) => {
          const asker = hop.asker;
          if (!asker)
            throw new ProtocolError(JsonRpcCode.MethodNotFound, `${method}: no request to relay it to`);
          return asker(method, request.params) as never;
        });
      } else
        client.setRequestHandler(method, (request) => {
          const ctx = hop.ctx;
          if (!ctx)
            throw new ProtocolError(JsonRpcCode.MethodNotFound, `${method}: no request to relay it to`);
          const send = () =>
            ctx.mcpReq.send({ method, params: request.params } as never, { timeout: HOP_TIMEOUT_MS });
          const live = scope.sessionId === undefined ? undefined : this.sessions.get(scope.sessionId);
          return live ? relayed(live, send) : (send() as never);
        });
    }
    client.setNotificationHandler("notifications/message", (notification) =>
      hop.ctx?.mcpReq.notify({
        method: "notifications/message",
        params: {
          ...notification.params,
          logger:
            notification.params.logger === undefined
              ? server
              : this.sessions.namesOf(scope.view).join(server, notification.params.logger),
        },
      }),
    );
    // 2025: every hop of a client session (concurrent requests, other replicas) shares its session
    // on the server, which tells requests and their streams apart by id, and each SDK client
    // numbers its own from 0. Once connected, this hop's ids carry a prefix of its own on the
    // wire; answers get the client's number back. The progress tokens the SDK client sets (its
    // request's number) carry the same prefix in both eras, so no two requests in flight on a
    // server share one (the spec's rule), and the server's progress comes back with the number.
    const hopPrefix = `${this.wireIdPrefix}hop${++this.hopsBuilt}-`;
    const idPrefix = scope.modern ? undefined : hopPrefix;
    let prefixing = false;
    // Once connected: the wire ids of the requests sent whose answer has not come (streamCut).
    let unanswered: Set<JsonRpcId> | undefined;
    const send = transport.send.bind(transport);
    // 2026-07-28: the ids of the tools/call requests sent, whose results keepRawCallResult takes.
    let modernHop = false;
    const calls = new Set<JsonRpcId>();
    transport.send = (message, options) => {
      // A 2026-07-28 request's hop to a server that speaks only 2025 (the SDK's fallback to
      // initialize): declared there, a capability holds for the hop session, and the server's
      // requests come on the call's stream. Only what the broker can relay is declared.
      if (scope.modern && "method" in message && message.method === "initialize" && "id" in message)
        message = {
          ...message,
          params: { ...message.params, capabilities: legacyHopCapabilities(capabilities) },
        };
      if (prefixing && "method" in message) {
        const token = message.params?._meta?.progressToken;
        if ("id" in message && typeof token === "number")
          message = {
            ...message,
            params: {
              ...message.params,
              _meta: { ...message.params?._meta, progressToken: `${hopPrefix}${token}` },
            },
          };
        if (idPrefix !== undefined) {
          if ("id" in message) message = { ...message, id: `${idPrefix}${message.id}` };
          else if (
            message.method === "notifications/cancelled" &&
            typeof message.params?.requestId === "number"
          )
            message = {
              ...message,
              params: { ...message.params, requestId: `${idPrefix}${message.params.requestId}` },
            };
        }
      }
      if ("method" in message && "id" in message) {
        if (modernHop && message.method === "tools/call") calls.add(message.id);
        // The ids this hop sends in each use: what a 2025 cancellation names (withHop).
        hop.sent.push(message.id);
        if (unanswered !== undefined) {
          const id = message.id;
          const waiting = unanswered;
          waiting.add(id);
          const ended = options?.onRequestStreamEnd;
          options = {
            ...options,
            onRequestStreamEnd: () => {
              ended?.();
              // Only for the request using the hop now: a stream of an earlier use (a request
              // given up on, its hop kept) ending late must not fail the current one.
              if (waiting.delete(id) && hop.sent.includes(id)) streamCut();
            },
          };
          return send(message, options).catch((err: unknown) => {
            waiting.delete(id);
            throw err;
          });
        }
      }
      return send(message, options);
    };
    /**
     * The SSE stream of a request ended without its answer and will not be resumed (the
     * connection closed mid-answer with no event id to resume from, or its resumption failed):
     * the SDK client would leave the request waiting until its timeout. The hop is closed
     * instead, which fails what it has in flight at once, as a hop that cannot connect fails
     * (HopBroken: upstream_unavailable, recorded on the agent's request). A hop serves one
     * request at a time, so nothing else waits on it.
     */
    const streamCut = (): void => void hop.client.close().catch(() => undefined);
    if (sessionId !== undefined && scope.session) transport.setProtocolVersion(scope.session.protocolVersion);
    await client.connect(transport, { timeout: HOP_TIMEOUT_MS });
    // A hop attached to a 2025 session skipped initialize and knows none.
    const offered = client.getServerCapabilities();
    if (offered !== undefined) this.presence.learned(this.engine, server, offered);
    const waiting = (unanswered = new Set());
    modernHop = client.getProtocolEra() === "modern";
    const receive = transport.onmessage;
    transport.onmessage = (message) => {
      if (calls.size > 0 && !("method" in message) && message.id !== undefined && calls.delete(message.id))
        message = keepRawCallResult(client, message);
      if (!("method" in message) && message.id !== undefined) {
        waiting.delete(message.id);
        const id = idPrefix === undefined ? undefined : hopNumber(message.id, idPrefix);
        if (id !== undefined) message = { ...message, id };
      } else if ("method" in message && message.method === "notifications/progress") {
        // Only a token this hop gave is relayed, as the number its SDK client knows: progress
        // naming any other token (not one of this hop's requests) is dropped.
        const id = hopNumber(message.params?.progressToken, hopPrefix);
        if (id === undefined) return;
        message = { ...message, params: { ...message.params, progressToken: id } };
      }
      receive?.(message);
    };
    prefixing = true;
    // A 2026-07-28 request whose server speaks only 2025: the hop initialized a session of its own.
    hop.ownSession = scope.modern && sessionId === undefined && transport.sessionId !== undefined;
    return hop;
  }

  /**
   * A server closed a hop's stream before answering (SEP-1699 polling: it sent an event id and a
   * retry interval) and the hop's SDK client would resume it on its own after `delayMs`. When the
   * agent's client can be told the same (a 2025-11-25 session: its stream has event ids and a
   * retry interval, `ctx.http.closeSSE`), the broker closes the agent's stream instead and parks
   * the hop's resumption until the agent resumes that stream (Broker.handle, hop-resume.ts): the
   * agent sees what it sees directly, and the server is asked again when the agent asks again.
   * Otherwise (clients before 2025-11-25, which cannot resume such a stream; 2026-07-28, which
   * has no resumption; a retry after a resumption that failed) the hop resumes as the SDK would.
   */
  private scheduleHopResume(
    hop: PooledHop,
    scope: Scope,
    reconnect: () => void,
    delayMs: number,
    attempt: number,
  ): () => void {
    const ctx = hop.ctx;
    const closeClientStream = ctx?.http?.closeSSE;
    const stream = hop.clientStream;
    const live = scope.sessionId === undefined ? undefined : this.sessions.get(scope.sessionId);
    if (attempt === 0 && closeClientStream && stream !== undefined && live && !ctx.mcpReq.signal.aborted) {
      const cancel = live.parkedHops.park(stream, reconnect, delayMs);
      closeClientStream();
      return cancel;
    }
    const timer = setTimeout(reconnect, delayMs);
    return () => clearTimeout(timer);
  }

  /** Closes the kept hops whose key `matches` (its server, the client's session). */
  dropHops(matches: (key: { server: string; session: string }) => boolean): void {
    this.hopPool.drop((key) => matches(hopKeyParts(key)));
  }

  /**
   * Runs `work` on a hop client of `server` (withHopOnce). When the server answers that the
   * client session's hop session is gone (404: it restarted), a new hop session is opened, kept
   * for the client session (LiveSession.lateHops, this process only) and the request is sent
   * once more; a second 404 is refused as upstream_session_lost, not retried again.
   */
  async withHop<T>(
    scope: Scope,
    server: string,
    ctx: ServerContext | undefined,
    work: (client: Client, signal: AbortSignal | undefined, use: HopUse) => Promise<T>,
  ): Promise<T> {
    try {
      return await this.withHopOnce(scope, server, ctx, work);
    } catch (err) {
      if (!(err instanceof HopSessionGone)) throw err;
    }
    const sessionId = scope.sessionId;
    if (scope.modern || sessionId === undefined || ctx?.mcpReq.signal.aborted) throw sessionLost(server);
    this.options.logger.info({ server }, "aggregated endpoint: hop session gone (404); opening a new one");
    // Kept hops on the lost session are of no more use.
    this.dropHops((key) => key.server === server && key.session === sessionId);
    const live = this.sessions.get(sessionId);
    let renewed: string;
    try {
      renewed = await this.openHopSession(scope, server);
    } catch (err) {
      this.dropped(server, "initialize", err);
      throw relayedError(err, server);
    }
    const left = this.remember(live, server, renewed);
    try {
      return await this.withHopOnce(scope, server, ctx, work, renewed);
    } catch (err) {
      if (err instanceof HopSessionGone) throw sessionLost(server);
      throw err;
    } finally {
      if (left !== undefined) void this.endHopSession(scope, server, renewed, left);
    }
  }

  /**
   * Runs `work` on a hop client of `server`: one kept from an earlier request of the same agent
   * session (2025) or agent and capabilities (2026-07-28) when there is one, else a new one; kept
   * again after, unless the work failed other than with a JSON-RPC error, was cancelled, or the
   * client's session ended meanwhile. `hopSession`: the 2025 hop session to attach to, when the
   * caller just opened it (withHop); else the client session's (hopSessionId), opened now when
   * it has none on `server`.
   */
  private async withHopOnce<T>(
    scope: Scope,
    server: string,
    ctx: ServerContext | undefined,
    work: (client: Client, signal: AbortSignal | undefined, use: HopUse) => Promise<T>,
    hopSession?: string,
  ): Promise<T> {
    const opened: { orphan?: { id: string; reason: SessionEnd } } = {};
    try {
      return await this.withAttachedHop(scope, server, ctx, work, hopSession, opened);
    } finally {
      // Opened for a session that left the process meanwhile: no one else would end it.
      if (opened.orphan) void this.endHopSession(scope, server, opened.orphan.id, opened.orphan.reason);
    }
  }

  private async withAttachedHop<T>(
    scope: Scope,
    server: string,
    ctx: ServerContext | undefined,
    work: (client: Client, signal: AbortSignal | undefined, use: HopUse) => Promise<T>,
    hopSession: string | undefined,
    opened: { orphan?: { id: string; reason: SessionEnd } },
  ): Promise<T> {
    if (this.bearerExpired(scope.bearer.token, server))
      // Admitted within the clock skew, yet past its expiry: no hop carries an expired token.
      throw refusedInBand(ctx, {
        reason: "jwt_expired",
        id: ctx?.mcpReq.id ?? null,
        detail: `${server} takes a credential exchanged for it; send the request again with a fresh token`,
        server,
      });
    if (this.hopTokenTooLarge(scope, server))
      throw refusedInBand(ctx, {
        reason: "agent_token_too_large",
        id: ctx?.mcpReq.id ?? null,
        detail: `${server} takes at most ${MAX_HOP_TOKEN_LENGTH} characters of hop identity; use a smaller token, or /mcp/${server}`,
        server,
        data: { server },
      });
    const capabilities = hopCapabilities(scope, ctx);
    let key: string | undefined;
    let hop: PooledHop | undefined;
    try {
      let sessionId = scope.modern ? undefined : (hopSession ?? this.hopSessionId(scope, server));
      if (!scope.modern && sessionId === undefined) {
        // The server was left out at initialize: its session is the one still being opened for
        // it then (lateOpening keeps it for the session), or one opened now, for this process.
        const live = scope.sessionId === undefined ? undefined : this.sessions.get(scope.sessionId);
        const pending =
          scope.sessionId === undefined ? undefined : this.opening.get(`${scope.sessionId} ${server}`);
        const late = pending && (await pending.catch(() => undefined));
        const kept = late === undefined ? undefined : this.hopSessionId(scope, server);
        if (kept !== undefined) sessionId = kept;
        else sessionId = await this.openHopSession(scope, server);
        if (scope.sessionId !== undefined) {
          const left = this.remember(live, server, sessionId);
          // The client's stream is open: this server's joins it now.
          if (left === undefined) this.sessions.joined(live!, server);
          else opened.orphan = { id: sessionId, reason: left };
        }
      }
      key = hopKey(scope, server, this.options.hopOrigin(), sessionId, capabilities);
      hop = key === undefined ? undefined : this.hopPool.take(key);
      if (hop) {
        hop.speaker.principal = scope.principal;
        hop.speaker.bearer = scope.bearer;
      } else hop = await this.hop(scope, server, sessionId, capabilities);
    } catch (err) {
      this.dropped(server, "connect", err);
      throw relayedError(err, server);
    }
    hop.ctx = ctx;
    hop.clientStream = postStreams.getStore()?.id;
    const { client, transport } = hop;
    const legacy = client.getProtocolEra() !== "modern";
    let signal = ctx?.mcpReq.signal;
    let stopListening = () => {};
    const used = hop;
    const listen = () => {
      const current = signal;
      if (!current || !legacy) return;
      // In 2025 a closed stream is not a cancellation: the SDK client would only close it, so
      // the broker tells the server with notifications/cancelled for what this hop sent.
      const onAbort = () => {
        void Promise.allSettled(
          used.sent.map((requestId) =>
            transport.send({
              jsonrpc: "2.0",
              method: "notifications/cancelled",
              params: { requestId, reason: String(current.reason ?? "cancelled by the client") },
            }),
          ),
        ).then(() => closeHop(used));
      };
      current.addEventListener("abort", onAbort, { once: true });
      stopListening = () => current.removeEventListener("abort", onAbort);
    };
    listen();
    // A call held for its client's input (bridge.ts) moves to the client's retry, or to none
    // while held: its logs and its cancellation follow the request the client waits on.
    const use: HopUse = {
      hop,
      rebind: (next) => {
        stopListening();
        stopListening = () => {};
        used.ctx = next;
        used.clientStream = undefined;
        signal = next?.mcpReq.signal;
        listen();
      },
    };
    let keep = false;
    try {
      const result = await work(client, legacy ? undefined : signal, use);
      keep = true;
      this.presence.up(server);
      return result;
    } catch (err) {
      // Nothing reached the server's session: renewed and sent again (withHop); this hop is closed.
      if (!scope.modern && hopSessionGone(err)) throw new HopSessionGone();
      // The server (or the per-server policy) answered: the hop itself is fine.
      keep = err instanceof ProtocolError;
      const relayed = relayedError(err, server);
      if (SERVER_DOWN.has((relayed.data as { reason?: unknown } | undefined)?.reason)) {
        this.lists.serverFailed(server);
        this.presence.down(server);
        keep = false;
        this.dropHops((k) => k.server === server);
      }
      throw relayed;
    } finally {
      stopListening();
      if (signal?.aborted) {
        // 2025: onAbort closes it once the cancellations are sent.
        if (!legacy) void closeHop(hop);
      } else if (
        keep &&
        key !== undefined &&
        opened.orphan === undefined &&
        !(scope.sessionId !== undefined && this.sessions.ended(scope.sessionId))
      ) {
        this.hopPool.give(key, hop);
      } else {
        await closeHop(hop);
      }
    }
  }
  /** Hop clients kept idle for later requests (hop-pool.ts), for tests and diagnostics. */
  get kept(): number {
    return this.hopPool.size;
  }

  clear(): void {
    this.hopPool.clear();
  }
}
