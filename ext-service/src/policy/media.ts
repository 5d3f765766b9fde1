import type { HeaderMap } from "./engine.js";

/**
 * Media-type checks on an MCP POST (Streamable HTTP), shared by both data planes.
 *
 * - Content-Type must be application/json (parameters such as charset allowed): the body is
 *   parsed as JSON-RPC, and no MCP revision sends anything else. Otherwise 415.
 * - Accept: the spec says clients MUST list both application/json and text/event-stream. The
 *   gateway is deliberately more lenient than that: it answers 406 only when the client can take
 *   neither JSON nor SSE (media ranges such as `*` `/` `*` count, q=0 excludes; no Accept header
 *   means anything is acceptable, as in HTTP). Enforcing "both" would break clients that send only
 *   one type (seen in the wild) even when the server behind the gateway accepts them; a server
 *   that enforces the spec strictly still answers its own 406, which passes through unchanged.
 */
export function postMediaViolation(
  headers: HeaderMap,
): "unsupported_media_type" | "not_acceptable" | undefined {
  const contentType = (headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
  if (contentType !== "application/json") return "unsupported_media_type";
  const accept = headers.accept;
  if (accept === undefined || accept.trim() === "") return undefined;
  if (accepts(accept, "application", "json") || accepts(accept, "text", "event-stream")) return undefined;
  return "not_acceptable";
}

/**
 * Whether an Accept header admits type/subtype: the most specific matching media range decides,
 * and a quality of 0 means "not acceptable" (RFC 9110 section 12.5.1).
 */
export function accepts(accept: string, type: string, subtype: string): boolean {
  let bestSpecificity = -1;
  let bestQuality = 0;
  for (const range of accept.split(",")) {
    const [mediaRange, ...params] = range.split(";");
    const [t, s] = mediaRange!.trim().toLowerCase().split("/");
    if (t === undefined || s === undefined) continue;
    let specificity: number;
    if (t === type && s === subtype) specificity = 2;
    else if (t === type && s === "*") specificity = 1;
    else if (t === "*" && s === "*") specificity = 0;
    else continue;
    if (specificity <= bestSpecificity) continue;
    const q = params.map((p) => p.trim().toLowerCase()).find((p) => p.startsWith("q="));
    bestSpecificity = specificity;
    bestQuality = q === undefined ? 1 : Number(q.slice(2));
  }
  return bestSpecificity >= 0 && bestQuality > 0;
}
