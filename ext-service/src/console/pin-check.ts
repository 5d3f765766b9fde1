import type { GatewayEngine } from "../config/compile.js";
import type { PinVerifier } from "../upstream/pin-verifier.js";

/**
 * "Check pins now" on the console's Registry page (POST /console/api/registry/check): each
 * server's tools/list fetched at once and compared with the pins by the code the data planes run
 * before a call (upstream/pin-verifier.ts with security.pins.verifyBeforeCall), so the result is
 * recorded exactly as theirs is: a drifted tool is refused from then on, a tool that matches is
 * vouched for during `security.pins.verifiedFor`, a server that cannot be listed refuses calls
 * that need a check for a few seconds, as after a failed check before a call.
 */

export interface ServerPinCheck {
  server: string;
  /** matches: every registered tool the server lists matches its pin. */
  result: "matches" | "drifted" | "unlisted" | "failed" | "skipped";
  /** The upstream that answered. */
  upstream: string | null;
  /** How many tools the server listed. */
  listed: number | null;
  drifted: { tool: string; fields: string[] }[];
  /** Registered tools the server's tools/list does not offer. */
  unlisted: string[];
  /** Why the check failed or was skipped. */
  cause: string | null;
}

export interface PinCheckReport {
  checked_at: string;
  pins_enforced: boolean;
  servers: ServerPinCheck[];
}

/** The servers to check: every registered one, or those `wanted` names (an unknown name is an error). */
export function serversToCheck(
  engine: GatewayEngine,
  wanted: readonly string[] | undefined,
): { ok: true; servers: string[] } | { ok: false; message: string } {
  const all = engine.registry.serverNames();
  if (wanted === undefined) return { ok: true, servers: all };
  const unknown = wanted.filter((s) => !all.includes(s));
  if (unknown.length > 0) return { ok: false, message: `Not a registered server: ${unknown.join(", ")}` };
  return { ok: true, servers: [...new Set(wanted)] };
}

export async function checkPinsNow(
  engine: GatewayEngine,
  verifier: PinVerifier,
  servers: readonly string[],
): Promise<PinCheckReport> {
  const results = await Promise.all(servers.map((server) => checkServer(engine, verifier, server)));
  return {
    checked_at: new Date().toISOString(),
    pins_enforced: engine.config.security.pins.enforce,
    servers: results,
  };
}

async function checkServer(
  engine: GatewayEngine,
  verifier: PinVerifier,
  server: string,
): Promise<ServerPinCheck> {
  const none = { upstream: null, listed: null, drifted: [], unlisted: [] };
  if (engine.registry.server(server)?.config.upstream?.tokenExchange !== undefined) {
    // Its tools/list needs a token exchanged for a calling agent; the console has none, and a
    // refusal here would be recorded as a failed check and refuse agents' calls for a while.
    return {
      server,
      result: "skipped",
      ...none,
      cause:
        "its upstream takes a per-agent exchanged token (upstream.tokenExchange): it is checked before agents' calls, with theirs",
    };
  }
  const check = await verifier.verify(engine, server);
  if (!check.ok) return { server, result: "failed", ...none, cause: check.cause };
  const drifted = check.drifted.map((tool) => {
    const status = engine.security.pinStatus(server, tool);
    return { tool, fields: status.state === "drifted" ? [...status.drift.fields] : [] };
  });
  return {
    server,
    result: drifted.length > 0 ? "drifted" : check.unlisted.length > 0 ? "unlisted" : "matches",
    upstream: check.upstream,
    listed: check.tools,
    drifted,
    unlisted: check.unlisted,
    cause: null,
  };
}
