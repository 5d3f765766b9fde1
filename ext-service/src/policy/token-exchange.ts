import type { Principal } from "./identity.js";
import { Sealer } from "./seal.js";
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

/** An issued token and the upstream header it travels in. */
export interface IssuedCredential {
  token: string;
  headers: Readonly<Record<string, string>>;
}

/** A sealed credential longer than this is not one: an issued token is at most 8 KiB. */
const MAX_SEALED_CREDENTIAL = 64 * 1024;

/**
 * Behind Envoy, ext_authz sets the issued token upstream and ext_proc must know it for the same
 * request (DLP matches it in the answer; the pin check lists tools with it), possibly on another
 * replica. ext_authz seals it for that request and server into its dynamic metadata, which Envoy
 * forwards to ext_proc: AES-256-GCM under keys derived from `sessions.keys` for this purpose only,
 * so every replica with the keys opens it, a log line of the metadata shows ciphertext, and it
 * opens for no other request.
 */
export class IssuedCredentialSeal {
  private readonly sealer: Sealer;

  constructor(secrets: readonly (string | Uint8Array)[]) {
    this.sealer = new Sealer(secrets, "issued credential", MAX_SEALED_CREDENTIAL);
  }

  seal(requestId: string, server: string, credential: IssuedCredential): string {
    return this.sealer.seal(aad(requestId, server), JSON.stringify([credential.token, credential.headers]));
  }

  /** The credential sealed for this request and server, or undefined. */
  open(requestId: string, server: string, sealed: string): IssuedCredential | undefined {
    const content = this.sealer.open(sealed, aad(requestId, server));
    if (content === undefined) return undefined;
    try {
      const [token, headers] = JSON.parse(content) as [unknown, unknown];
      if (typeof token !== "string" || typeof headers !== "object" || headers === null) return undefined;
      const values = Object.values(headers);
      if (!values.every((v) => typeof v === "string")) return undefined;
      return { token, headers: headers as Record<string, string> };
    } catch {
      return undefined;
    }
  }
}

function aad(requestId: string, server: string): Buffer {
  return Buffer.from(JSON.stringify(["mcp-gateway issued credential v1", requestId, server]));
}
