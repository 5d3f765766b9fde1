import type { Principal } from "./identity.js";
import type { TokenExchangeSettings } from "./upstream-credentials.js";

/**
 * The core's half of per-agent upstream credentials (registry `upstream.tokenExchange`): which
 * hop needs a token exchanged, for whom, and under which cache key. The exchange itself (HTTP to
 * the token endpoint, the cache) is an adapter's (upstream/token-exchange.ts).
 */
export interface TokenExchangeNeed {
  server: string;
  settings: TokenExchangeSettings;
  /** The agent's verified bearer token: sent to the token endpoint only, never upstream. */
  subjectToken: string;
  /** Who the issued token speaks for and what it is for; holds no secret. */
  key: string;
}

/**
 * The cache key of an issued token: one per server, token endpoint and client, agent (namespaced
 * by its issuer) and audience, resource and scope. A reload that changes any of them misses the
 * cache rather than reuse a token issued under other settings.
 */
export function tokenExchangeKey(
  server: string,
  settings: TokenExchangeSettings,
  principal: Principal,
): string {
  return JSON.stringify([
    server,
    settings.tokenEndpoint,
    settings.clientId,
    principal.issuer ?? null,
    principal.agent,
    settings.audience ?? null,
    settings.resource ?? null,
    settings.scope ?? null,
    settings.subjectTokenType,
  ]);
}

/** The upstream header an issued token travels in: `Authorization: Bearer <token>`, or the bare token. */
export function issuedTokenHeader(settings: TokenExchangeSettings, token: string): Record<string, string> {
  return { [settings.header]: settings.header === "authorization" ? `Bearer ${token}` : token };
}
