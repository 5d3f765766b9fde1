import { SdkErrorCode } from "@modelcontextprotocol/client";
import { ProtocolError, type ServerContext } from "@modelcontextprotocol/server";
import { Reasons } from "../policy/reasons.js";
import { MAX_HOP_TOKEN_LENGTH } from "../policy/hop-token.js";
import { refusedInBand } from "./refusals.js";

// How a hop (an SDK client of /mcp/<server>) fails, and what the agent is told of each failure.

/** Refusals of a hop that say the server itself could not be reached or answered badly. */
export const SERVER_DOWN: ReadonlySet<unknown> = new Set([
  "upstream_unavailable",
  "upstream_timeout",
  "upstream_invalid_response",
  "breaker_open",
]);

/** Whether a hop's failure says its server is down (as the per-server path or the hop found it). */
export function serverDown(err: unknown, server: string): boolean {
  return SERVER_DOWN.has((relayedError(err, server).data as { reason?: unknown } | undefined)?.reason);
}

/**
 * A hop that failed without an answer from the per-server path (it could not connect, its
 * connection or stream broke mid-answer), or whose answer the SDK client refused (a malformed
 * result the per-server path let through): no per-server record has that failure. The request
 * it fails records it as the broker's own refusal when the agent is answered with it (hopBroken).
 */
export class HopBroken extends ProtocolError {
  constructor(
    readonly server: string,
    /**
     * upstream_unavailable, or upstream_invalid_response when the server answered but the SDK
     * client refused its result (`cause`: the SDK's words, for the log).
     */
    readonly reason: "upstream_unavailable" | "upstream_invalid_response" = "upstream_unavailable",
    cause?: unknown,
  ) {
    const info = Reasons[reason];
    super(info.code, info.message, { reason, server });
    if (cause !== undefined) this.cause = cause;
  }
}

/**
 * A JSON-RPC error from the hop (the per-server policy's answer, with its own record's request
 * id), passed to the agent as it is; any other failure is a HopBroken.
 */
export function relayedError(err: unknown, server: string): ProtocolError {
  if (err instanceof HopBroken) return err;
  const e = err as { code?: unknown; message?: unknown; data?: unknown };
  if (typeof e.code === "number" && Number.isInteger(e.code) && e.code < 0 && typeof e.message === "string") {
    return new ProtocolError(e.code, e.message, e.data);
  }
  const refusal = gatewayRefusal(err);
  if (refusal) return refusal;
  // The SDK client refused the server's result (a list page failing list-page.ts, a call result
  // failing the SDK's schema): the server answered, badly. The agent gets the reason; the log
  // gets the SDK's words (BrokerHops.dropped), which name the first problem and where it is.
  if (e.code === SdkErrorCode.InvalidResult) return new HopBroken(server, "upstream_invalid_response", err);
  return new HopBroken(server);
}

/**
 * The per-server path's own refusal that came as an HTTP error status (503 breaker_open, 504
 * upstream_timeout, 502 upstream_unavailable, 429, ...) rather than inside a JSON-RPC answer: the
 * SDK client throws it as an HTTP error holding the body, which is the gateway's JSON-RPC error
 * with its reason and its record's request id. The agent gets it as it is, retry hint included,
 * as a client of `/mcp/<server>` would.
 */
export function gatewayRefusal(err: unknown): ProtocolError | undefined {
  const error = hopHttpError(err)?.error;
  if (
    typeof error?.code !== "number" ||
    !Number.isInteger(error.code) ||
    typeof error.message !== "string" ||
    typeof error.data?.reason !== "string" ||
    !Object.hasOwn(Reasons, error.data.reason)
  )
    return undefined;
  return new ProtocolError(error.code, error.message, error.data);
}

/** A JSON-RPC error read from a hop's HTTP error body: nothing in it is trusted until checked. */
export interface HopJsonRpcError {
  code?: unknown;
  message?: unknown;
  data?: { reason?: unknown };
}

/**
 * The SDK client's error for a hop request answered with an HTTP error status: that status and
 * the JSON-RPC error of its body, when the body is one (the gateway's refusals are); undefined
 * for any other error.
 */
export function hopHttpError(err: unknown): { status: unknown; error?: HopJsonRpcError } | undefined {
  const e = err as { code?: unknown; data?: { status?: unknown; text?: unknown } } | null;
  // A 2026-07-28 hop's first request is its era probe: a 5xx to it is EraNegotiationFailed.
  const http =
    e?.code === SdkErrorCode.ClientHttpNotImplemented ||
    (e?.code === SdkErrorCode.EraNegotiationFailed && typeof e.data?.status === "number");
  if (!http) return undefined;
  const status = e.data?.status;
  try {
    const body = JSON.parse(typeof e.data?.text === "string" ? e.data.text : "") as {
      error?: HopJsonRpcError;
    } | null;
    return { status, error: body?.error };
  } catch {
    return { status };
  }
}

/**
 * The error a request of the agent is answered with when its hop failed: a HopBroken is audited
 * on the request (upstream_unavailable or upstream_invalid_response, an error) and carries its request id, as the per-server
 * path's own errors carry theirs. Only where the failure reaches the agent: a list leaves a
 * failed server out instead.
 */
export function hopBroken(ctx: ServerContext | undefined): (err: unknown) => never {
  return (err) => {
    if (!(err instanceof HopBroken)) throw err;
    throw refusedInBand(ctx, {
      reason: err.reason,
      id: ctx?.mcpReq.id ?? null,
      server: err.server,
      data: { server: err.server },
    });
  };
}

/**
 * A hop request answered 404 for its session (the server restarted or dropped it; or the
 * per-server path no longer opens its sealed id): per Streamable HTTP the session is gone and the
 * client must initialize anew. A 404 the gateway gives for another reason (server_unknown: the
 * agent may no longer reach the server) is no such answer.
 */
export function hopSessionGone(err: unknown): boolean {
  const answered = hopHttpError(err);
  if (answered?.status !== 404) return false;
  const reason = answered.error?.data?.reason;
  return reason === undefined || reason === "session_unknown";
}

/** Thrown inside withHop when the hop session is gone (hopSessionGone): renewed there, once. */
export class HopSessionGone extends Error {}

export function sessionLost(server: string): ProtocolError {
  const info = Reasons.upstream_session_lost;
  return new ProtocolError(info.code, info.message, { reason: "upstream_session_lost", server });
}

/**
 * Thrown instead of a hop request to a token-exchange server when the agent token it would carry
 * has expired (BrokerHops.hopToken): nothing is sent, and an expired token is never presented.
 */
export class AgentTokenExpired extends Error {
  constructor(readonly server: string) {
    super(
      `the agent's token has expired: a hop to ${server} (token exchange) needs the token of a newer request of the agent`,
    );
  }
}

/**
 * Thrown instead of a hop request whose hop identity would be longer than MAX_HOP_TOKEN_LENGTH
 * (an agent token of tens of KB sealed in): the per-server route would not take it, so nothing is
 * sent (policy/header-limits.ts).
 */
export class AgentTokenTooLarge extends Error {
  constructor(
    readonly server: string,
    readonly length: number,
  ) {
    super(
      `the hop identity for ${server} would be ${length} characters long (at most ${MAX_HOP_TOKEN_LENGTH})`,
    );
  }
}
