import type { Reason } from "./reasons.js";

/** The gateway.yaml settings origin checks read (config/ compiles them; policy/ names what it needs). */
export interface OriginSettings {
  readonly publicUrl: string;
  readonly allowedOrigins: readonly string[];
  readonly allowedHosts: readonly string[];
}

/**
 * Origin and Host validation (MCP Streamable HTTP: servers must validate Origin against DNS
 * rebinding; security review F11). Decided before the token, so a web page cannot reach the
 * anonymous principal of `auth.mode: optional` either:
 * - a request with an `Origin` header (a browser sent it) passes only when that origin is the
 *   origin of `publicUrl` or listed in `allowedOrigins`;
 * - a request that reached the gateway on a loopback address passes only when its `Host` names
 *   a loopback host, the host of `publicUrl` or one listed in `allowedHosts`. A page whose DNS
 *   name was rebound to 127.0.0.1 sends its own name as Host, so it is refused.
 */
export class RequestOrigins {
  private readonly origins: ReadonlySet<string>;
  private readonly hosts: ReadonlySet<string>;

  constructor(config: OriginSettings) {
    const publicUrl = new URL(config.publicUrl);
    this.origins = new Set([publicUrl.origin, ...config.allowedOrigins.map(canonicalOrigin)]);
    this.hosts = new Set([publicUrl.hostname, ...config.allowedHosts.map((h) => hostnameOf(h) ?? h)]);
  }

  /** The reason to refuse the request, or undefined when its Origin and Host are acceptable. */
  check(
    origin: string | undefined,
    host: string | undefined,
    localAddress: string | undefined,
  ): Extract<Reason, "origin_forbidden" | "host_forbidden"> | undefined {
    if (origin !== undefined && !this.origins.has(canonicalOrigin(origin.trim()))) return "origin_forbidden";
    if (host !== undefined && localAddress !== undefined && isLoopbackAddress(localAddress)) {
      const hostname = hostnameOf(host.trim());
      if (hostname === undefined || !(isLoopbackName(hostname) || this.hosts.has(hostname)))
        return "host_forbidden";
    }
    return undefined;
  }
}

/** An origin as browsers serialise it (lower-case, no default port); "null" and junk stay as given. */
function canonicalOrigin(origin: string): string {
  if (origin === "null") return origin;
  try {
    const url = new URL(origin);
    return url.origin === "null" ? origin : url.origin;
  } catch {
    return origin;
  }
}

/**
 * Host values seen lately and their host names: nearly every request names one of a few, and
 * parsing one as a URL per request cost 1% of the edge's CPU per call. Bounded (a client chooses
 * the value): when full it is emptied and refilled, so it only ever holds parse results.
 */
const HOSTNAMES = new Map<string, string | undefined>();
const MAX_HOSTNAMES = 64;

/** The lower-case host name of a Host value (`name`, `name:port`, `[v6]:port`); undefined if malformed. */
export function hostnameOf(host: string): string | undefined {
  const known = HOSTNAMES.get(host);
  if (known !== undefined || HOSTNAMES.has(host)) return known;
  const hostname = parseHostname(host);
  if (HOSTNAMES.size >= MAX_HOSTNAMES) HOSTNAMES.clear();
  HOSTNAMES.set(host, hostname);
  return hostname;
}

function parseHostname(host: string): string | undefined {
  if (host.length === 0 || /[\s/?#@\\]/.test(host)) return undefined;
  try {
    const hostname = new URL(`http://${host}`).hostname;
    return hostname.length > 0 ? hostname : undefined;
  } catch {
    return undefined;
  }
}

function isLoopbackName(hostname: string): boolean {
  return hostname === "localhost" || hostname === "[::1]" || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}

/** Whether a socket address is on the loopback interface (127.0.0.0/8, ::1, IPv4-mapped 127/8). */
export function isLoopbackAddress(address: string): boolean {
  const plain = address.startsWith("::ffff:") ? address.slice(7) : address;
  return plain === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(plain);
}
