import { LRUCache } from "lru-cache";
import { openSealedJson, type SessionOwner, type SessionSealer } from "../policy/session-seal.js";
import { isPlainObject } from "../mcp/jsonrpc.js";

/**
 * A 2025-era session of the aggregated endpoint, as its sealed `Mcp-Session-Id` carries it. The
 * gateway owns the session: the id is sealed (AES-256-GCM, policy/session-seal.ts) for the agent,
 * its issuer and the view, and holds everything a replica needs to serve it with no shared store:
 * the protocol revision and client capabilities the client initialized with, and the session the
 * broker opened on each server's `/mcp/<server>` route (itself a gateway-sealed id for this agent),
 * and when the session ends (`broker.sessionTtl` after initialize), which also bounds how long a
 * DELETE must be remembered (Broker: the revocation).
 */
export interface BrokerSession {
  protocolVersion: string;
  clientCapabilities: Record<string, unknown>;
  clientInfo: { name: string; version: string };
  /** Per server: the session id `/mcp/<server>` gave the broker at initialize. */
  hops: Record<string, string>;
  /** When (ms since the epoch) the id stops opening. */
  expiresAt: number;
  /**
   * The optional capabilities (`completions`, `logging`) the aggregate told the client at
   * initialize, from the servers that answered it then: a replica that restores the session
   * serves the same. Absent in ids sealed before it was kept: both, as they were told then.
   */
  offers?: string[];
}

/**
 * Sessions ended with DELETE, as every replica must know them: the sealed id itself stays valid
 * until it expires, so its end is recorded in the shared state store (runtime/gateway-state.ts).
 * Both methods reject when the store cannot be reached.
 */
export interface SessionRevocations {
  /** Records that session `id` ended; kept until `untilMs` (ms since the epoch), its expiry. */
  revoke(id: string, untilMs: number): Promise<void>;
  /** Whether session `id` was ended on any replica. */
  revoked(id: string): Promise<boolean>;
}

/** The owner of a broker session: the view takes the place of the server. */
export function brokerSessionOwner(
  issuer: string | undefined,
  agent: string,
  view: string | undefined,
): SessionOwner {
  // "broker:" cannot begin a server name (DNS labels have no ':'), so no single-server id opens here.
  return { issuer, agent, server: `broker:${view ?? ""}` };
}

export function sealBrokerSession(
  sealer: SessionSealer,
  owner: SessionOwner,
  session: BrokerSession,
): string {
  return sealer.seal(
    owner,
    JSON.stringify([
      session.protocolVersion,
      session.clientCapabilities,
      session.clientInfo,
      session.hops,
      session.expiresAt,
      ...(session.offers === undefined ? [] : [session.offers]),
    ]),
  );
}

/** The session a sealed id carries, or undefined when it is not this owner's or has expired at `now`. */
export function openBrokerSession(
  sealer: SessionSealer,
  sealed: string,
  owner: SessionOwner,
  now: number,
): BrokerSession | undefined {
  const value = openSealedJson(sealer, sealed, owner);
  // Ids sealed without an expiry (before it existed) no longer open: clients start a new session.
  if (!Array.isArray(value) || (value.length !== 5 && value.length !== 6)) return undefined;
  const [protocolVersion, clientCapabilities, clientInfo, hops, expiresAt, offers] = value as unknown[];
  if (offers !== undefined && !(Array.isArray(offers) && offers.every((o) => typeof o === "string")))
    return undefined;
  if (typeof protocolVersion !== "string" || !isPlainObject(clientCapabilities) || !isPlainObject(hops))
    return undefined;
  if (typeof expiresAt !== "number" || !Number.isSafeInteger(expiresAt) || expiresAt <= now) return undefined;
  if (
    !isPlainObject(clientInfo) ||
    typeof clientInfo.name !== "string" ||
    typeof clientInfo.version !== "string"
  )
    return undefined;
  const hopIds: Record<string, string> = {};
  for (const [server, id] of Object.entries(hops)) if (typeof id === "string") hopIds[server] = id;
  return {
    protocolVersion,
    clientCapabilities,
    clientInfo: { name: clientInfo.name, version: clientInfo.version },
    hops: hopIds,
    expiresAt,
    ...(offers === undefined ? {} : { offers: offers as string[] }),
  };
}

interface Opened {
  sealer: SessionSealer;
  issuer: string | undefined;
  agent: string;
  server: string;
  session: BrokerSession;
}

/**
 * The sessions sealed ids opened to in this process, so a session's every request does not
 * decrypt and parse its id again. An entry is the result of an open that succeeded: keyed by the
 * whole sealed id (authenticated ciphertext: a changed byte is another key), it is used only with
 * the same sealer (a reload that changes the keys makes a new one) and exactly the same owner, so
 * it answers what opening again would. The expiry is checked at every use, as opening checks it;
 * an id that fails to open is not kept.
 */
export class OpenedBrokerSessions {
  private readonly opened: LRUCache<string, Opened>;

  constructor(max: number) {
    this.opened = new LRUCache<string, Opened>({ max });
  }

  /** openBrokerSession, answered from an earlier successful open when there is one. */
  open(sealer: SessionSealer, sealed: string, owner: SessionOwner, now: number): BrokerSession | undefined {
    const held = this.opened.get(sealed);
    if (
      held !== undefined &&
      held.sealer === sealer &&
      held.issuer === owner.issuer &&
      held.agent === owner.agent &&
      held.server === owner.server
    ) {
      if (held.session.expiresAt > now) return held.session;
      this.opened.delete(sealed);
      return undefined;
    }
    const session = openBrokerSession(sealer, sealed, owner, now);
    if (session !== undefined)
      this.opened.set(sealed, {
        sealer,
        issuer: owner.issuer,
        agent: owner.agent,
        server: owner.server,
        session,
      });
    return session;
  }

  clear(): void {
    this.opened.clear();
  }
}
