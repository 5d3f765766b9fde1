import { openSealedJson, type SessionOwner, type SessionSealer } from "../policy/session-seal.js";
import { isPlainObject } from "../mcp/jsonrpc.js";

/**
 * A 2025-era session of the aggregated endpoint, as its sealed `Mcp-Session-Id` carries it. The
 * gateway owns the session: the id is sealed (AES-256-GCM, policy/session-seal.ts) for the agent,
 * its issuer and the view, and holds everything a replica needs to serve it with no shared store:
 * the protocol revision and client capabilities the client initialized with, and the session the
 * broker opened on each server's `/mcp/<server>` route (itself a gateway-sealed id for this agent).
 */
export interface BrokerSession {
  protocolVersion: string;
  clientCapabilities: Record<string, unknown>;
  clientInfo: { name: string; version: string };
  /** Per server: the session id `/mcp/<server>` gave the broker at initialize. */
  hops: Record<string, string>;
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
    JSON.stringify([session.protocolVersion, session.clientCapabilities, session.clientInfo, session.hops]),
  );
}

export function openBrokerSession(
  sealer: SessionSealer,
  sealed: string,
  owner: SessionOwner,
): BrokerSession | undefined {
  const value = openSealedJson(sealer, sealed, owner);
  if (!Array.isArray(value) || value.length !== 4) return undefined;
  const [protocolVersion, clientCapabilities, clientInfo, hops] = value as unknown[];
  if (typeof protocolVersion !== "string" || !isPlainObject(clientCapabilities) || !isPlainObject(hops))
    return undefined;
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
  };
}
