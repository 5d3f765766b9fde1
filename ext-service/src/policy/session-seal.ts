import { Sealer } from "./seal.js";

/**
 * Gateway-owned session ids. The client never sees an MCP server's own `Mcp-Session-Id`: the
 * gateway seals it (policy/seal.ts, AES-256-GCM) together with whatever routing it needs, and
 * binds the sealed id to the session's owner (issuer, agent, server) as associated data. Such an
 * id opens only for that owner and only with a key the gateway holds, so
 *   - another agent that learns the id cannot use it (it reads as an unknown session),
 *   - a changed byte reads the same way (the tag fails),
 *   - every replica with the same keys serves it, with no shared store.
 * Keys rotate: the first key seals, every key opens (ids say which key sealed them).
 */

/** Who a session belongs to. A sealed id opens only for exactly this owner. */
export interface SessionOwner {
  /** Undefined for the anonymous principal of `auth.mode: optional`. */
  issuer: string | undefined;
  agent: string;
  /** The server name in the route, or the name of an aggregated view. */
  server: string;
}

/** A sealed id longer than this is not one of ours: refused before any decoding. */
export const MAX_SEALED_LENGTH = 4096;

function ownerData(owner: SessionOwner): Buffer {
  // JSON of an array: unambiguous whatever the names contain.
  return Buffer.from(
    JSON.stringify(["mcp-gateway session v1", owner.issuer ?? null, owner.agent, owner.server]),
  );
}

export class SessionSealer {
  private readonly sealer: Sealer;

  /**
   * `secrets[0]` seals; all of them open (the rest are previous keys, kept while ids age out).
   * `maxLength` bounds what `open` decodes (hop tokens that carry an agent's token need more).
   */
  constructor(secrets: readonly (string | Uint8Array)[], maxLength: number = MAX_SEALED_LENGTH) {
    this.sealer = new Sealer(secrets, "session", maxLength);
  }

  /** Seals `content` (e.g. an upstream session id) for `owner`; the result is a valid header value. */
  seal(owner: SessionOwner, content: string): string {
    return this.sealer.seal(ownerData(owner), content);
  }

  /**
   * The content sealed for `owner`, or undefined when `sealed` is not an id this gateway sealed
   * for this owner with a key it still holds (foreign, tampered, another owner's, or malformed).
   */
  open(sealed: string, owner: SessionOwner): string | undefined {
    return this.sealer.open(sealed, ownerData(owner));
  }
}

/** What a single-server session id carries: the server's own id and the replica that owns it. */
export interface UpstreamSession {
  /** The MCP server's `Mcp-Session-Id`. */
  upstream: string;
  /** Which of the server's upstream URLs created the session (the edge routes the session there). */
  endpoint?: string;
}

export function sealUpstreamSession(
  sealer: SessionSealer,
  owner: SessionOwner,
  session: UpstreamSession,
): string {
  return sealer.seal(
    owner,
    JSON.stringify(
      session.endpoint === undefined ? [session.upstream] : [session.upstream, session.endpoint],
    ),
  );
}

export function openUpstreamSession(
  sealer: SessionSealer,
  sealed: string,
  owner: SessionOwner,
): UpstreamSession | undefined {
  const value = openSealedJson(sealer, sealed, owner);
  if (!Array.isArray(value) || typeof value[0] !== "string") return undefined;
  return typeof value[1] === "string" ? { upstream: value[0], endpoint: value[1] } : { upstream: value[0] };
}

/** The JSON value sealed for this owner, or undefined when the id is foreign, altered or not JSON. */
export function openSealedJson(sealer: SessionSealer, sealed: string, owner: SessionOwner): unknown {
  const content = sealer.open(sealed, owner);
  if (content === undefined) return undefined;
  try {
    return JSON.parse(content) as unknown;
  } catch {
    return undefined;
  }
}
