import { CLIENT_CAPABILITIES_META_KEY, type ServerContext } from "@modelcontextprotocol/server";
import type { Principal } from "../policy/identity.js";
import { isPlainObject } from "../mcp/jsonrpc.js";
import type { AgentBearer } from "./hop-pool.js";
import type { BrokerSession } from "./session.js";

/** Who is asking, in which view, and what the client can do (for relaying server requests). */
export interface Scope {
  principal: Principal;
  view: string | undefined;
  modern: boolean;
  session: BrokerSession | undefined;
  /** The sealed id of the client's session (2025), for hop sessions opened after initialize. */
  sessionId: string | undefined;
  clientCapabilities: Record<string, unknown>;
  /**
   * 2026-07-28: the agent's `Mcp-Param-*` headers, checked against the arguments before the call
   * (Broker.paramHeadersRefused) and sent on the hop as they came.
   */
  paramHeaders?: Record<string, string>;
  /**
   * The agent's bearer token (verified by admitBroker): sealed into hops to token-exchange servers
   * only (policy/hop-token.ts), never sent anywhere as it is. In a 2025 session one holder shared
   * by every scope and hop of the session, so every hop, also a server's GET stream reopened
   * later, presents the token of the request that last touched the session (Broker.touch).
   */
  bearer: AgentBearer;
}

/** Server-to-client requests the broker relays from a server to the agent's client. */
export const RELAYED_REQUESTS = [
  ["elicitation/create", "elicitation"],
  ["sampling/createMessage", "sampling"],
  ["roots/list", "roots"],
] as const;

/**
 * The capabilities of RELAYED_REQUESTS the broker can relay to a 2026-07-28 client from a server
 * that speaks only 2025 (whose requests come on the call's stream, where that client takes none):
 * turned into `input_required` results (bridge.ts).
 */
export const BRIDGED_CAPABILITIES: ReadonlySet<string> = new Set(RELAYED_REQUESTS.map(([, c]) => c));

/**
 * What a 2026-07-28 request's hop declares in `initialize` to a server that speaks only 2025: of
 * what the request declares, only what the broker can relay to such a client. A server told it
 * may elicit but whose request cannot reach the client would find out mid-call (method not
 * found); told nothing, it knows not to ask.
 */
export function legacyHopCapabilities(declared: Record<string, unknown>): Record<string, unknown> {
  const capabilities: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(declared))
    if (BRIDGED_CAPABILITIES.has(name) || !RELAYED_REQUESTS.some(([, c]) => c === name))
      capabilities[name] = value;
  return capabilities;
}

/** The client capabilities a 2026-07-28 request declares in its envelope. */
export function requestCapabilities(ctx: ServerContext | undefined): Record<string, unknown> {
  const envelope = ctx?.mcpReq.envelope as Record<string, unknown> | undefined;
  const declared = envelope?.[CLIENT_CAPABILITIES_META_KEY];
  return isPlainObject(declared) ? declared : {};
}

/**
 * What a hop may ask of the agent's client: in 2025 what it declared at initialize (relayed as
 * server-to-client requests), in 2026-07-28 what this request declares (the server's
 * `input_required` results go back to the agent as they are).
 */
export function hopCapabilities(scope: Scope, ctx: ServerContext | undefined): Record<string, unknown> {
  const declared = scope.modern ? requestCapabilities(ctx) : scope.clientCapabilities;
  const capabilities: Record<string, unknown> = {};
  for (const [, capability] of RELAYED_REQUESTS) {
    if (declared[capability] !== undefined) capabilities[capability] = declared[capability];
  }
  return capabilities;
}

/**
 * A 2026-07-28 retry's answers to a server's `input_required` result: `inputResponses` and the
 * server's `requestState`, passed to the hop untouched (the server, or for an in-band approval the
 * hop's own per-server policy, verifies the state it issued; the name routes the retry to the
 * server that asked, as it routed the first round).
 */
export function retryParams(ctx: ServerContext): Record<string, unknown> {
  const state = ctx.mcpReq.requestState<unknown>();
  const responses = ctx.mcpReq.inputResponses;
  return {
    ...(responses !== undefined && Object.keys(responses).length > 0 ? { inputResponses: responses } : {}),
    ...(typeof state === "string" ? { requestState: state } : {}),
  };
}
