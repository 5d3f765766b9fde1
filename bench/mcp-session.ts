import { PROTOCOL_VERSION } from "./workloads.js";

/** What opening a session reads of one POST's answer. */
export interface PostAnswer {
  status: number;
  /** The `Mcp-Session-Id` header of the answer, if any. */
  sessionId: string | undefined;
  text: string;
}

/** One POST of a JSON-RPC `body` with `headers` to the endpoint, over whatever client the caller uses. */
export type PostJson = (headers: Record<string, string>, body: string) => Promise<PostAnswer>;

/**
 * A 2025 session (`initialize`, then `notifications/initialized`) on the endpoint `post` reaches:
 * its id, which every request then carries. `headers` go with both (authorization, media types;
 * `initialize` goes without a protocol-version header unless they hold one); the acknowledgement
 * carries the session id and PROTOCOL_VERSION.
 */
export async function openSession(
  post: PostJson,
  headers: Record<string, string>,
  clientName: string,
): Promise<string> {
  const init = await post(
    headers,
    JSON.stringify({
      jsonrpc: "2.0",
      id: 0,
      method: "initialize",
      params: {
        protocolVersion: PROTOCOL_VERSION,
        capabilities: {},
        clientInfo: { name: clientName, version: "1.0.0" },
      },
    }),
  );
  if (init.status !== 200 || init.sessionId === undefined)
    throw new Error(`initialize: HTTP ${init.status}: ${init.text.slice(0, 300)}`);
  const ack = await post(
    { ...headers, "mcp-session-id": init.sessionId, "mcp-protocol-version": PROTOCOL_VERSION },
    JSON.stringify({ jsonrpc: "2.0", method: "notifications/initialized" }),
  );
  if (ack.status < 200 || ack.status > 299)
    throw new Error(`notifications/initialized: HTTP ${ack.status}: ${ack.text.slice(0, 300)}`);
  return init.sessionId;
}
