import { decodeJwt } from "jose";
import type { Principal } from "./identity.js";
import { SEALED_PREFIX } from "./seal.js";
import type { SessionSealer } from "./session-seal.js";

/**
 * The identity the aggregated endpoint (the broker) presents on its hop to `/mcp/<server>`.
 *
 * The broker has already authenticated the agent; each hop must be decided for that agent by the
 * same per-server path a direct client gets, without the agent's token travelling any further.
 * So the broker seals the principal (agent, issuer, roles) for one server and a short lifetime
 * with the gateway's session keys (AES-256-GCM, policy/session-seal.ts): only a process holding
 * those keys can mint one, a changed byte or another server's route reads as invalid, and every
 * replica with the same `sessions.keys` accepts it (behind Envoy, ext_authz may run on another
 * replica than the broker).
 *
 * A server that takes a per-agent credential by token exchange (registry
 * `upstream.tokenExchange`) needs the agent's own token as the exchange's subject_token. For such
 * a server only, the hop also seals the agent's verified bearer token, and no longer than that
 * token is valid: the per-server path opens it, verifies it again as a direct token
 * (PolicyEngine.admit) and hands it to the exchange. It stays inside the sealed value (ciphertext
 * under the gateway's keys) on the hop, which is stripped before the request goes upstream like
 * any bearer value; no hop to any other server carries it.
 */

/** Owner data for hop tokens: no agent-chosen name can produce it (the issuer is reserved). */
const HOP_ISSUER = "mcp-gateway/broker-hop v1";

// The longest hop token minted or opened, and why it fits every listener on the way.
export { MAX_HOP_TOKEN_LENGTH } from "./header-limits.js";

/**
 * Set (to "1") on the upstream request of a hop admitted with a hop identity, by the gateway
 * only (client copies of every x-mcp-* header are stripped): behind Envoy, the global rate
 * limit's descriptor carries it, so the hop is not counted again (envoy/ratelimit.ts).
 */
export const VIA_BROKER_HEADER = "x-mcp-via-broker";

/** What a hop token carries. */
interface HopClaims {
  agent: string;
  issuer: string | null;
  roles: string[];
  anonymous: boolean;
  /** Expiry, epoch milliseconds. */
  exp: number;
  /** The agent's verified bearer token: only on hops to token-exchange servers. */
  sub?: string;
}

/** An opened hop token. */
export interface OpenedHop {
  principal: Principal;
  /**
   * The agent's bearer token sealed for a token-exchange server (not yet verified again: the
   * caller does that before using it); undefined on hops to every other server.
   */
  subjectToken: string | undefined;
}

/** A JWT's `exp` in epoch milliseconds, if it has one that can be read. */
function expiryOf(token: string): number | undefined {
  try {
    const { exp } = decodeJwt(token);
    return typeof exp === "number" ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

/** A bearer value is a hop token when it has the sealer's prefix (agents' JWTs start with "eyJ"). */
export function isHopToken(token: string): boolean {
  return token.startsWith(SEALED_PREFIX);
}

export class HopTokens {
  /**
   * `carriesSubject(server)`: whether hops to `server` carry the agent's token (the server takes a
   * per-agent credential by token exchange). `sealer` must open values of MAX_HOP_TOKEN_LENGTH.
   */
  constructor(
    private readonly sealer: SessionSealer,
    private readonly ttlMs: number,
    private readonly now: () => number,
    private readonly carriesSubject: (server: string) => boolean = () => false,
  ) {}

  /** Whether hops to `server` carry the agent's token (the server exchanges it for a credential). */
  sealsSubject(server: string): boolean {
    return this.carriesSubject(server);
  }

  /**
   * A token that speaks for `principal` on `server`'s route only, until the TTL runs out.
   * `agentToken` is the bearer token `principal` was verified from; it is sealed in only when
   * `server` exchanges it, and the hop then expires no later than it (its `exp` claim). The result
   * depends on `agentToken` for those servers: a cache of minted tokens must key on it too.
   */
  mint(principal: Principal, server: string, agentToken?: string): string {
    // Rounded to the second: the same principal reuses one token within a second (synthetic IV).
    let exp = Math.ceil((this.now() + this.ttlMs) / 1000) * 1000;
    const sub =
      agentToken !== undefined && !principal.anonymous && this.carriesSubject(server)
        ? agentToken
        : undefined;
    if (sub !== undefined) {
      // The token's own expiry (it may be newer than the one `principal` came from, in a 2025
      // session); read unverified only to shorten the hop: the hop's path verifies the token.
      const tokenExp = expiryOf(sub);
      if (tokenExp !== undefined) exp = Math.min(exp, tokenExp);
    }
    const claims: HopClaims = {
      agent: principal.agent,
      issuer: principal.issuer ?? null,
      roles: [...principal.roles],
      anonymous: principal.anonymous,
      exp,
      ...(sub !== undefined ? { sub } : {}),
    };
    return this.sealer.seal({ issuer: HOP_ISSUER, agent: "", server }, JSON.stringify(claims));
  }

  /** What a token speaks for on `server`, or undefined (foreign, tampered, expired, other server). */
  open(token: string, server: string): OpenedHop | undefined {
    const content = this.sealer.open(token, { issuer: HOP_ISSUER, agent: "", server });
    if (content === undefined) return undefined;
    let claims: HopClaims;
    try {
      claims = JSON.parse(content) as HopClaims;
    } catch {
      return undefined;
    }
    if (typeof claims.exp !== "number" || claims.exp <= this.now()) return undefined;
    if (typeof claims.agent !== "string" || !Array.isArray(claims.roles)) return undefined;
    if (claims.sub !== undefined && typeof claims.sub !== "string") return undefined;
    const principal: Principal = Object.freeze({
      agent: claims.agent,
      roles: Object.freeze(claims.roles.filter((r): r is string => typeof r === "string")),
      claims: Object.freeze({}),
      issuer: typeof claims.issuer === "string" ? claims.issuer : undefined,
      anonymous: claims.anonymous === true,
      viaBroker: true,
    });
    return { principal, subjectToken: claims.sub };
  }
}
