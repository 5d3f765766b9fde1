import { LRUCache } from "lru-cache";
import { request } from "undici";
import {
  issuedTokenHeader,
  type IssuedCredential,
  type TokenExchangeNeed,
} from "../policy/token-exchange.js";
import type { TokenExchangeSettings } from "../policy/upstream-credentials.js";
import type { Logger } from "../telemetry/logger.js";
import type { Metrics } from "../telemetry/metrics.js";

/**
 * The adapter half of per-agent upstream credentials: OAuth 2.0 Token Exchange (RFC 8693) at a
 * server's configured token endpoint, and the cache of what it issues. The core decides which hop
 * needs an exchange and for whom (policy/token-exchange.ts); this only talks to the endpoint.
 *
 * Never logged, in any message: the agent's token, the client secret, the issued token.
 */

export const TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange";

export type ExchangeOutcome =
  | { ok: true; headers: Readonly<Record<string, string>>; token: string }
  /** `cause` is the audit cause (docs/REASONS.md): `token_exchange_*`. */
  | { ok: false; cause: string };

export interface TokenExchangerOptions {
  /** Issued tokens held at most (one per agent and server); the least recently used go first. */
  maxEntries?: number;
  /** How long a failed exchange is answered from memory, so a burst does not hammer a failing endpoint. */
  failureTtlMs?: number;
  /** Where `mcp_gateway_token_exchanges_total` is counted. */
  metrics?: Pick<Metrics, "tokenExchanges">;
  now?: () => number;
}

interface Issued extends IssuedCredential {
  /** Epoch ms after which the token is exchanged again (its expiry less the refresh skew). */
  refreshAt: number;
}

/**
 * The `reason` label of a failed exchange: the kind of its audit cause, without the endpoint's
 * own error code (`token_exchange_refused:invalid_grant` is `refused`), so the labels stay few.
 */
function failureLabel(cause: string): string {
  const colon = cause.indexOf(":");
  return (colon < 0 ? cause : cause.slice(0, colon)).replace(/^token_exchange_/, "");
}

/** Token responses larger than this are not tokens: read no further. */
const MAX_RESPONSE_BYTES = 64 * 1024;
/** A token is one header value: visible ASCII, bounded. */
const TOKEN_SHAPE = /^[\x21-\x7e]{1,8192}$/;
const OAUTH_ERROR_CODE = /^[a-z_]{1,64}$/;
const TOKEN_TYPE_URI = /^urn:ietf:params:oauth:token-type:[a-z0-9_-]{1,64}$/;

class ExchangeFailure extends Error {
  constructor(readonly auditCause: string) {
    super(auditCause);
  }
}

export class TokenExchanger {
  private readonly issued: LRUCache<string, Issued>;
  private readonly failed: LRUCache<string, string>;
  private readonly inflight = new Map<string, Promise<ExchangeOutcome>>();
  private readonly now: () => number;
  private readonly failureTtlMs: number;
  private readonly metrics: Pick<Metrics, "tokenExchanges"> | undefined;

  constructor(
    private readonly logger: Logger,
    options: TokenExchangerOptions = {},
  ) {
    this.now = options.now ?? Date.now;
    this.failureTtlMs = options.failureTtlMs ?? 1000;
    this.metrics = options.metrics;
    this.issued = new LRUCache({ max: options.maxEntries ?? 10_000 });
    this.failed = new LRUCache({ max: options.maxEntries ?? 10_000 });
  }

  /**
   * The credential header for one hop: from the cache while the issued token is fresh, else
   * from one exchange shared by every concurrent request with the same key. Never rejects.
   * Each call is counted once: `issued` (this call's exchange), `cached` (no exchange of its
   * own: the cache, or one already under way) or `failed` with the failure's kind.
   */
  credential(need: TokenExchangeNeed): Promise<ExchangeOutcome> {
    const fresh = this.cached(need.key);
    if (fresh) {
      this.count(need.server, "cached");
      return Promise.resolve({ ok: true, headers: fresh.headers, token: fresh.token });
    }
    const failure = this.failed.get(need.key);
    if (failure !== undefined) {
      this.count(need.server, "failed", failure);
      return Promise.resolve({ ok: false, cause: failure });
    }
    const running = this.inflight.get(need.key);
    if (running) {
      return running.then((outcome) => {
        this.count(need.server, outcome.ok ? "cached" : "failed", outcome.ok ? undefined : outcome.cause);
        return outcome;
      });
    }
    const started = this.exchange(need).finally(() => this.inflight.delete(need.key));
    this.inflight.set(need.key, started);
    return started.then((outcome) => {
      this.count(need.server, outcome.ok ? "issued" : "failed", outcome.ok ? undefined : outcome.cause);
      return outcome;
    });
  }

  private count(server: string, outcome: "issued" | "cached" | "failed", cause?: string): void {
    this.metrics?.tokenExchanges.inc(
      cause === undefined ? { server, outcome } : { server, outcome, reason: failureLabel(cause) },
    );
  }

  /** A fresh issued token under `key`, if one is held (ext_proc's pin check reuses ext_authz's). */
  cached(key: string): Issued | undefined {
    const entry = this.issued.get(key);
    if (entry && entry.refreshAt > this.now()) return entry;
    if (entry) this.issued.delete(key);
    return undefined;
  }

  private async exchange(need: TokenExchangeNeed): Promise<ExchangeOutcome> {
    const { settings } = need;
    try {
      const answer = await postExchange(need.subjectToken, settings);
      const token = answer.token;
      const headers = issuedTokenHeader(settings, token);
      if (answer.expiresInS !== undefined) {
        const refreshAt = this.now() + answer.expiresInS * 1000 - settings.refreshSkewMs;
        // A token that expires within the skew is used once and not kept.
        if (refreshAt > this.now()) this.issued.set(need.key, { token, headers, refreshAt });
      }
      this.logger.debug(
        { server: need.server, expires_in: answer.expiresInS, issued_token_type: answer.issuedType },
        "token exchange: issued a credential for the server",
      );
      return { ok: true, headers, token };
    } catch (err) {
      const cause = err instanceof ExchangeFailure ? err.auditCause : "token_exchange_unreachable";
      if (this.failureTtlMs > 0) this.failed.set(need.key, cause, { ttl: this.failureTtlMs });
      this.logger.warn(
        {
          server: need.server,
          token_endpoint: settings.tokenEndpoint,
          cause,
          // Network errors name a code (ECONNREFUSED); their messages hold no request data.
          ...(err instanceof ExchangeFailure ? {} : { error: describe(err) }),
        },
        "token exchange failed: requests to the server are refused",
      );
      return { ok: false, cause };
    }
  }
}

function describe(err: unknown): string {
  const code = (err as { code?: unknown }).code;
  return typeof code === "string" ? code : err instanceof Error ? err.name : "error";
}

/** RFC 6749 section 2.3.1: the client id and secret are form-urlencoded before Basic encoding. */
function basicAuth(settings: TokenExchangeSettings): string {
  const id = encodeURIComponent(settings.clientId);
  const secret = encodeURIComponent(settings.clientSecret);
  return `Basic ${Buffer.from(`${id}:${secret}`).toString("base64")}`;
}

interface ExchangeAnswer {
  token: string;
  issuedType: string;
  expiresInS: number | undefined;
}

async function postExchange(subjectToken: string, settings: TokenExchangeSettings): Promise<ExchangeAnswer> {
  const form = new URLSearchParams({
    grant_type: TOKEN_EXCHANGE_GRANT,
    subject_token: subjectToken,
    subject_token_type: settings.subjectTokenType,
  });
  if (settings.audience !== undefined) form.set("audience", settings.audience);
  if (settings.resource !== undefined) form.set("resource", settings.resource);
  if (settings.scope !== undefined) form.set("scope", settings.scope);
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, settings.timeoutMs);
  try {
    const res = await request(settings.tokenEndpoint, {
      method: "POST",
      headers: {
        authorization: basicAuth(settings),
        "content-type": "application/x-www-form-urlencoded",
        accept: "application/json",
        "cache-control": "no-store",
      },
      body: form.toString(),
      signal: controller.signal,
    });
    const text = await readBounded(res.body);
    if (res.statusCode !== 200)
      throw new ExchangeFailure(`token_exchange_refused:${refusal(res.statusCode, text)}`);
    return parseAnswer(text);
  } catch (err) {
    if (timedOut) throw new ExchangeFailure("token_exchange_timeout");
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

async function readBounded(body: AsyncIterable<Buffer> & { destroy(): unknown }): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    if (size > MAX_RESPONSE_BYTES) {
      body.destroy();
      throw new ExchangeFailure("token_exchange_malformed");
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** The OAuth `error` code of a refusal (RFC 6749 section 5.2), or the HTTP status. */
function refusal(status: number, text: string): string {
  try {
    const error = (JSON.parse(text) as { error?: unknown }).error;
    if (typeof error === "string" && OAUTH_ERROR_CODE.test(error)) return error;
  } catch {
    // not JSON: the status says enough
  }
  return `http_${status}`;
}

/** RFC 8693 section 2.2.1: a usable successful response, or token_exchange_malformed. */
function parseAnswer(text: string): ExchangeAnswer {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new ExchangeFailure("token_exchange_malformed");
  }
  if (typeof body !== "object" || body === null || Array.isArray(body))
    throw new ExchangeFailure("token_exchange_malformed");
  const { access_token, issued_token_type, token_type, expires_in } = body as Record<string, unknown>;
  const bearerOrNa =
    typeof token_type === "string" && (token_type.toLowerCase() === "bearer" || token_type === "N_A");
  const validExpiry =
    expires_in === undefined ||
    (typeof expires_in === "number" && Number.isFinite(expires_in) && expires_in > 0);
  if (
    typeof access_token !== "string" ||
    !TOKEN_SHAPE.test(access_token) ||
    typeof issued_token_type !== "string" ||
    !TOKEN_TYPE_URI.test(issued_token_type) ||
    !bearerOrNa ||
    !validExpiry
  ) {
    throw new ExchangeFailure("token_exchange_malformed");
  }
  return { token: access_token, issuedType: issued_token_type, expiresInS: expires_in as number | undefined };
}
