/**
 * Media-type rules of MCP Streamable HTTP, shared by both data planes (the edge checks them
 * before reading a body; the Envoy path on request headers):
 * - POST carries `Content-Type: application/json` (UTF-8, the only charset JSON-RPC over MCP allows)
 *   and an `Accept` listing both `application/json` and `text/event-stream`;
 * - GET (the server-to-client stream) needs an `Accept` listing `text/event-stream`.
 * Wildcard ranges (`*\/*`, `text/*`) count, as in HTTP; a range with `q=0` refuses a type.
 */

interface MediaRange {
  type: string;
  subtype: string;
  q: number;
}

function parseAccept(header: string): MediaRange[] {
  const out: MediaRange[] = [];
  for (const part of header.split(",")) {
    const [range, ...params] = part.split(";");
    const [type, subtype] = (range ?? "").trim().toLowerCase().split("/");
    if (!type || !subtype) continue;
    let q = 1;
    for (const p of params) {
      const [k, v] = p.split("=");
      if (k?.trim().toLowerCase() === "q") {
        const n = Number(v?.trim());
        q = Number.isFinite(n) ? n : 0;
      }
    }
    out.push({ type, subtype, q });
  }
  return out;
}

/** Whether an Accept header value accepts `mediaType` (the most specific matching range decides). */
export function accepts(header: string | undefined, mediaType: string): boolean {
  if (header === undefined) return false;
  const [type, subtype] = mediaType.split("/");
  let best: MediaRange | undefined;
  let bestRank = -1;
  for (const r of parseAccept(header)) {
    const rank =
      r.type === type && r.subtype === subtype
        ? 2
        : r.type === type && r.subtype === "*"
          ? 1
          : r.type === "*" && r.subtype === "*"
            ? 0
            : -1;
    if (rank > bestRank) {
      best = r;
      bestRank = rank;
    }
  }
  return best !== undefined && best.q > 0;
}

/** Whether a Content-Type value is JSON in UTF-8 (no charset parameter means UTF-8). */
export function isJsonContentType(header: string | undefined): boolean {
  if (header === undefined) return false;
  const [type, ...params] = header.split(";");
  if (type?.trim().toLowerCase() !== "application/json") return false;
  for (const p of params) {
    const [k, v] = p.split("=");
    if (k?.trim().toLowerCase() === "charset") {
      const charset = v?.trim().replace(/^"|"$/g, "").toLowerCase();
      if (charset !== "utf-8" && charset !== "utf8") return false;
    }
  }
  return true;
}

/**
 * A pure header check with a one-entry memo: clients send the same Content-Type and Accept on
 * every request, and parsing them was a measurable share of a proxied request's CPU.
 */
function lastValueMemo(test: (value: string | undefined) => boolean): (value: string | undefined) => boolean {
  let primed = false;
  let lastValue: string | undefined;
  let lastResult = false;
  return (value) => {
    if (primed && value === lastValue) return lastResult;
    lastResult = test(value);
    lastValue = value;
    primed = true;
    return lastResult;
  };
}

const jsonBody = lastValueMemo(isJsonContentType);
const postAccept = lastValueMemo((a) => accepts(a, "application/json") && accepts(a, "text/event-stream"));
const getAccept = lastValueMemo((a) => accepts(a, "text/event-stream"));

/** The methods of MCP Streamable HTTP; anything else is 405 on both data planes. */
export const MCP_HTTP_METHODS = "GET, POST, DELETE";

/**
 * Why an MCP request is refused on its method and headers alone. The protocol model sits below
 * policy, so it names these codes itself; policy/reasons.ts checks each is one of its reasons.
 */
export type McpMediaRejection = "unsupported_media_type" | "not_acceptable" | "http_method_not_allowed";

/**
 * The reason to refuse an MCP request on its method and headers alone, or undefined when
 * acceptable. Both data planes call this after admission, so they refuse the same requests.
 */
export function checkMcpMedia(
  httpMethod: string,
  headers: Readonly<Record<string, string | undefined>>,
): McpMediaRejection | undefined {
  if (httpMethod !== "POST" && httpMethod !== "GET" && httpMethod !== "DELETE")
    return "http_method_not_allowed";
  if (httpMethod === "POST") {
    if (!jsonBody(headers["content-type"])) return "unsupported_media_type";
    if (!postAccept(headers.accept)) return "not_acceptable";
  } else if (httpMethod === "GET") {
    if (!getAccept(headers.accept)) return "not_acceptable";
  }
  return undefined;
}
