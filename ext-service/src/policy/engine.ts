import { randomUUID } from "node:crypto";
import { dirname } from "node:path";
import type { PolicyConfig, Registry, RegistryTool } from "./settings.js";
import {
  errorResponse,
  parseJsonRpcBody,
  type JsonRpcId,
  type JsonRpcMessage,
  type JsonRpcRequest,
  type ParseLimits,
} from "../mcp/jsonrpc.js";
import {
  MODERN_PROTOCOL_VERSIONS,
  classifyEra,
  protocolVersionLabel,
  type ProtocolEra,
} from "../mcp/eras.js";
import { HINTED_METHODS, isRetriedRequest, resultIdentifyingParams } from "../mcp/cache-hints.js";
import {
  CLIENT_REQUEST_METHODS,
  CLIENT_REQUEST_METHODS_2026,
  completionTarget,
  listenResourceSubscriptions,
  missingTargetProblem,
  requestTarget,
} from "../mcp/methods.js";
import { canonicalJson } from "./canonical.js";
import {
  countOn,
  denyExchange,
  idKey,
  idOfKey,
  newExchange,
  noteBody,
  refusalBody,
  traceIdOf,
  validTraceparent,
  type Exchange,
} from "./exchange.js";
import { ApprovalPolicy, approvalStateSecret, type ApprovalRequirement } from "./approvals.js";
import { BudgetPolicy } from "./budgets.js";
import { agentHeaderValue, Authenticator, type AuthResult, type Principal } from "./identity.js";
import { RequestOrigins } from "./origins.js";
import { Rbac } from "./rbac.js";
import { Reasons, type Reason } from "./reasons.js";
import { ToolRegistry } from "./registry.js";
import { resourceTemplateProblem, resourceUriProblem } from "./resource-uri.js";
import { ResponseTransformer } from "./response.js";
import { StreamResumption } from "./resumption.js";
import { processSealSecret } from "./seal.js";
import { SecurityPolicy } from "./security.js";
import { parseRoute, resourceMetadata, resourceMetadataUrl, type Route } from "./routing.js";
import {
  openUpstreamSession,
  sealUpstreamSession,
  SessionSealer,
  type SessionOwner,
  type UpstreamSession,
} from "./session-seal.js";
import { readSessionSecrets } from "./session-keys.js";
import { durationMs } from "../model/duration.js";
import { readUpstreamCredentials, type UpstreamCredentials } from "./upstream-credentials.js";
import {
  HopTokens,
  isHopToken,
  MAX_HOP_TOKEN_LENGTH,
  VIA_BROKER_HEADER,
  type OpenedHop,
} from "./hop-token.js";
import { IssuedCredentialSeal, tokenExchangeKey, type TokenExchangeNeed } from "./token-exchange.js";

/**
 * Why one request is refused: `reason` is what the agent is told (a tool it may not use reads as
 * unknown), `cause` what the operator needs (docs/REASONS.md, "Causes"); without a cause the
 * reason says it all.
 */
export interface Denial {
  reason: Reason;
  detail: string | undefined;
  cause?: string | undefined;
}

/** Request headers the core looks at, lower-case names. */
export type HeaderMap = Readonly<Record<string, string | undefined>>;

export interface HttpRequestHead {
  method: string;
  path: string;
  headers: HeaderMap;
  /** The request's host (Host, or :authority behind Envoy); defaults to the `host` header. */
  host?: string | undefined;
  /** The local address the request arrived on (the listener side of the connection), if known. */
  localAddress?: string | undefined;
}

/** A complete HTTP answer the data plane sends instead of forwarding. */
export interface HttpReply {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export type Admission =
  | { ok: true; exchange: Exchange; principal: Principal; server: string }
  | { ok: false; exchange: Exchange; reply: HttpReply };

/** Header-phase decision for the aggregated endpoint (`/mcp`, `/mcp/views/<name>`). */
export type BrokerAdmission =
  | { ok: true; exchange: Exchange; principal: Principal; view: string | undefined }
  | { ok: false; exchange: Exchange; reply: HttpReply };

/** A tools/call about to be forwarded: what budgets charge and the result cache keys on. */
export interface ToolCall {
  id: JsonRpcId;
  server: string;
  name: string;
  tool: RegistryTool;
  arguments: unknown;
  /** Set when a human must approve this call before it is forwarded (policy/approvals.ts). */
  approval?: ApprovalRequirement;
  /** The JSON-RPC request, for an in-band approval's retry (2026-07-28 `requestState`). */
  params?: Readonly<Record<string, unknown>>;
}
export type SessionCheck =
  /** No session id sent (initialize, or a stateless protocol revision). */
  | { ok: true; session: undefined }
  /** The client's sealed id, opened: what the upstream knows the session as. */
  | { ok: true; session: UpstreamSession }
  | { ok: false; reply: HttpReply };

/**
 * A lone 2026-07-28 list or `resources/read` request: its result may come from the cache its
 * caching hints (`ttlMs`, `cacheScope`) allow. Retried requests (multi round-trip) never are.
 */
export interface CacheableRead {
  id: JsonRpcId;
  method: string;
  /** The params that identify the result (no `_meta` but the client's capabilities), canonical JSON. */
  params: string;
}

export type RequestVerdict =
  /**
   * Forward the body unchanged. `toolCalls` (only when the body has any) lists its tools/call
   * requests, for the budget and cache steps the adapters run before forwarding; `batch` says
   * whether the body was a batch, so a refusal there answers in the same shape. `cacheableRead`
   * is set for a request whose result the caching hints may let the adapters reuse.
   */
  | {
      action: "forward";
      toolCalls?: ToolCall[];
      batch?: boolean;
      cacheableRead?: CacheableRead;
      /**
       * Set by the step before forwarding (GatewayState.forwardStep) when the upstream gets
       * another body: the retry of an in-band approval without the gateway's own round.
       */
      forwardBody?: Uint8Array;
    }
  /** Answer the client directly (all requests denied, or the body is invalid). */
  | { action: "reply"; reply: HttpReply }
  /**
   * A tools/call names a tool whose definition this process has not checked against its pin
   * recently (security.pins.verifyBeforeCall): the adapter fetches the server's tools/list, hands
   * it to `security.recordToolList` (or `recordToolListFailure`), then evaluates the body again
   * with `toolsListed`. Nothing was recorded on the exchange yet.
   */
  | { action: "list_tools"; server: string };

function cacheableRead(messages: readonly JsonRpcMessage[], era: ProtocolEra): CacheableRead | undefined {
  if (era !== "2026" || messages.length !== 1) return undefined;
  const m = messages[0]!;
  if (m.kind !== "request" || !HINTED_METHODS.has(m.method) || isRetriedRequest(m.params)) return undefined;
  return { id: m.id, method: m.method, params: canonicalJson(resultIdentifyingParams(m.params)) };
}

/** Headers the upstream receives: identity from the gateway, never the agent's token. */
export interface UpstreamHeaders {
  set: Record<string, string>;
  remove: string[];
}

/** What a hop to a server needs before it can be forwarded, beyond the static headers. */
export type CredentialNeed =
  | { kind: "none" }
  | { kind: "exchange"; need: TokenExchangeNeed }
  /** The server takes a per-agent credential and this request cannot have one. */
  | { kind: "refused"; reply: HttpReply };

const JSON_HEADERS = { "content-type": "application/json" } as const;

/**
 * Upstream response headers an agent never receives: cookies (the gateway, not the server, is
 * the origin the client talks to) and authentication challenges (an upstream's
 * `resource_metadata` would send an OAuth client to a server of the upstream's choosing).
 */
export const UPSTREAM_HEADERS_WITHHELD: readonly string[] = [
  "set-cookie",
  "set-cookie2",
  "www-authenticate",
  "proxy-authenticate",
];

/**
 * An upstream answer the gateway refuses on its status alone: a redirect (a client that follows
 * it would fetch a "result" no check ever sees) or an authentication failure (the agent's token
 * is not the upstream's business; the gateway's hop to it is misconfigured).
 */
export function upstreamStatusRefused(status: number): boolean {
  return (status >= 300 && status < 400) || status === 401 || status === 403 || status === 407;
}

function objectArguments(message: JsonRpcRequest): Record<string, unknown> | undefined {
  const args = message.params?.arguments;
  return typeof args === "object" && args !== null && !Array.isArray(args)
    ? (args as Record<string, unknown>)
    : undefined;
}

function hasDuplicateRequestIds(messages: readonly JsonRpcMessage[]): boolean {
  const seen = new Set<string>();
  for (const m of messages) {
    if (m.kind !== "request") continue;
    const key = idKey(m.id);
    if (seen.has(key)) return true;
    seen.add(key);
  }
  return false;
}

export function jsonReply(status: number, body: unknown, headers: Record<string, string> = {}): HttpReply {
  return { status, headers: { ...JSON_HEADERS, ...headers }, body: JSON.stringify(body) };
}

/**
 * The policy core: everything both data planes (Envoy through ext_authz/ext_proc, and the local
 * edge) decide, with no knowledge of gRPC or sockets. Built once per config; immutable after.
 *
 * The core decides with the PolicyConfig sections (policy/settings.ts). `Config` is whatever
 * config/ compiled it from (the whole gateway.yaml, config/compile.ts's GatewayEngine), carried
 * along so that an adapter holding the engine of a reload also holds that reload's listeners,
 * store and edge settings.
 */
export class PolicyEngine<Config extends PolicyConfig = PolicyConfig> {
  readonly config: Config;
  readonly registry: ToolRegistry;
  readonly rbac: Rbac;
  readonly authenticator: Authenticator;
  /** Seals and opens the session ids clients see (policy/session-seal.ts). */
  readonly sessions: SessionSealer;
  /** Pins, argument validation, injection and DLP (docs/SECURITY.md); holds the drift state. */
  readonly security: SecurityPolicy;
  /** Origin and Host validation (DNS rebinding). */
  readonly origins: RequestOrigins;
  /** Which budgets a call counts against and what the store's counters mean (docs/BUDGETS.md). */
  readonly budgets: BudgetPolicy;
  /** Which tool calls need a human approval, who decides, what an approval binds. */
  readonly approvals: ApprovalPolicy;
  /** Seals the requestState of in-band approvals (2026-07-28), with keys of their own. */
  readonly approvalStates: SessionSealer;
  /** The identity the aggregated endpoint presents on its hop to /mcp/<server> (policy/hop-token.ts). */
  readonly hopTokens: HopTokens;
  /** Seals the per-agent credential ext_authz set for ext_proc of the same request (Envoy plane). */
  readonly issuedCredentials: IssuedCredentialSeal;
  /** Seals the event ids of forwarded streams so a resumed stream's answers are matched (F4). */
  readonly resumption: StreamResumption;
  readonly limits: ParseLimits & {
    maxRequestBytes: number;
    maxResponseBytes: number;
    maxSseEventBytes: number;
  };

  /** The directory of gateway.yaml: relative file names in it are relative to this. */
  readonly configDir: string;
  /** Each server's gateway-held credential headers (registry `upstream.headers`, resolved). */
  private readonly upstreamCredentials: UpstreamCredentials;
  /**
   * The agent token a hop admitted by `admit` carried for a token exchange, verified again there;
   * read by credentialNeed. Kept beside the exchange, never on it: the exchange is audited.
   */
  private readonly hopSubjects = new WeakMap<Exchange, string>();

  constructor(
    loaded: { config: Config; registry: Registry; configFile: string },
    readonly now: () => number = Date.now,
  ) {
    this.configDir = dirname(loaded.configFile);
    this.config = loaded.config;
    this.registry = new ToolRegistry(loaded.registry);
    this.rbac = new Rbac(loaded.config, now);
    this.authenticator = new Authenticator(loaded.config, dirname(loaded.configFile), now);
    const credentials = readUpstreamCredentials(loaded.registry, this.configDir);
    if (credentials.problems.length > 0) {
      throw new Error(credentials.problems.map((p) => p.message).join("; "));
    }
    this.upstreamCredentials = credentials.credentials;
    this.security = new SecurityPolicy(loaded.config, loaded.registry, now, credentials.credentials.secrets);
    this.origins = new RequestOrigins(loaded.config);
    this.budgets = new BudgetPolicy(loaded.config.budgets);
    this.approvals = new ApprovalPolicy(loaded.config, now);
    const keys = readSessionSecrets(loaded.config, dirname(loaded.configFile));
    if (keys.problems.length > 0) throw new Error(keys.problems.map((p) => p.message).join("; "));
    // One key source for everything the gateway seals (session ids, event ids, hop tokens,
    // approval states). Without configured keys, one random key per process: sealed values
    // survive a config reload, not a restart, and another replica cannot open them.
    const secrets = keys.secrets.length ? keys.secrets : [processSealSecret()];
    this.sessions = new SessionSealer(secrets);
    this.approvalStates = new SessionSealer(secrets.map(approvalStateSecret));
    this.resumption = new StreamResumption(secrets);
    this.issuedCredentials = new IssuedCredentialSeal(secrets);
    // Hops to token-exchange servers carry the agent's token sealed inside (policy/hop-token.ts).
    const exchanges = this.upstreamCredentials.exchanges;
    this.hopTokens = new HopTokens(
      new SessionSealer(secrets, MAX_HOP_TOKEN_LENGTH),
      durationMs(loaded.config.broker.hopTokenTtl),
      now,
      (server) => exchanges.has(server),
    );
    this.limits = loaded.config.limits;
  }

  newExchange(httpMethod: string, requestId: string = randomUUID(), traceparent?: string): Exchange {
    const exchange = newExchange(requestId, httpMethod, this.now());
    exchange.traceId = traceIdOf(traceparent);
    if (exchange.traceId !== undefined) exchange.traceparent = traceparent!.trim();
    return exchange;
  }

  route(path: string): Route {
    return parseRoute(path, (name) => this.registry.server(name) !== undefined);
  }

  /**
   * The JSON-RPC error reply for a reason that rejects the whole HTTP request. It answers the
   * request's id (each request's, for a batch) once the body was parsed (exchange.refusalBody);
   * `id` names it instead where the caller knows better (a broker refusal of one request).
   */
  rejection(
    exchange: Exchange,
    reason: Reason,
    detail?: string,
    extraHeaders: Record<string, string> = {},
    id?: JsonRpcId | null,
    extraData: Record<string, unknown> = {},
  ): HttpReply {
    denyExchange(exchange, reason, reason === "internal_error" ? "error" : "deny");
    const info = Reasons[reason];
    const headers: Record<string, string> = { ...extraHeaders };
    if (info.status === 401) headers["www-authenticate"] ??= this.bearerChallenge(reason, exchange.server);
    const message = detail ? `${info.message}: ${detail}` : info.message;
    const data = { ...extraData, reason, request_id: exchange.requestId };
    return jsonReply(
      info.status,
      id === undefined || id === null
        ? refusalBody(exchange, info.code, message, data)
        : errorResponse(id, info.code, message, data),
      headers,
    );
  }

  /**
   * Header-phase decision (ext_authz, or the edge before reading the body): route, identity,
   * and whether the agent may reach the server at all.
   */
  async admit(
    head: HttpRequestHead,
    exchange: Exchange,
    /** The route of head.path, when the caller has it already. */
    route: Route = this.route(head.path),
  ): Promise<Admission> {
    return this.admitStep(head, exchange, route);
  }

  /**
   * As admit, but answered at once (no promise) unless a token's signature has to be checked or
   * the request is the aggregated endpoint's hop: the usual request, from an agent whose token
   * is in the verified-token cache, takes no promise and no microtask here.
   */
  admitStep(
    head: HttpRequestHead,
    exchange: Exchange,
    route: Route = this.route(head.path),
  ): Admission | Promise<Admission> {
    const foreign = this.origins.check(
      head.headers.origin,
      head.host ?? head.headers.host,
      head.localAddress,
    );
    if (foreign) return { ok: false, exchange, reply: this.rejection(exchange, foreign) };
    if (route.kind === "resource_metadata") {
      // Public by design (RFC 9728): how a client discovers where to get a token.
      // Only a registered name goes into the audit record and the metrics' server label.
      if (route.server !== undefined && this.registry.server(route.server)) exchange.server = route.server;
      exchange.status = 200;
      return {
        ok: false,
        exchange,
        reply: jsonReply(200, this.protectedResourceMetadata(route.server, route.path)),
      };
    }
    if (route.kind === "not_found")
      return { ok: false, exchange, reply: this.rejection(exchange, "server_unknown") };
    // Authentication comes before the server lookup, so a caller without a valid token cannot
    // tell which server names exist: every well-formed /mcp/<name> answers it the same 401.
    // exchange.server stays unset for an unknown name, so unauthenticated callers cannot grow
    // the metrics' server label either.
    if (route.kind === "broker")
      return { ok: false, exchange, reply: this.rejection(exchange, "server_unknown") };
    if (route.kind === "mcp") exchange.server = route.server;
    const bearer = Authenticator.bearerToken(head.headers.authorization);
    if (typeof bearer === "string" && isHopToken(bearer)) return this.admitHop(head, exchange, bearer, route);
    const auth = this.authenticator.authenticateStep(head.headers.authorization);
    if ("then" in auth)
      return auth.then((verified) => this.admitAuthenticated(head, exchange, verified, route));
    return this.admitAuthenticated(head, exchange, auth, route);
  }

  /** The aggregated endpoint's hop: it authenticated the agent and seals who it speaks for. */
  private async admitHop(
    head: HttpRequestHead,
    exchange: Exchange,
    bearer: string,
    route: Extract<Route, { kind: "mcp" | "unknown_server" }>,
  ): Promise<Admission> {
    const hop = route.kind === "mcp" ? this.hopTokens.open(bearer, route.server) : undefined;
    const refusal = hop === undefined ? "hop_token_invalid" : await this.hopSubjectProblem(exchange, hop);
    if (refusal !== undefined) {
      const challenge = { "www-authenticate": this.bearerChallenge("hop_token_invalid", route.server) };
      const reply = this.rejection(exchange, "hop_token_invalid", undefined, challenge);
      if (refusal !== "hop_token_invalid")
        exchange.causes.splice(exchange.causes.indexOf("hop_token_invalid"), 1, refusal);
      return { ok: false, exchange, reply };
    }
    return this.admitPrincipal(head, exchange, hop!.principal, route);
  }

  private admitAuthenticated(
    head: HttpRequestHead,
    exchange: Exchange,
    auth: AuthResult,
    route: Extract<Route, { kind: "mcp" | "unknown_server" }>,
  ): Admission {
    if (!auth.ok) {
      const challenge = { "www-authenticate": this.bearerChallenge(auth.reason, route.server) };
      return { ok: false, exchange, reply: this.rejection(exchange, auth.reason, undefined, challenge) };
    }
    return this.admitPrincipal(head, exchange, auth.principal, route);
  }

  /**
   * A hop that carries the agent's token for a token exchange: that token is verified again as a
   * direct request's would be (signature, issuer, audience, expiry, agent claim) and must speak
   * for the agent the hop names. The audit cause when it does not (`hop_subject_invalid:<reason>`,
   * `hop_subject_mismatch`), else undefined, the token then kept for credentialNeed.
   */
  private async hopSubjectProblem(exchange: Exchange, hop: OpenedHop): Promise<string | undefined> {
    if (hop.subjectToken === undefined) return undefined;
    const auth = await this.authenticator.authenticate(`Bearer ${hop.subjectToken}`);
    if (!auth.ok) return `hop_subject_invalid:${auth.reason}`;
    const { principal } = hop;
    if (
      auth.principal.anonymous ||
      auth.principal.agent !== principal.agent ||
      auth.principal.issuer !== principal.issuer
    )
      return "hop_subject_mismatch";
    this.hopSubjects.set(exchange, hop.subjectToken);
    return undefined;
  }

  private admitPrincipal(
    head: HttpRequestHead,
    exchange: Exchange,
    principal: Principal,
    route: Extract<Route, { kind: "mcp" | "unknown_server" }>,
  ): Admission {
    // The audit record of a hop says it came through the aggregated endpoint.
    if (principal.viaBroker) countOn(exchange, "via_broker");
    const unreachable = this.reachServer(exchange, principal, route);
    if (unreachable) return { ok: false, exchange, reply: unreachable };
    // MCP endpoints take no query string. Forwarding the client's would let it add parameters to
    // the registry's upstream URL (`?tenant=` pollution) and carry tokens put in URLs upstream;
    // refusing it is the same on both planes (Envoy's routes would keep it).
    if (head.path.includes("?")) {
      return { ok: false, exchange, reply: this.rejection(exchange, "query_not_allowed") };
    }
    if (head.method !== "POST") {
      // GET and DELETE are 2025-era session operations (2026-07-28 is POST only).
      exchange.era = "2025";
      const version = head.headers["mcp-protocol-version"];
      exchange.protocolVersion = version === undefined ? undefined : protocolVersionLabel(version.trim());
    }
    return { ok: true, exchange, principal, server: route.server };
  }

  /**
   * Header-phase decision for the aggregated endpoint: Origin and Host, the agent's token (never
   * a hop identity: the broker does not call itself), the view, and no query string. What the
   * agent may use inside is decided per hop, on /mcp/<server>.
   */
  async admitBroker(head: HttpRequestHead, exchange: Exchange): Promise<BrokerAdmission> {
    const foreign = this.origins.check(
      head.headers.origin,
      head.host ?? head.headers.host,
      head.localAddress,
    );
    if (foreign) return { ok: false, exchange, reply: this.rejection(exchange, foreign) };
    const route = this.route(head.path);
    if (route.kind !== "broker")
      return { ok: false, exchange, reply: this.rejection(exchange, "server_unknown") };
    const bearer = Authenticator.bearerToken(head.headers.authorization);
    const auth =
      typeof bearer === "string" && isHopToken(bearer)
        ? ({ ok: false, reason: "hop_token_invalid", detail: "" } as const)
        : await this.authenticator.authenticate(head.headers.authorization);
    if (!auth.ok) {
      // The aggregated endpoint's own metadata (`/.well-known/oauth-protected-resource/mcp`).
      const path = route.view === undefined ? "/mcp" : `/mcp/views/${route.view}`;
      const challenge = { "www-authenticate": this.bearerChallenge(auth.reason, undefined, path) };
      return { ok: false, exchange, reply: this.rejection(exchange, auth.reason, undefined, challenge) };
    }
    exchange.principal = auth.principal;
    // Only after the token: an agent learns which views exist, nobody else does.
    if (route.view !== undefined && !Object.hasOwn(this.config.broker.views, route.view)) {
      const detail = `no view '${route.view}' in broker.views`;
      return { ok: false, exchange, reply: this.rejection(exchange, "server_unknown", detail) };
    }
    if (head.path.includes("?")) {
      return { ok: false, exchange, reply: this.rejection(exchange, "query_not_allowed") };
    }
    return { ok: true, exchange, principal: auth.principal, view: route.view };
  }

  /**
   * Sets the verified principal and decides whether it may reach the route's server at all; the
   * refusal's reply, if not. A server the agent may not reach is answered exactly as an
   * unregistered name (a 403 would tell the agent the server exists); the audit record keeps the
   * real reason (`server_forbidden`) and cause.
   */
  reachServer(
    exchange: Exchange,
    principal: Principal,
    route: Extract<Route, { kind: "mcp" | "unknown_server" }>,
  ): HttpReply | undefined {
    exchange.principal = principal;
    if (route.kind === "unknown_server") return this.rejection(exchange, "server_unknown");
    if (this.rbac.mayReachServer(principal, route.server)) return undefined;
    const reply = this.rejection(exchange, "server_unknown");
    exchange.reasons.splice(exchange.reasons.indexOf("server_unknown"), 1, "server_forbidden");
    exchange.causes.splice(exchange.causes.indexOf("server_unknown"), 1, "rbac_no_rule");
    return reply;
  }

  /** The RFC 6750 challenge of a 401, pointing at the RFC 9728 metadata of the server in the path. */
  private bearerChallenge(reason: Reason, server: string | undefined, path?: string): string {
    return (
      `Bearer resource_metadata="${resourceMetadataUrl(this.config.publicUrl, server, path)}"` +
      (reason === "token_missing" ? "" : `, error="invalid_token"`)
    );
  }

  /** RFC 9728 metadata document for the well-known routes. */
  protectedResourceMetadata(server: string | undefined, path?: string): Record<string, unknown> {
    return resourceMetadata(this.config, server, path);
  }

  private sessionOwner(exchange: Exchange): SessionOwner | undefined {
    const principal = exchange.principal;
    if (!principal || exchange.server === undefined) return undefined;
    return { issuer: principal.issuer, agent: principal.agent, server: exchange.server };
  }

  /**
   * Header phase, after admission: a client's `Mcp-Session-Id` must be an id this gateway sealed
   * for this agent (and issuer) on this server. Anything else (another agent's id, a changed
   * byte, the server's raw id, an id from before a key was dropped) is a session the gateway
   * does not know: 404, as the MCP transport answers for an unknown session. GET streams,
   * DELETE and client responses (to elicitations) all carry the id, so all are covered.
   */
  openSession(exchange: Exchange, sealed: string | undefined): SessionCheck {
    if (sealed === undefined) return { ok: true, session: undefined };
    const owner = this.sessionOwner(exchange);
    const session = owner ? openUpstreamSession(this.sessions, sealed, owner) : undefined;
    if (!session) return { ok: false, reply: this.rejection(exchange, "session_unknown") };
    return { ok: true, session };
  }

  /** The id the client gets for a session the upstream opened (its `Mcp-Session-Id` answer). */
  sealSession(exchange: Exchange, upstream: string, endpoint?: string): string | undefined {
    const owner = this.sessionOwner(exchange);
    return owner ? sealUpstreamSession(this.sessions, owner, { upstream, endpoint }) : undefined;
  }

  /** The credential headers the gateway holds for `server` (registry `upstream.headers`), if any. */
  credentialHeaders(server: string): Readonly<Record<string, string>> | undefined {
    return this.upstreamCredentials.headers.get(server);
  }

  /**
   * Whether the hop to the exchange's server needs an exchanged per-agent token, and the agent
   * token to exchange: the bearer token the principal was verified from, or for a hop of the
   * aggregated endpoint the agent token it carried sealed (verified again in `admit`). Anonymous
   * agents, and hops without one, cannot have one.
   */
  credentialNeed(exchange: Exchange, incoming: HeaderMap): CredentialNeed {
    const server = exchange.server;
    const settings = server === undefined ? undefined : this.upstreamCredentials.exchanges.get(server);
    if (server === undefined || !settings) return { kind: "none" };
    const principal = exchange.principal;
    const subjectToken = principal?.viaBroker
      ? this.hopSubjects.get(exchange)
      : Authenticator.bearerToken(incoming.authorization);
    if (!principal || principal.anonymous || typeof subjectToken !== "string") {
      return { kind: "refused", reply: this.credentialUnavailable(exchange, "token_exchange_no_subject") };
    }
    const key = tokenExchangeKey(server, settings, principal);
    return { kind: "exchange", need: { server, settings, subjectToken, key } };
  }

  /** The refusal when no per-agent credential could be had; `cause` says why (docs/REASONS.md). */
  credentialUnavailable(exchange: Exchange, cause: string): HttpReply {
    const reply = this.rejection(exchange, "upstream_credential_unavailable");
    exchange.causes.splice(exchange.causes.indexOf("upstream_credential_unavailable"), 1, cause);
    // The token endpoint failed, not the agent: an error, as an unreachable server is.
    if (cause !== "token_exchange_no_subject") exchange.decision = "error";
    return reply;
  }

  /**
   * The identity and credential headers of the hop upstream. `exchanged` is the header an
   * exchanged per-agent token travels in (credentialNeed), obtained by the adapter.
   */
  upstreamHeaders(
    exchange: Exchange,
    incoming: HeaderMap,
    exchanged?: Readonly<Record<string, string>>,
  ): UpstreamHeaders {
    const remove = ["authorization"];
    for (const name of Object.keys(incoming)) {
      if (name.startsWith("x-mcp-")) remove.push(name);
    }
    const principal = exchange.principal;
    const set: Record<string, string> = {
      "x-mcp-agent": principal ? agentHeaderValue(principal.agent) : "",
      "x-mcp-request-id": exchange.requestId,
    };
    // Agent names are namespaced by issuer: the upstream needs both to tell two agents apart.
    if (principal?.issuer !== undefined) set["x-mcp-issuer"] = agentHeaderValue(principal.issuer);
    // A hop of the aggregated endpoint (its request to /mcp was counted against the agent's rate
    // limit): behind Envoy the global rate limit's descriptor carries it, and the rate limit
    // service does not count the hop again (envoy/ratelimit.ts). Client copies are stripped above.
    if (principal?.viaBroker) set[VIA_BROKER_HEADER] = "1";
    // The server's own credential, held by the gateway: it replaces whatever the agent sent.
    const held = exchange.server ? this.credentialHeaders(exchange.server) : undefined;
    const credential = exchanged ? { ...held, ...exchanged } : held;
    if (credential) {
      for (const name in credential) {
        set[name] = credential[name]!;
        if (!remove.includes(name)) remove.push(name);
      }
    }
    return { set, remove };
  }

  /**
   * Body-phase decision for a POST: parse the JSON-RPC body, classify its protocol era (the
   * 2026-07-28 envelope and standard headers must agree with the body) and decide each request.
   * A batch is atomic: if any request in it is denied, nothing is forwarded and every request in
   * it is answered (the denied ones with their reason, the others with `batch_rejected`).
   */
  evaluateRequestBody(
    exchange: Exchange,
    body: Uint8Array,
    headers: HeaderMap,
    options: { toolsListed?: boolean } = {},
  ): RequestVerdict {
    if (body.byteLength > this.limits.maxRequestBytes) {
      return { action: "reply", reply: this.rejection(exchange, "body_too_large") };
    }
    exchange.sessionId = headers["mcp-session-id"];
    const parsed = parseJsonRpcBody(body, this.limits);
    if (!parsed.ok) {
      // A single message whose id could be read is answered with it (mcp/jsonrpc.ts).
      const reply = this.rejection(exchange, parsed.reason, parsed.detail, {}, parsed.id);
      return { action: "reply", reply };
    }
    noteBody(exchange, parsed.batch, parsed.messages);
    const principal = exchange.principal;
    const server = exchange.server;
    if (!principal || !server) return { action: "reply", reply: this.rejection(exchange, "internal_error") };
    if (!options.toolsListed && this.callsUnlistedTool(server, parsed.messages)) {
      return { action: "list_tools", server };
    }

    for (const message of parsed.messages) {
      if (message.kind !== "response") exchange.methods.push(message.method);
      if (message.kind === "request" && exchange.rpcId === undefined) {
        exchange.rpcId = String(message.id);
        const meta = message.params?._meta;
        if (typeof meta === "object" && meta !== null) {
          exchange.metaTraceparent = validTraceparent((meta as Record<string, unknown>).traceparent);
        }
      }
    }
    const refused = this.classifyBody(exchange, parsed.messages, parsed.batch, headers);
    if (refused) return { action: "reply", reply: refused };
    // Each answer is inspected under its own request's settings, found by id: two requests with
    // one id would let an answer be read as the other's (security review F4).
    if (parsed.batch && hasDuplicateRequestIds(parsed.messages)) {
      return {
        action: "reply",
        reply: this.rejection(exchange, "invalid_request", "duplicate request id in the batch"),
      };
    }
    const era = exchange.era ?? "2025";

    const denials: ({ message: JsonRpcRequest } & Denial)[] = [];
    /** Calls a role rule with `approval: required` allowed: the rule's label. */
    const roleApprovals = new Map<JsonRpcRequest, string>();
    for (const message of parsed.messages) {
      if (message.kind !== "request") {
        // A notification or a client response has no id to answer: a secret in one refuses the body.
        const denial = this.security.checkClientMessage(exchange, server, message);
        if (denial) return { action: "reply", reply: this.rejection(exchange, denial.reason, denial.detail) };
        continue;
      }
      const denial =
        this.decideRequest(exchange, principal, server, message, era, roleApprovals) ??
        this.security.checkClientMessage(exchange, server, message);
      if (denial) denials.push({ message, ...denial });
    }

    if (denials.length === 0) {
      let toolCalls: ToolCall[] | undefined;
      for (const m of parsed.messages) {
        if (m.kind === "request") {
          const target = requestTarget(m.method, m.params) ?? completionTarget(m.method, m.params);
          exchange.pending.set(idKey(m.id), { method: m.method, target: target?.name });
          if (target?.kind === "tools" && target.name !== undefined) {
            const found = this.registry.tool(server, target.name, this.today());
            if ("tool" in found) {
              const call: ToolCall = {
                id: m.id,
                server,
                name: target.name,
                tool: found.tool,
                arguments: m.params?.arguments,
              };
              const approval = this.approvals.requirement(principal, call, roleApprovals.get(m));
              if (approval) {
                call.approval = approval;
                if (m.params) call.params = m.params;
              }
              (toolCalls ??= []).push(call);
            }
          }
        }
      }
      if (toolCalls) return { action: "forward", toolCalls, batch: parsed.batch };
      const read = parsed.batch ? undefined : cacheableRead(parsed.messages, era);
      return read ? { action: "forward", cacheableRead: read } : { action: "forward" };
    }

    const errorFor = (m: JsonRpcRequest, reason: Reason, detail?: string, cause?: string) => {
      denyExchange(exchange, reason, "deny", cause);
      const info = Reasons[reason];
      return errorResponse(m.id, info.code, detail ? `${info.message}: ${detail}` : info.message, {
        reason,
        request_id: exchange.requestId,
      });
    };
    if (!parsed.batch) {
      const d = denials[0]!;
      // 2026-07-28 answers a method the receiver does not implement with HTTP 404 (clients
      // probing with server/discover tell a modern endpoint from a missing one by it).
      const status = era === "2026" && d.reason === "method_unknown" ? 404 : 200;
      return {
        action: "reply",
        reply: jsonReply(status, errorFor(d.message, d.reason, d.detail, d.cause)),
      };
    }
    // The causes first in the audit record.
    for (const d of denials) denyExchange(exchange, d.reason, "deny", d.cause);
    const denied = new Map(denials.map((d) => [d.message, d]));
    const answers = parsed.messages
      .filter((m): m is JsonRpcRequest => m.kind === "request")
      .map((m) => {
        const d = denied.get(m);
        return d ? errorFor(m, d.reason, d.detail, d.cause) : errorFor(m, "batch_rejected");
      });
    return { action: "reply", reply: jsonReply(200, answers) };
  }

  /**
   * Sets the exchange's era and protocol version from the body (mcp/eras.ts), or returns the
   * reply refusing the whole request: headers that disagree with the body, a malformed
   * 2026-07-28 envelope, a revision the gateway cannot parse, or a 2026 message in a batch
   * (2026-07-28 has no batches).
   */
  private classifyBody(
    exchange: Exchange,
    messages: readonly JsonRpcMessage[],
    batch: boolean,
    headers: HeaderMap,
  ): HttpReply | undefined {
    // Mcp-Method and Mcp-Name describe one message: a batch is checked on its version header only.
    const standard = batch ? { "mcp-protocol-version": headers["mcp-protocol-version"] } : headers;
    for (const message of messages) {
      const era = classifyEra(message, standard);
      if (!era.ok) {
        if (era.problem !== "unsupported_protocol_version")
          return this.rejection(exchange, era.problem, era.detail);
        exchange.protocolVersion = protocolVersionLabel(era.detail);
        return this.rejection(exchange, era.problem, era.detail, {}, undefined, {
          // The envelope revisions it can parse (2025 revisions are negotiated with initialize).
          supported: [...MODERN_PROTOCOL_VERSIONS],
          requested: era.detail,
        });
      }
      if (batch && era.era === "2026") {
        return this.rejection(exchange, "invalid_request", "a batch must not carry 2026-07-28 messages");
      }
      if (
        exchange.era === undefined ||
        (exchange.protocolVersion === undefined && era.version !== undefined)
      ) {
        exchange.era = era.era;
        exchange.protocolVersion = era.version === undefined ? undefined : protocolVersionLabel(era.version);
      }
    }
    return undefined;
  }

  /** Whether any tools/call in the body needs the server's tools/list before it is decided. */
  private callsUnlistedTool(server: string, messages: readonly JsonRpcMessage[]): boolean {
    for (const m of messages) {
      if (m.kind !== "request" || m.method !== "tools/call") continue;
      const name = m.params?.name;
      if (typeof name === "string" && this.security.needsToolList(server, name)) return true;
    }
    return false;
  }

  private decideRequest(
    exchange: Exchange,
    principal: Principal,
    server: string,
    message: JsonRpcRequest,
    era: ProtocolEra,
    roleApprovals: Map<JsonRpcRequest, string>,
  ): Denial | undefined {
    const methods = era === "2026" ? CLIENT_REQUEST_METHODS_2026 : CLIENT_REQUEST_METHODS;
    if (!methods.has(message.method)) return { reason: "method_unknown", detail: message.method };
    if (message.method === "subscriptions/listen")
      return this.decideListen(exchange, principal, server, message);
    const completion = completionTarget(message.method, message.params);
    if (completion) return this.decideCompletion(exchange, principal, server, message, completion);
    const target = requestTarget(message.method, message.params);
    if (!target) return undefined;
    if (target.name === undefined) {
      return { reason: "invalid_params", detail: missingTargetProblem(message.method, message.params) };
    }
    if (target.kind === "resources") {
      // Rules judge the URI the server will serve; only a URI already in that form is let through.
      const problem = resourceUriProblem(target.name);
      if (problem) return { reason: "resource_uri_invalid", detail: problem };
      exchange.resources.push(this.security.auditText(target.name));
    }
    let tool: RegistryTool | undefined;
    if (target.kind === "prompts") exchange.prompts.push(target.name);
    if (target.kind === "tools") {
      exchange.tools.push(target.name);
      const found = this.registry.tool(server, target.name, this.today());
      // Unregistered, deprecated and forbidden tools all read as unknown: do not reveal what exists.
      // Only an agent the rules allow to call a deprecated tool learns (in data.reason) why it is gone.
      if ("missing" in found) {
        if (found.missing === "unregistered") {
          return { reason: "tool_unknown", detail: target.name, cause: "not_registered" };
        }
        const access = this.rbac.decide({
          principal,
          server,
          kind: "tools",
          name: target.name,
          arguments: objectArguments(message),
        });
        // Past its deprecation date the tool is gone for everyone; the cause says so either way.
        const reason = access.allowed ? "tool_deprecated" : "tool_unknown";
        return { reason, detail: target.name, cause: "deprecated" };
      }
      tool = found.tool;
    }
    const args = message.params?.arguments;
    const access = this.rbac.decide({
      principal,
      server,
      kind: target.kind,
      name: target.name,
      arguments:
        typeof args === "object" && args !== null && !Array.isArray(args)
          ? (args as Record<string, unknown>)
          : undefined,
    });
    if (!access.allowed) {
      // A subject the agent's own list shows (an allow rule names it and its condition could
      // hold), refused by a condition on this call: "unknown" would contradict the list and read
      // as a gateway bug, and saying "refused" reveals nothing the list did not. The condition's
      // text stays in the audit record's cause.
      if (this.rbac.mayList(principal, server, target.kind, target.name)) {
        return { reason: "policy_denied", detail: undefined, cause: access.cause };
      }
      const reason =
        target.kind === "tools"
          ? "tool_unknown"
          : target.kind === "prompts"
            ? "prompt_unknown"
            : "resource_unknown";
      return { reason, detail: target.name, cause: access.cause };
    }
    if (access.approval !== undefined) roleApprovals.set(message, access.approval);
    const denial = this.security.checkRequest(
      exchange,
      server,
      message.method,
      target.name,
      message.params,
      tool,
    );
    if (denial) return denial;
    // A 2026-07-28 retry carries what the client gathered for the server's input requests
    // (elicitation answers, sampling output, roots): the same checks as arguments.
    const inputResponses = message.params?.inputResponses;
    if (inputResponses === undefined) return undefined;
    return this.security.checkInputResponses(exchange, server, target.name, inputResponses);
  }

  /**
   * `completion/complete` runs the completer of a prompt or resource template, so it is decided as
   * that prompt or template would be (security review F6): a denied or unknown prompt reads as
   * unknown, and its completer never runs.
   */
  private decideCompletion(
    exchange: Exchange,
    principal: Principal,
    server: string,
    message: JsonRpcRequest,
    target: { kind: "prompts" | "resources"; name: string | undefined },
  ): Denial | undefined {
    if (target.name === undefined) {
      return { reason: "invalid_params", detail: missingTargetProblem(message.method, message.params) };
    }
    if (target.kind === "resources") {
      const problem = resourceTemplateProblem(target.name);
      if (problem) return { reason: "resource_uri_invalid", detail: problem };
      exchange.resources.push(this.security.auditText(target.name));
    }
    const access = this.rbac.decide({ principal, server, kind: target.kind, name: target.name });
    if (!access.allowed) {
      return {
        reason: target.kind === "prompts" ? "prompt_unknown" : "resource_unknown",
        detail: target.name,
        cause: access.cause,
      };
    }
    return this.security.checkRequest(
      exchange,
      server,
      message.method,
      target.name,
      message.params,
      undefined,
    );
  }

  /**
   * `subscriptions/listen` opens the 2026-07-28 notification stream (the GET stream of 2025):
   * allowed to any agent that may reach the server, but each resource it subscribes to must be
   * one the agent may read, as `resources/subscribe` must.
   */
  private decideListen(
    exchange: Exchange,
    principal: Principal,
    server: string,
    message: JsonRpcRequest,
  ): Denial | undefined {
    const uris = listenResourceSubscriptions(message.params);
    if (uris === undefined) {
      return { reason: "invalid_params", detail: "'notifications.resourceSubscriptions' must list URIs" };
    }
    for (const uri of uris) {
      const problem = resourceUriProblem(uri);
      if (problem) return { reason: "resource_uri_invalid", detail: problem };
      exchange.resources.push(this.security.auditText(uri));
      const access = this.rbac.decide({ principal, server, kind: "resources", name: uri });
      if (!access.allowed) return { reason: "resource_unknown", detail: uri, cause: access.cause };
    }
    return undefined;
  }

  /**
   * Refuses a body the core let through but a later step stopped (a spent budget): the requests
   * in `refused` (idKey) get `reason`, with `data` beside reason and request_id; the others of a
   * batch get `batch_rejected`. Nothing of the body is forwarded, so nothing stays pending.
   */
  refuseForwarded(
    exchange: Exchange,
    batch: boolean,
    refused: ReadonlySet<string>,
    reason: Reason,
    detail?: string,
    data: Record<string, unknown> = {},
  ): HttpReply {
    denyExchange(exchange, reason);
    const answers = [...exchange.pending.keys()].map((key) => {
      const why = refused.has(key) ? reason : "batch_rejected";
      const info = Reasons[why];
      return errorResponse(
        idOfKey(key),
        info.code,
        why === reason && detail ? `${info.message}: ${detail}` : info.message,
        {
          reason: why,
          request_id: exchange.requestId,
          ...(why === reason ? data : {}),
        },
      );
    });
    exchange.pending.clear();
    return jsonReply(200, batch ? answers : answers[0]);
  }

  /**
   * A GET resuming a stream (`Last-Event-ID`, SEP-1699): opens the gateway-sealed id, so the
   * answers the resumed stream replays are matched to their requests and inspected under their
   * settings. Returns the `Last-Event-ID` to send the upstream: its own id, or undefined (send
   * none) when the id was not sealed here for this agent, server and session, which the upstream
   * then treats as a fresh stream.
   */
  resumeStream(exchange: Exchange, headers: HeaderMap): string | undefined {
    const sealed = headers["last-event-id"];
    if (sealed === undefined) return undefined;
    exchange.sessionId = headers["mcp-session-id"];
    const opened = this.resumption.open(exchange, sealed.trim());
    if (!opened) {
      countOn(exchange, "resumption_refused");
      return undefined;
    }
    for (const [key, request] of opened.pending) exchange.pending.set(key, request);
    countOn(exchange, "streams_resumed");
    return opened.upstreamEventId;
  }

  /** Inspects and rewrites the upstream's response (JSON or SSE) for this exchange. */
  responseTransformer(
    exchange: Exchange,
    contentType: string | undefined,
    status: number,
  ): ResponseTransformer {
    return new ResponseTransformer(this, exchange, contentType, status);
  }

  /** The UTC date as YYYY-MM-DD, formatted once per day (it is asked for on every tools/call). */
  today(): string {
    const now = this.now();
    if (now < this.dayStart || now >= this.dayStart + 86_400_000) {
      this.dayStart = now - (now % 86_400_000);
      this.day = new Date(now).toISOString().slice(0, 10);
    }
    return this.day;
  }
  private dayStart = Infinity;
  private day = "";
}
