import { randomBytes } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import {
  Client,
  SdkErrorCode,
  StreamableHTTPClientTransport,
  type ReconnectionScheduler,
} from "@modelcontextprotocol/client";
import {
  CLIENT_CAPABILITIES_META_KEY,
  ProtocolError,
  SERVER_INFO_META_KEY,
  Server,
  WebStandardStreamableHTTPServerTransport,
  createMcpHandler,
  isInitializeRequest,
  isInputRequiredResult,
  isJSONRPCResponse,
  isLegacyRequest,
  type JSONRPCMessage,
  type McpHttpHandler,
  type ServerContext,
  type ServerEvent,
} from "@modelcontextprotocol/server";
import { decodeJwt } from "jose";
import { LRUCache } from "lru-cache";
import { Authenticator, type Principal } from "../policy/identity.js";
import { JsonRpcCode, Reasons } from "../policy/reasons.js";
import type { JsonRpcId } from "../mcp/jsonrpc.js";
import type { Logger } from "../telemetry/logger.js";
import type { Metrics } from "../telemetry/metrics.js";
import { answerKey, type AnswerRelay } from "./answers.js";
import { BrokerListCache, type FetchedList, type ListKind, type ListOwner } from "./list-cache.js";
import { LIST_PAGES } from "./list-page.js";
import { hopFetch } from "./hop-fetch.js";
import { closeHop, HopPool, type AgentBearer, type PooledHop } from "./hop-pool.js";
import { BrokerNames, SingleServerNames, type ViewNames } from "./names.js";
import { BrokerReplay, postStreams, writeSharingSerialisation, type SessionEvents } from "./replay.js";
import { ParkedHopStreams } from "./hop-resume.js";
import { sdkRefusal, type BrokerAudit, type BrokerRefusal } from "./refusals.js";
import {
  BrokerListenBus,
  LIST_CHANGED_EVENTS,
  listenFilter,
  subscriptionsByServer,
  type ListenFilter,
  type ListenWatch,
} from "./listen.js";
import { UpstreamStreams, type StreamHold } from "./upstream-streams.js";
import { ServerPresence, type ListChangedKind, type PresenceWatcher } from "./presence.js";
import {
  brokerSessionOwner,
  OpenedBrokerSessions,
  sealBrokerSession,
  type BrokerSession,
  type SessionRevocations,
} from "./session.js";
import { isPlainObject } from "../mcp/jsonrpc.js";
import type { GatewayEngine } from "../config/compile.js";
import { durationMs } from "../config/schema.js";
import { PARAM_HEADER_PREFIX, paramHeaderDeclarations, paramHeaderMismatch } from "../mcp/param-headers.js";
import { MAX_HOP_TOKEN_LENGTH, type HopTokens } from "../policy/hop-token.js";

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

/** Who is asking, in which view, and what the client can do (for relaying server requests). */
interface Scope {
  principal: Principal;
  view: string | undefined;
  modern: boolean;
  session: BrokerSession | undefined;
  /** The sealed id of the client's session (2025), for hop sessions opened after initialize. */
  sessionId: string | undefined;
  clientCapabilities: Record<string, unknown>;
  /**
   * 2026-07-28: the agent's `Mcp-Param-*` headers, checked against the arguments before the call
   * (Broker.paramHeadersRefused) and sent on the hop as they came.
   */
  paramHeaders?: Record<string, string>;
  /**
   * The agent's bearer token (verified by admitBroker): sealed into hops to token-exchange servers
   * only (policy/hop-token.ts), never sent anywhere as it is. In a 2025 session one holder shared
   * by every scope and hop of the session, so every hop, also a server's GET stream reopened
   * later, presents the token of the request that last touched the session (Broker.touch).
   */
  bearer: AgentBearer;
}

/** A 2025-era session this process serves: the SDK's session transport and server. */
interface LiveSession {
  transport: WebStandardStreamableHTTPServerTransport;
  server: Server;
  session: BrokerSession;
  /** The events its streams sent, for a client that resumes one (`Last-Event-ID`). */
  events: SessionEvents;
  /** The scope its server's handlers run in (the agent token is the latest request's). */
  scope: Scope;
  /**
   * Reopenings of the servers' GET streams held back while the session's agent token has expired
   * (Broker.reopenStream): they run when a request brings a newer token (Broker.touch).
   */
  awaitingToken: Set<() => void>;
  /**
   * Hop clients holding each server's GET stream, once the client opened its own, by server,
   * with the server's ServerPresence.generation when it was opened.
   */
  listeners: Map<string, { client: Client; generation: number }> | undefined;
  /** The scope the listeners were opened in (listen): a server that joins later gets one too. */
  listenScope: Scope | undefined;
  /** Stops telling this session of servers leaving or rejoining its view (ServerPresence). */
  unwatch: (() => void) | undefined;
  /**
   * `listeners` as the agent's per-agent stream limit counts them (upstream-streams.ts): they
   * linger once the client's GET stream closed, and are closed after broker.streams.linger.
   */
  hold: StreamHold | undefined;
  /** The client's GET streams open now (one, but a resuming client may overlap its old one). */
  streams: number;
  /** Server-to-client requests relayed to the client in this process, not answered yet. */
  relaying: number;
  /**
   * With an answer relay (BrokerOptions.answers): the requests this process sent the client that
   * wait for an answer, by answerKey of the id the client sees (Broker.wireIdPrefix), each with
   * the id the session's server gave it and the function that stops taking it from another
   * replica.
   */
  awaiting: Map<string, { serverId: string | number; stop: () => void }>;
  /** Hop streams a server closed mid-call, waiting for the client to resume its own (hop-resume.ts). */
  parkedHops: ParkedHopStreams;
}

const BROKER_INFO = { name: "mcp-gateway", version: "1.0.0" };
const HOP_CLIENT_INFO = { name: "mcp-gateway-broker", version: "1.0.0" };
/** Server-to-client requests the broker relays from a server to the agent's client. */
const RELAYED_REQUESTS = [
  ["elicitation/create", "elicitation"],
  ["sampling/createMessage", "sampling"],
  ["roots/list", "roots"],
] as const;
const HOP_TIMEOUT_MS = 60_000;
/** How long a `subscriptions/listen` on the aggregate waits for the servers' listens to open. */
const LISTEN_SETUP_MS = 5_000;
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
const STATELESS_HOP = "";

const LISTS = {
  tools: { method: "tools/list", field: "tools" },
  prompts: { method: "prompts/list", field: "prompts" },
  resources: { method: "resources/list", field: "resources" },
  resourceTemplates: { method: "resources/templates/list", field: "resourceTemplates" },
} as const;
const LIST_CHANGED = [
  "notifications/tools/list_changed",
  "notifications/prompts/list_changed",
  "notifications/resources/list_changed",
] as const;
/** Pages read from one server for one list: a server cannot keep the broker paging for ever. */
const MAX_LIST_PAGES = 100;
/** Refusals of a hop that say the server itself could not be reached or answered badly. */
const SERVER_DOWN: ReadonlySet<unknown> = new Set([
  "upstream_unavailable",
  "upstream_timeout",
  "upstream_invalid_response",
  "breaker_open",
]);
/**
 * The optional capabilities the aggregate advertises only when a server of the view offers them
 * (ServerPresence); tools, prompts and resources are always advertised, so that a server that
 * joins the view later can be announced with their list_changed.
 */
const OPTIONAL_CAPABILITIES = ["completions", "logging"] as const;
/** Ids sealed before the session kept what it was told: what every session was told then. */
const OFFERED_BEFORE = [...OPTIONAL_CAPABILITIES];
/** How long a 2026-07-28 request waits for the capabilities of servers not asked yet. */
const DISCOVER_WAIT_MS = 5_000;

/** Whether a hop's failure says its server is down (as the per-server path or the hop found it). */
function serverDown(err: unknown, server: string): boolean {
  return SERVER_DOWN.has((relayedError(err, server).data as { reason?: unknown } | undefined)?.reason);
}

/**
 * A hop that failed without an answer from the per-server path (it could not connect, its
 * connection or stream broke mid-answer), or whose answer the SDK client refused (a malformed
 * result the per-server path let through): no per-server record has that failure. The request
 * it fails records it as the broker's own refusal when the agent is answered with it (hopBroken).
 */
class HopBroken extends ProtocolError {
  constructor(
    readonly server: string,
    /**
     * upstream_unavailable, or upstream_invalid_response when the server answered but the SDK
     * client refused its result (`cause`: the SDK's words, for the log).
     */
    readonly reason: "upstream_unavailable" | "upstream_invalid_response" = "upstream_unavailable",
    cause?: unknown,
  ) {
    const info = Reasons[reason];
    super(info.code, info.message, { reason, server });
    if (cause !== undefined) this.cause = cause;
  }
}

/**
 * A JSON-RPC error from the hop (the per-server policy's answer, with its own record's request
 * id), passed to the agent as it is; any other failure is a HopBroken.
 */
function relayedError(err: unknown, server: string): ProtocolError {
  if (err instanceof HopBroken) return err;
  const e = err as { code?: unknown; message?: unknown; data?: unknown };
  if (typeof e.code === "number" && Number.isInteger(e.code) && e.code < 0 && typeof e.message === "string") {
    return new ProtocolError(e.code, e.message, e.data);
  }
  const refusal = gatewayRefusal(err);
  if (refusal) return refusal;
  // The SDK client refused the server's result (a list page failing list-page.ts, a call result
  // failing the SDK's schema): the server answered, badly. The agent gets the reason; the log
  // gets the SDK's words (Broker.dropped), which name the first problem and where it is.
  if (e.code === SdkErrorCode.InvalidResult) return new HopBroken(server, "upstream_invalid_response", err);
  return new HopBroken(server);
}

/**
 * The per-server path's own refusal that came as an HTTP error status (503 breaker_open, 504
 * upstream_timeout, 502 upstream_unavailable, 429, ...) rather than inside a JSON-RPC answer: the
 * SDK client throws it as an HTTP error holding the body, which is the gateway's JSON-RPC error
 * with its reason and its record's request id. The agent gets it as it is, retry hint included,
 * as a client of `/mcp/<server>` would.
 */
function gatewayRefusal(err: unknown): ProtocolError | undefined {
  const error = hopHttpError(err)?.error;
  if (
    typeof error?.code !== "number" ||
    !Number.isInteger(error.code) ||
    typeof error.message !== "string" ||
    typeof error.data?.reason !== "string" ||
    !Object.hasOwn(Reasons, error.data.reason)
  )
    return undefined;
  return new ProtocolError(error.code, error.message, error.data);
}

/** A JSON-RPC error read from a hop's HTTP error body: nothing in it is trusted until checked. */
interface HopJsonRpcError {
  code?: unknown;
  message?: unknown;
  data?: { reason?: unknown };
}

/**
 * The SDK client's error for a hop request answered with an HTTP error status: that status and
 * the JSON-RPC error of its body, when the body is one (the gateway's refusals are); undefined
 * for any other error.
 */
function hopHttpError(err: unknown): { status: unknown; error?: HopJsonRpcError } | undefined {
  const e = err as { code?: unknown; data?: { status?: unknown; text?: unknown } } | null;
  if (e?.code !== SdkErrorCode.ClientHttpNotImplemented) return undefined;
  const status = e.data?.status;
  try {
    const body = JSON.parse(typeof e.data?.text === "string" ? e.data.text : "") as {
      error?: HopJsonRpcError;
    } | null;
    return { status, error: body?.error };
  } catch {
    return { status };
  }
}

/**
 * The error a request of the agent is answered with when its hop failed: a HopBroken is audited
 * on the request (upstream_unavailable or upstream_invalid_response, an error) and carries its request id, as the per-server
 * path's own errors carry theirs. Only where the failure reaches the agent: a list leaves a
 * failed server out instead.
 */
function hopBroken(ctx: ServerContext | undefined): (err: unknown) => never {
  return (err) => {
    if (!(err instanceof HopBroken)) throw err;
    throw refusedInBand(ctx, {
      reason: err.reason,
      id: ctx?.mcpReq.id ?? null,
      server: err.server,
      data: { server: err.server },
    });
  };
}

/**
 * A hop request answered 404 for its session (the server restarted or dropped it; or the
 * per-server path no longer opens its sealed id): per Streamable HTTP the session is gone and the
 * client must initialize anew. A 404 the gateway gives for another reason (server_unknown: the
 * agent may no longer reach the server) is no such answer.
 */
function hopSessionGone(err: unknown): boolean {
  const answered = hopHttpError(err);
  if (answered?.status !== 404) return false;
  const reason = answered.error?.data?.reason;
  return reason === undefined || reason === "session_unknown";
}

/** Thrown inside withHop when the hop session is gone (hopSessionGone): renewed there, once. */
class HopSessionGone extends Error {}

function sessionLost(server: string): ProtocolError {
  const info = Reasons.upstream_session_lost;
  return new ProtocolError(info.code, info.message, { reason: "upstream_session_lost", server });
}

/** The client capabilities a 2026-07-28 request declares in its envelope. */
function requestCapabilities(ctx: ServerContext | undefined): Record<string, unknown> {
  const envelope = ctx?.mcpReq.envelope as Record<string, unknown> | undefined;
  const declared = envelope?.[CLIENT_CAPABILITIES_META_KEY];
  return isPlainObject(declared) ? declared : {};
}

/**
 * A kept hop's key: the server first and the client's session second (Broker.dropHops matches
 * them), then everything the hop depends on. 2025: the client's sealed session (one agent, issuer
 * and view; its client capabilities and revision) and the hop session on the server. 2026-07-28:
 * no session, so the agent (issuer, name, anonymous, roles) and the capabilities this request
 * declares. Server names and sealed ids hold no newline.
 */
function hopKey(
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
function jwtExpiry(token: string | undefined): number | undefined {
  if (token === undefined) return undefined;
  try {
    const { exp } = decodeJwt(token);
    return typeof exp === "number" ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Thrown instead of a hop request to a token-exchange server when the agent token it would carry
 * has expired (Broker.hopToken): nothing is sent, and an expired token is never presented.
 */
class AgentTokenExpired extends Error {
  constructor(readonly server: string) {
    super(
      `the agent's token has expired: a hop to ${server} (token exchange) needs the token of a newer request of the agent`,
    );
  }
}

/**
 * Thrown instead of a hop request whose hop identity would be longer than MAX_HOP_TOKEN_LENGTH
 * (an agent token of tens of KB sealed in): the per-server route would not take it, so nothing is
 * sent (policy/header-limits.ts).
 */
class AgentTokenTooLarge extends Error {
  constructor(
    readonly server: string,
    readonly length: number,
  ) {
    super(
      `the hop identity for ${server} would be ${length} characters long (at most ${MAX_HOP_TOKEN_LENGTH})`,
    );
  }
}

/** The server and the client session of a hop key. */
function hopKeyParts(key: string): { server: string; session: string } {
  const [server = "", session = ""] = key.split("\n", 2);
  return { server, session };
}

/**
 * What a hop may ask of the agent's client: in 2025 what it declared at initialize (relayed as
 * server-to-client requests), in 2026-07-28 what this request declares (the server's
 * `input_required` results go back to the agent as they are).
 */
function hopCapabilities(scope: Scope, ctx: ServerContext | undefined): Record<string, unknown> {
  const declared = scope.modern ? requestCapabilities(ctx) : scope.clientCapabilities;
  const capabilities: Record<string, unknown> = {};
  for (const [, capability] of RELAYED_REQUESTS) {
    if (declared[capability] !== undefined) capabilities[capability] = declared[capability];
  }
  return capabilities;
}

/**
 * A 2026-07-28 retry's answers to a server's `input_required` result: `inputResponses` and the
 * server's `requestState`, passed to the hop untouched (the server, or for an in-band approval the
 * hop's own per-server policy, verifies the state it issued; the name routes the retry to the
 * server that asked, as it routed the first round).
 */
function retryParams(ctx: ServerContext): Record<string, unknown> {
  const state = ctx.mcpReq.requestState<unknown>();
  const responses = ctx.mcpReq.inputResponses;
  return {
    ...(responses !== undefined && Object.keys(responses).length > 0 ? { inputResponses: responses } : {}),
    ...(typeof state === "string" ? { requestState: state } : {}),
  };
}

const UNKNOWN_REASON = {
  tools: "tool_unknown",
  prompts: "prompt_unknown",
  resources: "resource_unknown",
} as const;

function unknownName(kind: "tools" | "prompts" | "resources", name: string): ProtocolError {
  const reason = UNKNOWN_REASON[kind];
  const info = Reasons[reason];
  return new ProtocolError(info.code, `${info.message}: ${name}`, { reason });
}

/** The caller's side of the request a handler serves (Broker.handle puts it in the SDK's authInfo). */
function auditOf(ctx: ServerContext | undefined): BrokerAudit | undefined {
  const audit = ctx?.http?.authInfo?.extra?.audit;
  return typeof audit === "object" && audit !== null ? (audit as BrokerAudit) : undefined;
}

/**
 * A refusal of one message by the broker itself: reported to the request's caller (audited there
 * as a denial) and the error that answers the message, with the request's audit id.
 */
function refusedInBand(ctx: ServerContext | undefined, refusal: BrokerRefusal): ProtocolError {
  const audit = auditOf(ctx);
  audit?.refused(refusal);
  const info = Reasons[refusal.reason];
  return new ProtocolError(info.code, refusal.detail ? `${info.message}: ${refusal.detail}` : info.message, {
    ...refusal.data,
    reason: refusal.reason,
    ...(audit ? { request_id: audit.requestId } : {}),
  });
}

/** The id of a body that is one JSON-RPC request; null for anything else. */
function requestIdOf(body: unknown): JsonRpcId | null {
  if (!isPlainObject(body) || typeof body.method !== "string") return null;
  return typeof body.id === "string" || typeof body.id === "number" ? body.id : null;
}

/**
 * A hop's "unknown" refusal names the server's own name (`delete_ticket`); the client asked for
 * the aggregate's (`tickets__delete_ticket`), a name it can find in its lists. The rest of the
 * error (code, reason, the hop's request id) is the per-server path's, as it gave it.
 */
function asAsked(kind: "tools" | "prompts" | "resources", name: string): (err: unknown) => never {
  return (err) => {
    if (err instanceof ProtocolError && isPlainObject(err.data) && err.data.reason === UNKNOWN_REASON[kind])
      throw new ProtocolError(err.code, unknownName(kind, name).message, err.data);
    throw err;
  };
}

/**
 * A hop's result without the server's 2026-07-28 identity (`_meta` serverInfo): the client's
 * server is the gateway, whose identity the SDK stamps on every result, as on the lists.
 */
function asGateway<T>(result: T): T {
  const meta = (result as { _meta?: unknown } | undefined)?._meta;
  if (!isPlainObject(meta) || !(SERVER_INFO_META_KEY in meta)) return result;
  const rest = { ...meta };
  delete rest[SERVER_INFO_META_KEY];
  return { ...result, _meta: rest };
}

/** Runs one relay of a server-to-client request, counted as pending in its session meanwhile. */
async function relayed(live: LiveSession, send: () => Promise<unknown>): Promise<never> {
  live.relaying += 1;
  try {
    return (await send()) as never;
  } finally {
    live.relaying -= 1;
  }
}

/**
 * How long a request sent to the client may wait for its answer from another replica at most: the
 * SDK's own timeout (HOP_TIMEOUT_MS) or a cancellation normally ends it first.
 */
const AWAIT_ANSWER_MS = HOP_TIMEOUT_MS + 5_000;

/** A POST that carries only JSON-RPC responses: the client's answers to relayed requests. */
function onlyAnswers(body: unknown): boolean {
  const messages = Array.isArray(body) ? body : [body];
  return (
    messages.length > 0 &&
    messages.every(
      (m) => isPlainObject(m) && !("method" in m) && "id" in m && ("result" in m || "error" in m),
    )
  );
}

/** Writes a web Response to a node response, streaming its body (SSE) as it arrives. */
async function sendResponse(res: ServerResponse, response: Response, extra: Record<string, string> = {}) {
  const headers: Record<string, string> = { ...extra };
  response.headers.forEach((value, name) => {
    headers[name] = value;
  });
  res.writeHead(response.status, headers);
  if (!response.body) {
    res.end();
    return;
  }
  res.flushHeaders();
  const reader = response.body.getReader();
  const cancel = () => void reader.cancel().catch(() => undefined);
  res.once("close", cancel);
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (res.destroyed) break;
      if (!res.write(value))
        await new Promise<void>((resume) => res.once("drain", resume).once("close", resume));
    }
  } finally {
    res.off("close", cancel);
  }
  if (!res.destroyed) res.end();
}

/**
 * The SDK's answer to the agent: sent as it is, unless it is an error the SDK wrote itself, which
 * is returned as the broker's refusal for the caller to audit and answer (refusals.ts).
 */
async function answer(res: ServerResponse, response: Response): Promise<BrokerRefusal | undefined> {
  const refusal = await sdkRefusal(response);
  if (refusal) return refusal;
  await sendResponse(res, response);
  return undefined;
}

function webRequest(req: IncomingMessage, origin: string): Request {
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined || name === "authorization" || name === "content-length") continue;
    headers.set(name, Array.isArray(value) ? value.join(", ") : value);
  }
  return new Request(`${origin}${req.url ?? "/mcp"}`, { method: req.method ?? "GET", headers });
}

/**
 * The aggregated endpoint (`/mcp`, `/mcp/views/<name>`): one MCP server, built with the SDK's
 * server classes, over every server the agent may use. Each of its hops is an SDK client of the
 * gateway's own `/mcp/<server>` route, presenting a gateway-sealed identity for the agent
 * (policy/hop-token.ts), so every decision, DLP, injection check, pin check and audit record of a
 * hop is exactly the one a direct client gets. See docs/design/broker.md.
 */
export class Broker {
  readonly names: BrokerNames;
  private readonly sessions = new LRUCache<string, LiveSession>({
    max: 10_000,
    ttl: 30 * 60_000,
    updateAgeOnGet: true,
    dispose: (live, sessionId) => {
      this.unlisten(live);
      for (const { stop } of live.awaiting.values()) stop();
      live.awaiting.clear();
      live.events.clear();
      void live.server.close().catch(() => undefined);
      this.dropHops((key) => key.session === sessionId);
    },
  });
  /** Hop clients kept between requests (hop-pool.ts, hopKey). */
  private readonly hopPool = new HopPool(HOP_POOL);
  /** Hop identities minted per agent (the admitted principal) and server, reused briefly. */
  private readonly hopTokens = new WeakMap<
    Principal,
    Map<string, { tokens: HopTokens; agentToken: string | undefined; token: string; until: number }>
  >();
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
  /** Hop sessions opened after initialize (a server that was down then), per client session. */
  private readonly lateHops = new LRUCache<string, string>({ max: 10_000, ttl: 30 * 60_000 });
  private readonly modern: McpHttpHandler;
  private readonly scopes = new WeakMap<object, Scope>();
  /**
   * Prefixed to the ids of requests that share an id space with other processes' and other SDK
   * objects' (each numbers its own from 0): with an answer relay, those the session servers send
   * clients (an answer must reach the request it answers, not another replica's with the same
   * number); the 2025 hops' to servers (hop).
   */
  private readonly wireIdPrefix = `gw-${randomBytes(9).toString("base64url")}-`;
  /** Hop clients built so far: numbers each hop's own id prefix (hop). */
  private hopsBuilt = 0;
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
  private readonly discovering = new Map<string, Promise<void>>();

  constructor(private readonly options: BrokerOptions) {
    this.names = new BrokerNames(options.engine().config.broker.separator);
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
    this.modern = createMcpHandler(
      async (ctx) => {
        const scope = ctx.authInfo?.extra?.scope;
        if (!isPlainObject(scope)) throw new Error("broker: request without its scope");
        // What the aggregate advertises (server/discover) and serves depends on what its
        // servers offer: asked of those not known yet, once per process.
        await this.discover(scope as unknown as Scope);
        return this.buildServer(scope as unknown as Scope);
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

  /** Servers of the view that the agent may reach, in registry order. */
  servers(principal: Principal, view: string | undefined): string[] {
    const engine = this.engine;
    const names =
      view === undefined ? engine.registry.serverNames() : (engine.config.broker.views[view]?.servers ?? []);
    return names.filter(
      (n) => engine.registry.server(n) !== undefined && engine.rbac.mayReachServer(principal, n),
    );
  }

  /** How the view names things: prefixed by server, or one server's own names (`prefix: false`). */
  namesOf(view: string | undefined): ViewNames {
    const config = view === undefined ? undefined : this.engine.config.broker.views[view];
    if (config?.prefix === false && config.servers.length === 1)
      return new SingleServerNames(config.servers[0]!);
    return this.names;
  }

  private inView(view: string | undefined, server: string, tool: string): boolean {
    if (view === undefined) return true;
    const tools = this.engine.config.broker.views[view]?.tools;
    if (tools === undefined) return true;
    return tools.includes(`${server}/*`) || tools.includes(`${server}/${tool}`);
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
      const serve = () =>
        this.modern.fetch(request, {
          parsedBody: body,
          authInfo: { ...authInfo, extra: { scope, audit } },
        });
      if (!isPlainObject(body) || body.method !== "subscriptions/listen") return answer(res, await serve());
      // Counted against the agent's streams before anything opens: refused, nothing opened.
      const opened: { watch?: ListenWatch } = {};
      const hold = this.upstreamStreams.open(
        principal,
        this.streamLimits.maxPerAgent,
        this.servers(principal, view).length,
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
          return this.handOverAnswers(res, relay, sessionId, held, { elsewhere, answers });
      } else if ((held?.relaying ?? 0) === 0) {
        // An answer to a relayed request this process did not send (the session's requests did
        // not stick to one replica) or no longer waits for: accepting it would drop it silently.
        return this.answerNotPending(held !== undefined);
      }
    }
    const live = held ?? (await this.restore(sessionId, session, principal, view, origin));
    this.touch(live, agentToken);
    if (req.method === "DELETE") await this.closeHops(live, principal, sessionId);
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
   * Whether a hop to `server` would carry `token` (a token-exchange server) and it has expired
   * (its `exp`, read unverified: the hop's path verifies it again). Such a hop is not sent.
   */
  private bearerExpired(token: string | undefined, server: string): boolean {
    if (token === undefined || !this.engine.hopTokens.sealsSubject(server)) return false;
    return (jwtExpiry(token) ?? Infinity) <= Date.now();
  }

  /**
   * The SDK's reopening of a server's GET stream behind session `live` (it closed): after
   * `delayMs`, as the SDK would, when the session's agent token is still valid; held back until a
   * request of the agent brings a newer one (touch) when it has expired and `server` would need
   * it (a token-exchange server), rather than presented expired and refused.
   */
  private reopenStream(live: LiveSession, server: string, reopen: () => void, delayMs: number): () => void {
    const run = () => {
      if (!this.bearerExpired(live.scope.bearer.token, server)) return reopen();
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
    const target = this.namesOf(view).split(name);
    if (!target || !this.servers(principal, view).includes(target.server)) return undefined;
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
    this.sessions.delete(id);
    this.terminated.set(id, true, { ttl: Math.max(1, session.expiresAt - now) });
  }

  private sessionUnavailable(what: "check" | "record", err: unknown, body: unknown): BrokerRefusal {
    this.options.logger.error(
      { error: (err as { message?: string } | null)?.message },
      `aggregated endpoint: cannot ${what} a session's end in the state store`,
    );
    return { reason: "session_unavailable", id: requestIdOf(body) };
  }

  /**
   * Answers the client POSTed here to requests this process does not wait for (`elsewhere`; the
   * session's requests did not stick to one replica): each is handed over to the replica that
   * waits for it (answers.ts), the rest taken here. 202 once every answer was taken, as the
   * transport spec asks; 409 answer_not_pending when no replica waits for one (it timed out or was
   * cancelled); 503 answer_relay_unavailable when the store cannot be reached (the waiting replica
   * fails its request then: answerLost).
   */
  private async handOverAnswers(
    res: ServerResponse,
    relay: AnswerRelay,
    sessionId: string,
    held: LiveSession | undefined,
    { elsewhere, answers }: { elsewhere: JSONRPCMessage[]; answers: JSONRPCMessage[] },
  ): Promise<BrokerRefusal | undefined> {
    const handed = await Promise.allSettled(
      elsewhere.map((answer) =>
        relay.handOver(sessionId, answerKey((answer as { id: unknown }).id), JSON.stringify(answer)),
      ),
    );
    if (held)
      for (const answer of answers)
        if (!elsewhere.includes(answer) && isJSONRPCResponse(answer)) held.transport.onmessage?.(answer);
    const failed = handed.find((r) => r.status === "rejected");
    if (failed) {
      this.options.logger.error(
        { error: (failed.reason as { message?: string } | null)?.message },
        "aggregated endpoint: cannot hand an answer to a relayed request over to its replica",
      );
      return { reason: "answer_relay_unavailable", id: null };
    }
    if (handed.some((r) => r.status === "fulfilled" && !r.value))
      return this.answerNotPending(held !== undefined);
    res.writeHead(202);
    res.end();
    return undefined;
  }

  /**
   * The request the session's server numbered `serverId`, about to go to the client of `live` as
   * `wireId`, waits for its answer: taken here (the transport's onmessage) or handed over by
   * another replica (handOverAnswers there). Throws, so the request is not sent and fails at once,
   * when the store cannot take a hand-over.
   */
  private async expectAnswer(
    live: LiveSession,
    relay: AnswerRelay,
    wireId: string,
    serverId: string | number,
  ): Promise<void> {
    const key = answerKey(wireId);
    let stopTaking: () => void;
    try {
      stopTaking = await relay.expect(
        live.scope.sessionId ?? "",
        key,
        (answer) => this.answerHandedOver(live, key, answer),
        () => this.answerLost(live, wireId),
      );
    } catch (err) {
      this.options.logger.error(
        { error: (err as { message?: string } | null)?.message },
        "aggregated endpoint: cannot await an answer from other replicas; the relayed request fails",
      );
      const info = Reasons.answer_relay_unavailable;
      throw new ProtocolError(info.code, info.message, { reason: "answer_relay_unavailable" });
    }
    const expiry = setTimeout(() => this.answered(live, key), AWAIT_ANSWER_MS);
    expiry.unref();
    live.awaiting.set(key, {
      serverId,
      stop: () => {
        clearTimeout(expiry);
        stopTaking();
      },
    });
  }

  /** Request `key` of `live` waits no more (answered, cancelled, or given up). */
  private answered(live: LiveSession, key: string): void {
    const waiting = live.awaiting.get(key);
    if (waiting === undefined) return;
    live.awaiting.delete(key);
    waiting.stop();
  }

  /** An answer another replica handed over: given to the session's server as if POSTed here. */
  private answerHandedOver(live: LiveSession, key: string, answer: string): void {
    let message: unknown;
    try {
      message = JSON.parse(answer);
    } catch {
      return;
    }
    if (!live.awaiting.has(key) || !isJSONRPCResponse(message) || answerKey(message.id) !== key) return;
    live.transport.onmessage?.(message);
  }

  /**
   * The store's subscription for request `wireId` dropped: an answer handed over meanwhile is
   * lost, so the request fails now (answer_relay_unavailable, to the server that asked) rather
   * than waiting out its timeout.
   */
  private answerLost(live: LiveSession, wireId: string): void {
    if (!live.awaiting.has(answerKey(wireId))) return;
    this.options.logger.warn(
      {},
      "aggregated endpoint: lost the state store while a relayed request awaited its answer; it fails",
    );
    const info = Reasons.answer_relay_unavailable;
    live.transport.onmessage?.({
      jsonrpc: "2.0",
      id: wireId,
      error: { code: info.code, message: info.message, data: { reason: "answer_relay_unavailable" } },
    });
  }

  private answerNotPending(sessionHeld: boolean): BrokerRefusal {
    this.options.logger.warn(
      { sessionHeld },
      "aggregated endpoint: an answer to a relayed request reached a replica where none is pending",
    );
    return { reason: "answer_not_pending", id: null };
  }

  /**
   * `initialize` without a session: opens a session on each server of the view (in parallel; one
   * that fails is left out and opened later when it is used), seals them into the client's id.
   */
  private async initialize(
    res: ServerResponse,
    request: Request,
    principal: Principal,
    view: string | undefined,
    body: { params?: Record<string, unknown> },
    agentToken: string | undefined,
    authInfo: { token: string; clientId: string; scopes: string[]; extra: Record<string, unknown> },
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
    const servers = this.servers(principal, view).filter((server) => !this.hopTokenTooLarge(scope, server));
    const opened = await Promise.allSettled(servers.map((server) => this.openHopSession(scope, server)));
    opened.forEach((result, i) => {
      if (result.status === "fulfilled") session.hops[servers[i]!] = result.value;
      else this.dropped(servers[i]!, "initialize", result.reason);
    });
    // What the client is told it may use, from the servers that answered (sealed: a replica
    // that restores the session serves the same).
    session.offers = this.offered(Object.keys(session.hops));
    const sealed = sealBrokerSession(
      this.engine.sessions,
      brokerSessionOwner(principal.issuer, principal.agent, view),
      session,
    );
    const live = await this.liveSession(sealed, session, principal, view);
    this.touch(live, agentToken);
    const response = await live.transport.handleRequest(request, { parsedBody: body, authInfo });
    return answer(res, response);
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
    const server = this.buildServer(scope);
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
    };
    const relay = this.options.answers;
    if (relay) {
      // Every request the session's server sends the client goes out under an id of this process
      // (wireIdPrefix) and waits for its answer here and, through the store, from any replica the
      // client POSTs it to; until answered or cancelled. The answer gets the server's id back.
      const wireId = (serverId: unknown) => `${this.wireIdPrefix}${String(serverId)}`;
      const send = transport.send.bind(transport);
      // Shape checks only (no schema parse): every result the session sends passes through here.
      transport.send = async (message, options) => {
        if ("method" in message) {
          if ("id" in message) {
            const id = wireId(message.id);
            await this.expectAnswer(live, relay, id, message.id);
            return send({ ...message, id }, options);
          }
          if (message.method === "notifications/cancelled" && message.params?.requestId !== undefined) {
            const id = wireId(message.params.requestId);
            this.answered(live, answerKey(id));
            return send({ ...message, params: { ...message.params, requestId: id } }, options);
          }
        }
        return send(message, options);
      };
      const receive = transport.onmessage;
      transport.onmessage = (message, extra) => {
        if (!("method" in message) && "id" in message) {
          const key = answerKey(message.id);
          const waiting = live.awaiting.get(key);
          if (waiting !== undefined) {
            this.answered(live, key);
            return receive?.({ ...message, id: waiting.serverId }, extra);
          }
        }
        receive?.(message, extra);
      };
    }
    this.sessions.set(sealed, live);
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

  private async closeHops(live: LiveSession, principal: Principal, sessionId: string): Promise<void> {
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
    const servers = new Set([
      ...Object.keys(live.session.hops),
      ...this.engine.registry.serverNames().filter((s) => this.lateHops.has(`${sessionId} ${s}`)),
    ]);
    await Promise.allSettled(
      [...servers].map(async (server) => {
        const transport = this.hopTransport(scope, server, this.hopSessionId(scope, server));
        await transport.terminateSession();
        this.lateHops.delete(`${sessionId} ${server}`);
      }),
    );
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
    const servers = this.servers(principal, view).filter(
      (s) => this.hopSessionId(scope, s) !== STATELESS_HOP,
    );
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
    const hopSession = this.hopSessionId(scope, server);
    if (!hopSession) return;
    const generation = this.presence.generation(server);
    const held = listeners.get(server);
    if (held !== undefined) {
      if (held.generation >= generation) return;
      void held.client.close().catch(() => undefined);
    }
    const names = this.namesOf(scope.view);
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
          params: { ...n.params, uri: names.join(server, n.params.uri) },
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
    const transport = this.hopTransport(scope, server, hopSession, (reopen, delayMs) =>
      this.reopenStream(live, server, reopen, delayMs),
    );
    transport.setProtocolVersion(live.session.protocolVersion);
    void client
      .connect(transport)
      .then(() => transport.resumeStream(""))
      .catch((err: unknown) => {
        // Opened again when the server rejoins (listenTo).
        if (listeners.get(server)?.client === client) listeners.delete(server);
        this.dropped(server, "GET", err);
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
   * it gave. Waits up to LISTEN_SETUP_MS for them; one that opens later still delivers, one that
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
    const servers = this.servers(scope.principal, scope.view);
    const subscribed = subscriptionsByServer(this.namesOf(scope.view), servers, filter.resourceSubscriptions);
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
        ({ client } = await this.hop(scope, server, undefined, hopCapabilities(scope, undefined)));
      } catch (err) {
        // It could not connect (unlike a listen refused): opened when it answers again (presence.ts).
        if (listening.get(server) === held) listening.delete(server);
        return this.dropped(server, "connect", err);
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
              this.dropped(server, "listen", err);
            });
        }
      } catch (err) {
        this.dropped(server, "listen", err);
      }
    };
    const opening = servers.map(open);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled(opening),
      new Promise((resolve) => (timer = setTimeout(resolve, LISTEN_SETUP_MS))),
    ]);
    clearTimeout(timer);
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
      servers: () => this.servers(scope.principal, scope.view),
      changed: (server, kinds, present) => {
        for (const kind of kinds) tell(kind, server, present);
      },
      probe: (server) =>
        this.withHop(scope, server, undefined, (client) =>
          client.request({ method: "tools/list", params: {} }, LIST_PAGES.tools),
        ).then(
          () => undefined,
          (err: unknown) => {
            const e = err as { code?: unknown; data?: { reason?: unknown } } | null;
            if (e?.code === JsonRpcCode.MethodNotFound && e.data?.reason === undefined)
              this.presence.up(server);
          },
        ),
    };
  }

  /** The optional capabilities at least one of `servers` offers, as far as this process knows. */
  private offered(servers: readonly string[]): string[] {
    const engine = this.engine;
    return OPTIONAL_CAPABILITIES.filter((capability) =>
      servers.some((server) => this.presence.capabilitiesOf(engine, server)?.[capability] !== undefined),
    );
  }

  /**
   * Asks the servers of a 2026-07-28 request's view whose capabilities this process does not
   * know yet (none of its hops connected to them since the start or the last reload), with a hop
   * of the request's agent: its `server/discover` (or `initialize`, for a server that speaks only
   * 2025) answers them. Once per server, shared by concurrent requests; a server left out is not
   * asked (its probe or next hop brings them); waits at most DISCOVER_WAIT_MS, after which the
   * request is served with what is known.
   */
  private async discover(scope: Scope): Promise<void> {
    const engine = this.engine;
    const asking = this.servers(scope.principal, scope.view)
      .filter((server) => this.presence.capabilitiesOf(engine, server) === undefined)
      .filter((server) => !this.presence.isAbsent(server))
      .map((server) => {
        let pending = this.discovering.get(server);
        if (pending === undefined) {
          pending = this.hop(scope, server, undefined, hopCapabilities(scope, undefined))
            .then(
              (hop) => closeHop(hop),
              (err: unknown) => this.dropped(server, "connect", err),
            )
            .finally(() => this.discovering.delete(server));
          this.discovering.set(server, pending);
        }
        return pending;
      });
    if (asking.length === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled(asking),
      new Promise((resolve) => (timer = setTimeout(resolve, DISCOVER_WAIT_MS))),
    ]);
    clearTimeout(timer);
  }

  private dropped(server: string, method: string, err: unknown): void {
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
   * The client session's hop session on `server`: one this process opened later (the server was
   * down at initialize, or its session was gone and renewed) before the one sealed at initialize.
   */
  private hopSessionId(scope: Scope, server: string): string | undefined {
    const late =
      scope.sessionId === undefined ? undefined : this.lateHops.get(`${scope.sessionId} ${server}`);
    return late ?? scope.session?.hops[server];
  }

  private hopTransport(
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
  private hopTokenTooLarge(scope: Scope, server: string): boolean {
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
  private async openHopSession(scope: Scope, server: string): Promise<string> {
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
  private async hop(
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
      sent: [],
      ownSession: false,
    };
    if (!scope.modern) {
      for (const [method, capability] of RELAYED_REQUESTS) {
        if (capabilities[capability] === undefined) continue;
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
    }
    client.setNotificationHandler("notifications/message", (notification) =>
      hop.ctx?.mcpReq.notify({
        method: "notifications/message",
        params: {
          ...notification.params,
          logger:
            notification.params.logger === undefined
              ? server
              : this.namesOf(scope.view).join(server, notification.params.logger),
        },
      }),
    );
    // 2025: every hop of a client session (concurrent requests, other replicas) shares its session
    // on the server, which tells requests and their streams apart by id, and each SDK client
    // numbers its own from 0. Once connected, this hop's ids carry a prefix of its own on the
    // wire; answers get the client's number back.
    const idPrefix = scope.modern ? undefined : `${this.wireIdPrefix}hop${++this.hopsBuilt}-`;
    let prefixing = false;
    // Once connected: the wire ids of the requests sent whose answer has not come (streamCut).
    let unanswered: Set<JsonRpcId> | undefined;
    const send = transport.send.bind(transport);
    transport.send = (message, options) => {
      if (prefixing && "method" in message) {
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
      if ("method" in message && "id" in message) {
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
    const receive = transport.onmessage;
    transport.onmessage = (message) => {
      if (!("method" in message) && message.id !== undefined) {
        waiting.delete(message.id);
        if (idPrefix !== undefined && typeof message.id === "string" && message.id.startsWith(idPrefix)) {
          const id = Number(message.id.slice(idPrefix.length));
          if (Number.isSafeInteger(id)) message = { ...message, id };
        }
      }
      receive?.(message);
    };
    prefixing = idPrefix !== undefined;
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
  private dropHops(matches: (key: { server: string; session: string }) => boolean): void {
    this.hopPool.drop((key) => matches(hopKeyParts(key)));
  }

  /**
   * Runs `work` on a hop client of `server` (withHopOnce). When the server answers that the
   * client session's hop session is gone (404: it restarted), a new hop session is opened, kept
   * for the client session (lateHops, this process) and the request is sent once more; a second
   * 404 is refused as upstream_session_lost, not retried again.
   */
  private async withHop<T>(
    scope: Scope,
    server: string,
    ctx: ServerContext | undefined,
    work: (client: Client, signal: AbortSignal | undefined) => Promise<T>,
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
    let renewed: string;
    try {
      renewed = await this.openHopSession(scope, server);
    } catch (err) {
      this.dropped(server, "initialize", err);
      throw relayedError(err, server);
    }
    this.lateHops.set(`${sessionId} ${server}`, renewed);
    try {
      return await this.withHopOnce(scope, server, ctx, work);
    } catch (err) {
      if (err instanceof HopSessionGone) throw sessionLost(server);
      throw err;
    }
  }

  /**
   * Runs `work` on a hop client of `server`: one kept from an earlier request of the same agent
   * session (2025) or agent and capabilities (2026-07-28) when there is one, else a new one; kept
   * again after, unless the work failed other than with a JSON-RPC error, was cancelled, or the
   * client's session ended meanwhile.
   */
  private async withHopOnce<T>(
    scope: Scope,
    server: string,
    ctx: ServerContext | undefined,
    work: (client: Client, signal: AbortSignal | undefined) => Promise<T>,
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
      let sessionId = scope.modern ? undefined : this.hopSessionId(scope, server);
      if (!scope.modern && sessionId === undefined) {
        // The server was left out at initialize: open its session now, for this process.
        sessionId = await this.openHopSession(scope, server);
        if (scope.sessionId !== undefined) {
          this.lateHops.set(`${scope.sessionId} ${server}`, sessionId);
          // The client's stream is open: this server's joins it now.
          const live = this.sessions.get(scope.sessionId);
          if (live) this.listenTo(live, server);
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
    const signal = ctx?.mcpReq.signal;
    let stopListening = () => {};
    if (signal && legacy) {
      // In 2025 a closed stream is not a cancellation: the SDK client would only close it, so
      // the broker tells the server with notifications/cancelled for what this hop sent.
      const used = hop;
      const onAbort = () => {
        void Promise.allSettled(
          used.sent.map((requestId) =>
            transport.send({
              jsonrpc: "2.0",
              method: "notifications/cancelled",
              params: { requestId, reason: String(signal.reason ?? "cancelled by the client") },
            }),
          ),
        ).then(() => closeHop(used));
      };
      signal.addEventListener("abort", onAbort, { once: true });
      stopListening = () => signal.removeEventListener("abort", onAbort);
    }
    let keep = false;
    try {
      const result = await work(client, legacy ? undefined : signal);
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
        !(scope.sessionId !== undefined && this.terminated.has(scope.sessionId))
      ) {
        this.hopPool.give(key, hop);
      } else {
        await closeHop(hop);
      }
    }
  }

  /** Whose lists a request sees: what a hop's list depends on besides the server (list-cache.ts). */
  private listOwner(scope: Scope, ctx: ServerContext): ListOwner {
    return {
      principal: scope.principal,
      view: scope.view,
      protocolVersion: scope.modern ? "2026" : (scope.session?.protocolVersion ?? ""),
      capabilities: Object.keys(hopCapabilities(scope, ctx)),
    };
  }

  /** One server's whole list (every page) through its hop. */
  private fetchList(scope: Scope, server: string, kind: ListKind, ctx: ServerContext): Promise<FetchedList> {
    return this.withHop(scope, server, ctx, async (client) => {
      // Straight requests, not the client's list helpers: a client attached to an existing
      // session has not seen the server's capabilities, and they would return nothing. Each page
      // is checked by list-page.ts, not by the SDK's schema of the method (a deep walk of every
      // definition, half the cost of an uncached list); a page that fails is refused as a whole.
      const { method, field } = LISTS[kind];
      const items: Record<string, unknown>[] = [];
      const pages: unknown[] = [];
      let cursor: string | undefined;
      for (let page = 0; page < MAX_LIST_PAGES; page++) {
        const result = await client.request(
          { method, params: cursor === undefined ? {} : { cursor } },
          LIST_PAGES[kind],
        );
        pages.push(result);
        items.push(...(result[field] as Record<string, unknown>[]));
        cursor = result.nextCursor;
        if (cursor === undefined) break;
      }
      return { items, pages, hinted: client.getProtocolEra() === "modern" };
    });
  }

  /**
   * One list over every server of the view, each server's part kept per agent view
   * (list-cache.ts); a server that fails is left out (and counted). For a 2026-07-28 client, the
   * caching hints of the whole: fresh for as long as every part is (a part without hints, or a
   * server left out, makes it 0: the next list asks again), and private (it is this agent's view).
   */
  private async listAll(
    scope: Scope,
    kind: ListKind,
    ctx: ServerContext,
  ): Promise<{ items: Record<string, unknown>[]; hints: { ttlMs?: number; cacheScope?: "private" } }> {
    const engine = this.engine;
    const owner = this.listOwner(scope, ctx);
    const servers = this.servers(scope.principal, scope.view);
    const lists = await Promise.allSettled(
      servers.map((server) =>
        this.lists.list(engine, owner, server, kind, () => this.fetchList(scope, server, kind, ctx)),
      ),
    );
    const out: Record<string, unknown>[] = [];
    const names = this.namesOf(scope.view);
    let ttlMs = durationMs(engine.config.cache.hints.maxTtl);
    lists.forEach((result, i) => {
      const server = servers[i]!;
      if (result.status === "rejected") {
        // A server without this kind of primitive is not a failure (nor a bound on the hints), nor
        // is the agent's expired or too large token (refused and audited as such: withHopOnce).
        const refused = (result.reason as { code?: unknown; data?: { reason?: unknown } }) ?? {};
        if (refused.data?.reason === "jwt_expired" || refused.data?.reason === "agent_token_too_large") {
          ttlMs = 0;
          return;
        }
        if (refused.code !== JsonRpcCode.MethodNotFound) {
          this.dropped(server, kind, result.reason);
          auditOf(ctx)?.leftOut(server);
          ttlMs = 0;
        }
        return;
      }
      ttlMs = Math.min(ttlMs, result.value.freshForMs);
      for (const item of result.value.items) {
        if (kind === "tools" && !this.inView(scope.view, server, String(item.name))) continue;
        if (kind === "resources") out.push({ ...item, uri: names.join(server, String(item.uri)) });
        else if (kind === "resourceTemplates")
          out.push({ ...item, uriTemplate: names.join(server, String(item.uriTemplate)) });
        else out.push({ ...item, name: names.join(server, String(item.name)) });
      }
    });
    return { items: out, hints: scope.modern ? { ttlMs: Math.floor(ttlMs), cacheScope: "private" } : {} };
  }

  /**
   * The server a prefixed name routes to, if it is in the agent's view; else the message is
   * refused as unknown (as /mcp/<server> refuses a name the agent may not use), and audited.
   */
  private route(
    scope: Scope,
    kind: "tools" | "prompts" | "resources",
    name: string,
    ctx: ServerContext,
  ): { server: string; name: string } {
    const split = this.namesOf(scope.view).split(name);
    if (
      split &&
      this.servers(scope.principal, scope.view).includes(split.server) &&
      (kind !== "tools" || this.inView(scope.view, split.server, split.name))
    )
      return split;
    const registered = split !== undefined && this.engine.registry.server(split.server) !== undefined;
    throw refusedInBand(ctx, {
      reason: UNKNOWN_REASON[kind],
      cause: registered ? "not_in_view" : "server_not_registered",
      id: ctx.mcpReq.id,
      detail: name,
      ...(registered ? { server: split.server } : {}),
      subject: { kind, name },
    });
  }

  private buildServer(scope: Scope): Server {
    // 2025: what the client was told at initialize (sealed); 2026-07-28: what the view's servers
    // offer now.
    const offers = new Set(
      scope.modern
        ? this.offered(this.servers(scope.principal, scope.view))
        : (scope.session?.offers ?? OFFERED_BEFORE),
    );
    const server = new Server(BROKER_INFO, {
      capabilities: {
        tools: { listChanged: true },
        prompts: { listChanged: true },
        resources: { subscribe: true, listChanged: true },
        ...(offers.has("completions") ? { completions: {} } : {}),
        ...(offers.has("logging") ? { logging: {} } : {}),
      },
      instructions: this.namesOf(scope.view).instructions,
    });
    server.setRequestHandler("tools/list", async (_request, ctx) => {
      const { items, hints } = await this.listAll(scope, "tools", ctx);
      return { tools: items as never, ...hints };
    });
    server.setRequestHandler("prompts/list", async (_request, ctx) => {
      const { items, hints } = await this.listAll(scope, "prompts", ctx);
      return { prompts: items as never, ...hints };
    });
    server.setRequestHandler("resources/list", async (_request, ctx) => {
      const { items, hints } = await this.listAll(scope, "resources", ctx);
      return { resources: items as never, ...hints };
    });
    server.setRequestHandler("resources/templates/list", async (_request, ctx) => {
      const { items, hints } = await this.listAll(scope, "resourceTemplates", ctx);
      return { resourceTemplates: items as never, ...hints };
    });
    server.setRequestHandler("tools/call", async (request, ctx) => {
      const target = this.route(scope, "tools", request.params.name, ctx);
      const progressToken = request.params._meta?.progressToken;
      const params = {
        name: target.name,
        ...(request.params.arguments ? { arguments: request.params.arguments } : {}),
        ...(scope.modern ? retryParams(ctx) : {}),
      };
      return this.withHop(scope, target.server, ctx, (client, signal) => {
        const options = {
          signal,
          timeout: HOP_TIMEOUT_MS,
          resetTimeoutOnProgress: true,
          ...(progressToken !== undefined
            ? {
                onprogress: (progress: { progress: number; total?: number; message?: string }) =>
                  void ctx.mcpReq
                    .notify({ method: "notifications/progress", params: { ...progress, progressToken } })
                    .catch(() => undefined),
              }
            : {}),
        };
        // 2026-07-28: a straight request, so an `input_required` result comes back to the agent as it
        // is, and the agent's Mcp-Param-* headers (checked against the pinned schema) go with it.
        if (client.getProtocolEra() === "modern")
          return client.request(
            { method: "tools/call", params },
            { ...options, allowInputRequired: true, headers: scope.paramHeaders ?? {} },
          );
        return client.callTool(params, options);
      })
        .then(asGateway, asAsked("tools", request.params.name))
        .catch(hopBroken(ctx)) as never;
    });
    server.setRequestHandler("prompts/get", async (request, ctx) => {
      const target = this.route(scope, "prompts", request.params.name, ctx);
      const params = {
        name: target.name,
        ...(request.params.arguments ? { arguments: request.params.arguments } : {}),
        ...(scope.modern ? retryParams(ctx) : {}),
      };
      return this.withHop(scope, target.server, ctx, (client, signal) =>
        client.getPrompt(params, { signal, allowInputRequired: true }),
      )
        .then(asGateway, asAsked("prompts", request.params.name))
        .catch(hopBroken(ctx));
    });
    server.setRequestHandler("resources/read", async (request, ctx) => {
      const target = this.route(scope, "resources", request.params.uri, ctx);
      const params = { uri: target.name, ...(scope.modern ? retryParams(ctx) : {}) };
      const result = await this.withHop(scope, target.server, ctx, (client, signal) =>
        client.readResource(params, { signal, allowInputRequired: true }),
      )
        .then(asGateway, asAsked("resources", request.params.uri))
        .catch(hopBroken(ctx));
      if (isInputRequiredResult(result)) return result as never;
      return {
        ...result,
        contents: result.contents.map((c) => ({
          ...c,
          uri: this.namesOf(scope.view).join(target.server, c.uri),
        })),
      };
    });
    if (offers.has("completions"))
      server.setRequestHandler("completion/complete", async (request, ctx) => {
        const ref = request.params.ref;
        const target =
          ref.type === "ref/prompt"
            ? this.route(scope, "prompts", ref.name, ctx)
            : this.route(scope, "resources", ref.uri, ctx);
        const notOffered = () =>
          refusedInBand(ctx, {
            reason: "method_unknown",
            cause: "not_offered",
            id: ctx.mcpReq.id,
            detail: `completion/complete: ${target.server} offers no completions`,
            server: target.server,
            data: { server: target.server },
          });
        // Known not to offer them: refused here, no hop. Not known (it was down when the client
        // connected): asked, and its bare "method not found" is answered the same way.
        const known = this.presence.capabilitiesOf(this.engine, target.server);
        if (known !== undefined && known.completions === undefined) throw notOffered();
        const hopRef =
          ref.type === "ref/prompt" ? { ...ref, name: target.name } : { ...ref, uri: target.name };
        return this.withHop(scope, target.server, ctx, (client, signal) =>
          // A straight request: a client attached to a session has not seen the server's capabilities.
          client.request(
            { method: "completion/complete", params: { ...request.params, ref: hopRef } },
            { signal },
          ),
        )
          .then(asGateway, (err: unknown) => {
            const e = err as { code?: unknown; data?: { reason?: unknown } } | null;
            if (e?.code === JsonRpcCode.MethodNotFound && e.data?.reason === undefined) throw notOffered();
            throw err;
          })
          .catch(hopBroken(ctx));
      });
    if (!scope.modern && offers.has("logging")) {
      // To each server of the view that offers logging (or is not known not to); each hop is
      // decided and audited on its server's path.
      server.setRequestHandler("logging/setLevel", async (request, ctx) => {
        const engine = this.engine;
        await Promise.allSettled(
          this.servers(scope.principal, scope.view)
            .filter((name) => {
              const known = this.presence.capabilitiesOf(engine, name);
              return known === undefined || known.logging !== undefined;
            })
            .map((name) =>
              this.withHop(scope, name, ctx, (client) =>
                client.request({ method: "logging/setLevel", params: { level: request.params.level } }),
              ),
            ),
        );
        return {};
      });
    }
    if (!scope.modern) {
      server.setRequestHandler("resources/subscribe", async (request, ctx) => {
        const target = this.route(scope, "resources", request.params.uri, ctx);
        await this.withHop(scope, target.server, ctx, (client) =>
          client.request({ method: "resources/subscribe", params: { uri: target.name } }),
        ).catch(hopBroken(ctx));
        return {};
      });
      server.setRequestHandler("resources/unsubscribe", async (request, ctx) => {
        const target = this.route(scope, "resources", request.params.uri, ctx);
        await this.withHop(scope, target.server, ctx, (client) =>
          client.request({ method: "resources/unsubscribe", params: { uri: target.name } }),
        ).catch(hopBroken(ctx));
        return {};
      });
    }
    // A method the aggregate does not serve: refused with its reason and audited, as on
    // /mcp/<server> (the SDK's own answer has no reason). Not in 2026-07-28, where the SDK answers
    // an unknown method with HTTP 404 (SEP-2575) before any handler runs, only when none is set:
    // that answer reaches the caller as a refusal of its own (refusals.ts, sdkRefusal).
    if (!scope.modern)
      server.fallbackRequestHandler = (request, ctx) =>
        Promise.reject(
          refusedInBand(ctx, { reason: "method_unknown", id: request.id, detail: request.method }),
        );
    return server;
  }

  /** Hop clients kept idle for later requests (hop-pool.ts), for tests and diagnostics. */
  get keptHops(): number {
    return this.hopPool.size;
  }

  close(): Promise<void> {
    this.sessions.clear();
    this.opened.clear();
    this.upstreamStreams.closeAll();
    this.hopPool.clear();
    this.lists.clear();
    this.presence.clear();
    return this.modern.close();
  }
}
