import type { IncomingMessage, ServerResponse } from "node:http";
import { isPlainObject, type JsonRpcId } from "../mcp/jsonrpc.js";
import { sdkRefusal, type BrokerRefusal } from "./refusals.js";

// The aggregated endpoint's HTTP surface: node requests and responses to and from the web ones
// the SDK serves, and what the broker reads of a request body before the SDK does.

/** The id of a body that is one JSON-RPC request; null for anything else. */
export function requestIdOf(body: unknown): JsonRpcId | null {
  if (!isPlainObject(body) || typeof body.method !== "string") return null;
  return typeof body.id === "string" || typeof body.id === "number" ? body.id : null;
}

/** A POST that carries only JSON-RPC responses: the client's answers to relayed requests. */
export function onlyAnswers(body: unknown): boolean {
  const messages = Array.isArray(body) ? body : [body];
  return (
    messages.length > 0 &&
    messages.every(
      (m) => isPlainObject(m) && !("method" in m) && "id" in m && ("result" in m || "error" in m),
    )
  );
}

/**
 * Writes a web Response to a node response, streaming its body (SSE) as it arrives. However it
 * stops before the body's end (the client went away, the response was destroyed, a write or a
 * read failed), the body is cancelled at once: its source (the SDK transport's stream of a GET or
 * a call) learns the stream is gone, instead of enqueueing into a stream no one reads and still
 * holding the session's one GET stream (a new one refused 409).
 */
export async function sendResponse(
  res: ServerResponse,
  response: Response,
  extra: Record<string, string> = {},
) {
  const headers: Record<string, string> = { ...extra };
  response.headers.forEach((value, name) => {
    headers[name] = value;
  });
  res.writeHead(response.status, headers);
  if (!response.body) {
    res.end();
    return;
  }
  res.flushHeaders();
  const reader = response.body.getReader();
  let finished = false;
  const cancel = () => void reader.cancel().catch(() => undefined);
  res.once("close", cancel);
  try {
    // `destroyed` is set when the response is destroyed, its close event only later: a chunk read
    // in between must not be written, and must not end the loop without the cancel.
    while (!res.destroyed) {
      const { done, value } = await reader.read();
      if (done) {
        finished = true;
        break;
      }
      if (res.destroyed) break;
      if (!res.write(value)) await drained(res);
    }
  } finally {
    res.off("close", cancel);
    if (!finished) cancel();
  }
  if (!res.destroyed) res.end();
}

/** Resolves when `res` drains or closes, leaving no listener behind. */
function drained(res: ServerResponse): Promise<void> {
  return new Promise<void>((resume) => {
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      resume();
    };
    res.once("drain", done).once("close", done);
  });
}

/**
 * The SDK's answer to the agent: sent as it is, unless it is an error the SDK wrote itself, which
 * is returned as the broker's refusal for the caller to audit and answer (refusals.ts).
 */
export async function answer(res: ServerResponse, response: Response): Promise<BrokerRefusal | undefined> {
  const refusal = await sdkRefusal(response);
  if (refusal) return refusal;
  await sendResponse(res, response);
  return undefined;
}

/**
 * The web request the SDK serves for `req`. With `res`, its signal is aborted when the response
 * closes before it was finished (the client went away: a 2026-07-28 cancellation), as the SDK's
 * node adapter does, so the handlers' `ctx.mcpReq.signal` and what they started (hops) end too.
 */
export function webRequest(req: IncomingMessage, origin: string, res?: ServerResponse): Request {
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined || name === "authorization" || name === "content-length") continue;
    headers.set(name, Array.isArray(value) ? value.join(", ") : value);
  }
  let signal: AbortSignal | undefined;
  if (res) {
    const gone = new AbortController();
    if (res.destroyed) gone.abort();
    else res.once("close", () => res.writableFinished || gone.abort());
    signal = gone.signal;
  }
  return new Request(`${origin}${req.url ?? "/mcp"}`, {
    method: req.method ?? "GET",
    headers,
    ...(signal ? { signal } : {}),
  });
}
