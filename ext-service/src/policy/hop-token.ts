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
 */

/** Owner data for hop tokens: no agent-chosen name can produce it (the issuer is reserved). */
const HOP_ISSUER = "mcp-gateway/broker-hop v1";

/** What a hop token carries. */
interface HopClaims {
  agent: string;
  issuer: string | null;
  roles: string[];
  anonymous: boolean;
  /** Expiry, epoch milliseconds. */
  exp: number;
}

/** A bearer value is a hop token when it has the sealer's prefix (agents' JWTs start with "eyJ"). */
export function isHopToken(token: string): boolean {
  return token.startsWith(SEALED_PREFIX);
}

export class HopTokens {
  constructor(
    private readonly sealer: SessionSealer,
    private readonly ttlMs: number,
    private readonly now: () => number,
  ) {}

  /** A token that speaks for `principal` on `server`'s route only, until the TTL runs out. */
  mint(principal: Principal, server: string): string {
    const claims: HopClaims = {
      agent: principal.agent,
      issuer: principal.issuer ?? null,
      roles: [...principal.roles],
      anonymous: principal.anonymous,
      // Rounded to the second: the same principal reuses one token within a second (synthetic IV).
      exp: Math.ceil((this.now() + this.ttlMs) / 1000) * 1000,
    };
    return this.sealer.seal({ issuer: HOP_ISSUER, agent: "", server }, JSON.stringify(claims));
  }

  /** The principal a token speaks for on `server`, or undefined (foreign, tampered, expired, other server). */
  open(token: string, server: string): Principal | undefined {
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
    return Object.freeze({
      agent: claims.agent,
      roles: Object.freeze(claims.roles.filter((r): r is string => typeof r === "string")),
      claims: Object.freeze({}),
      issuer: typeof claims.issuer === "string" ? claims.issuer : undefined,
      anonymous: claims.anonymous === true,
      viaBroker: true,
    });
  }
}
