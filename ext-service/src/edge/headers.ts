import type { IncomingHttpHeaders } from "node:http";
import { UPSTREAM_HEADERS_WITHHELD, type HeaderMap, type UpstreamHeaders } from "../policy/engine.js";

/** Hop-by-hop headers (RFC 9110 section 7.6.1) and the legacy ones proxies also drop. */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);

/** Request headers the edge sets itself: the upstream's host, the body's length, no 100-continue. */
const NOT_FORWARDED = new Set(["host", "content-length", "expect"]);

/** Names listed in a Connection header are hop-by-hop for this message only. */
function connectionListed(value: string | string[] | undefined): Set<string> | undefined {
  // The usual values name nothing beyond HOP_BY_HOP: skip the parsing.
  if (value === undefined || value === "keep-alive" || value === "close") return undefined;
  const text = Array.isArray(value) ? value.join(",") : value;
  const names = text
    .split(",")
    .map((n) => n.trim().toLowerCase())
    .filter(Boolean);
  return names.length ? new Set(names) : undefined;
}

/**
 * The first request header name the edge refuses, or undefined. Node accepts any RFC 9110 token;
 * the edge takes letters, digits and '-' only, as Envoy's `headers_with_underscores_action:
 * REJECT_REQUEST` does for '_': `x_mcp_agent` or `x.mcp.agent` would otherwise reach a server
 * whose framework reads them as `x-mcp-agent`.
 */
export function refusedHeaderName(headers: IncomingHttpHeaders): string | undefined {
  for (const name in headers) if (!HEADER_NAME.test(name)) return name;
  return undefined;
}
const HEADER_NAME = /^[a-z0-9-]+$/;

/** Set by proxies in front of the edge, if any: a client's own values must not reach a server. */
function forwardingHeader(name: string): boolean {
  return name === "forwarded" || name === "x-real-ip" || name.startsWith("x-forwarded-");
}

/** Node's request headers as the core's map (lower-case names, repeated values joined). */
export function headerMap(headers: IncomingHttpHeaders): HeaderMap {
  const out: Record<string, string | undefined> = {};
  for (const name in headers) {
    const value = headers[name];
    out[name] = Array.isArray(value) ? value.join(", ") : value;
  }
  return out;
}

/**
 * Headers for the upstream request: the client's end-to-end headers (Mcp-Session-Id,
 * Mcp-Protocol-Version, Last-Event-ID pass untouched) minus hop-by-hop ones and what the core
 * removes (the agent's Authorization, client-sent x-mcp-*), plus what the core sets (identity).
 */
export function upstreamRequestHeaders(
  incoming: IncomingHttpHeaders,
  core: UpstreamHeaders,
  bodyLength: number | undefined,
): Record<string, string | string[]> {
  const listed = connectionListed(incoming.connection);
  const removed = core.remove; // a handful of names: an array scan beats building a Set
  const out: Record<string, string | string[]> = {};
  for (const name in incoming) {
    const value = incoming[name];
    if (value === undefined) continue;
    if (
      HOP_BY_HOP.has(name) ||
      NOT_FORWARDED.has(name) ||
      listed?.has(name) ||
      removed.includes(name) ||
      forwardingHeader(name)
    )
      continue;
    if (name.startsWith("x-mcp-")) continue; // never trust a client's x-mcp-*, whatever the core says
    out[name] = value;
  }
  for (const name in core.set) out[name.toLowerCase()] = core.set[name]!;
  if (bodyLength !== undefined) out["content-length"] = String(bodyLength);
  return out;
}

/**
 * Headers for the client: the upstream's end-to-end headers; the length is set by the edge. The
 * upstream's `Mcp-Session-Id` is replaced by the gateway's sealed id (dropped when there is none);
 * cookies and authentication challenges are withheld (UPSTREAM_HEADERS_WITHHELD).
 */
export function clientResponseHeaders(
  upstream: Record<string, string | string[] | undefined>,
  sealedSession: string | undefined,
): Record<string, string | string[]> {
  const listed = connectionListed(upstream.connection);
  const out: Record<string, string | string[]> = {};
  for (const name in upstream) {
    const value = upstream[name];
    if (value === undefined) continue;
    if (
      HOP_BY_HOP.has(name) ||
      listed?.has(name) ||
      name === "content-length" ||
      name === "mcp-session-id" ||
      UPSTREAM_HEADERS_WITHHELD.includes(name)
    )
      continue;
    out[name] = value;
  }
  if (sealedSession !== undefined) out["mcp-session-id"] = sealedSession;
  return out;
}
