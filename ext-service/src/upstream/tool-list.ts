import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { request } from "undici";
import { z } from "zod";
import {
  FIRST_MODERN_PROTOCOL_VERSION,
  META_CLIENT_CAPABILITIES,
  META_CLIENT_INFO,
  META_PROTOCOL_VERSION,
} from "../mcp/eras.js";
import { SseParser } from "../mcp/sse.js";

/**
 * A server's tools/list fetched by the gateway itself, outside any agent's session: by
 * `registry pin`, and by both data planes to check pins before the first call they forward
 * (upstream/pin-verifier.ts).
 */

export interface FetchToolsOptions {
  /** For the whole fetch, every page and both eras. */
  timeoutMs?: number;
  /** Headers sent with every request, e.g. `x-mcp-agent` naming the gateway as the caller. */
  headers?: Record<string, string>;
  clientName?: string;
}

const DEFAULT_CLIENT = "mcp-gateway-registry-pin";

const LooseListToolsResult = z
  .object({ tools: z.array(z.looseObject({})), nextCursor: z.string().optional() })
  .loose();

const FETCH_TIMEOUT_MS = 10_000;
const MAX_SSE_EVENT_BYTES = 16 * 1024 * 1024;
const MAX_PAGES = 100;

/**
 * Fetches the raw tools/list of one server, in whichever era it speaks: first as MCP 2026-07-28
 * (the per-request envelope, no handshake; a `legacy: 'reject'` server speaks nothing else), and
 * when the server does not answer that with a result, with the 2025 handshake of the 1.x SDK
 * client. Results are read loosely so every field reaches the pin exactly as the server sent it
 * (an SDK's own schema would strip unknown annotation keys, and the gateway pins what is on the wire).
 */
export async function fetchLiveTools(
  url: string,
  options: FetchToolsOptions = {},
): Promise<Record<string, unknown>[]> {
  const deadline = Date.now() + (options.timeoutMs ?? FETCH_TIMEOUT_MS);
  const modern = await fetchModernTools(url, options, deadline);
  if (modern.ok) return modern.tools;
  return fetchLegacyTools(url, options, Math.max(1, deadline - Date.now()));
}

const modernEnvelope = (clientName: string) => ({
  [META_PROTOCOL_VERSION]: FIRST_MODERN_PROTOCOL_VERSION,
  [META_CLIENT_INFO]: { name: clientName, version: "0.1.0" },
  [META_CLIENT_CAPABILITIES]: {},
});

/**
 * tools/list as a 2026-07-28 client sends it (envelope, standard headers). `ok: false` when the
 * server answers anything but a result (a 2025-only server refuses the request); a network
 * failure is thrown, since the 2025 handshake would meet it too.
 */
async function fetchModernTools(
  url: string,
  options: FetchToolsOptions,
  deadline: number,
): Promise<{ ok: true; tools: Record<string, unknown>[] } | { ok: false }> {
  const tools: Record<string, unknown>[] = [];
  let cursor: string | undefined;
  for (let page = 0; page < MAX_PAGES; page++) {
    const id = `registry-pin-${page}`;
    const res = await request(url, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
        "mcp-protocol-version": FIRST_MODERN_PROTOCOL_VERSION,
        "mcp-method": "tools/list",
        ...options.headers,
      },
      body: JSON.stringify({
        jsonrpc: "2.0",
        id,
        method: "tools/list",
        params: {
          ...(cursor ? { cursor } : {}),
          _meta: modernEnvelope(options.clientName ?? DEFAULT_CLIENT),
        },
      }),
      headersTimeout: Math.max(1, deadline - Date.now()),
      bodyTimeout: Math.max(1, deadline - Date.now()),
    });
    const text = await res.body.text();
    if (res.statusCode !== 200) return { ok: false };
    const contentType = String(res.headers["content-type"] ?? "");
    const result = LooseListToolsResult.safeParse(resultOf(id, contentType, text));
    if (!result.success) return { ok: false };
    tools.push(...(result.data.tools as Record<string, unknown>[]));
    cursor = result.data.nextCursor;
    if (!cursor) break;
  }
  return { ok: true, tools };
}

/** The `result` of the response with `id` in a JSON or SSE body; undefined when there is none. */
function resultOf(id: string, contentType: string, text: string): unknown {
  const messages: unknown[] = [];
  try {
    if (contentType.startsWith("text/event-stream")) {
      const parser = new SseParser(MAX_SSE_EVENT_BYTES);
      for (const event of [...parser.push(new TextEncoder().encode(text), true)]) {
        if (event.data) messages.push(JSON.parse(event.data));
      }
    } else messages.push(JSON.parse(text));
  } catch {
    return undefined;
  }
  for (const m of messages) {
    const message = m as { id?: unknown; result?: unknown } | null;
    if (message?.id === id && message.result !== undefined) return message.result;
  }
  return undefined;
}

/** tools/list after the 2025 `initialize` handshake, with the 1.x SDK client. */
async function fetchLegacyTools(
  url: string,
  options: FetchToolsOptions,
  timeoutMs: number,
): Promise<Record<string, unknown>[]> {
  const client = new Client({ name: options.clientName ?? DEFAULT_CLIENT, version: "0.1.0" });
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: options.headers ? { headers: options.headers } : undefined,
  });
  try {
    await client.connect(transport, { timeout: timeoutMs });
    const tools: Record<string, unknown>[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < MAX_PAGES; page++) {
      const result = await client.request(
        { method: "tools/list", params: cursor ? { cursor } : {} },
        LooseListToolsResult,
        { timeout: timeoutMs },
      );
      tools.push(...(result.tools as Record<string, unknown>[]));
      cursor = result.nextCursor;
      if (!cursor) break;
    }
    return tools;
  } finally {
    // End the session, so repeated checks leave none behind on the server.
    if (transport.sessionId !== undefined) await transport.terminateSession().catch(() => undefined);
    await client.close().catch(() => undefined);
  }
}

/**
 * Why a server could not be listed, in the words an operator acts on: the HTTP status and the
 * start of the body when the upstream answered (a wrong path, a server that is not MCP), else the
 * network error under fetch's "fetch failed" (ECONNREFUSED, ENOTFOUND, a TLS error).
 */
export function describeFetchError(err: unknown): string {
  const status = (err as { code?: unknown }).code;
  if (typeof status === "number" && status >= 100 && status <= 599) {
    const body = oneLine(
      (err as Error).message.replace(/^Streamable HTTP error: Error \w+ing to endpoint:?\s*/, ""),
    );
    const hint = status === 404 || status === 405 ? " (is this the server's MCP endpoint path?)" : "";
    return `HTTP ${status}${body ? `: ${shorten(body, 120)}` : ""}${hint}`;
  }
  let deepest = err as (Error & { code?: unknown; cause?: unknown }) | undefined;
  for (let depth = 0; depth < 8 && deepest?.cause instanceof Error; depth++) {
    deepest = deepest.cause as Error & { code?: unknown; cause?: unknown };
  }
  const message = oneLine(deepest?.message ?? String(err));
  const code = typeof deepest?.code === "string" ? deepest.code : undefined;
  if (code === undefined || message.includes(code)) return shorten(message, 160);
  const hint = code === "ERR_SSL_WRONG_VERSION_NUMBER" ? " (https to a port that speaks plain HTTP?)" : "";
  return `${code}${hint}: ${shorten(message, 120)}`;
}

/**
 * The kind of a fetch failure without addresses or bodies (`HTTP 404`, `ECONNREFUSED`,
 * `timeout`): what an agent may be told about why a call was refused.
 */
export function fetchFailureKind(err: unknown): string {
  const status = (err as { code?: unknown }).code;
  if (typeof status === "number" && status >= 100 && status <= 599) return `HTTP ${status}`;
  let deepest = err as (Error & { code?: unknown; cause?: unknown }) | undefined;
  for (let depth = 0; depth < 8 && deepest?.cause instanceof Error; depth++) {
    deepest = deepest.cause as Error & { code?: unknown; cause?: unknown };
  }
  if (typeof deepest?.code === "string" && /^[A-Z][A-Z0-9_]{2,40}$/.test(deepest.code)) return deepest.code;
  if (/timed? ?out/i.test(deepest?.message ?? "")) return "timeout";
  return "error";
}

function oneLine(s: string): string {
  return s.replace(/\s+/g, " ").trim();
}

function shorten(s: string, n: number): string {
  return s.length > n ? `${s.slice(0, n)}... (${s.length} chars)` : s;
}
