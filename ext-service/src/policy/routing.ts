/**
 * The public routes (identical behind Envoy and on the local edge). Paths are matched exactly,
 * without percent-decoding: a server name is a DNS label, so any encoded or dotted segment is
 * simply not a route, which leaves no room for traversal tricks.
 */
export type Route =
  | { kind: "mcp"; server: string }
  /** The aggregated endpoint: `/mcp` (view undefined) or `/mcp/views/<name>`. */
  | { kind: "broker"; view: string | undefined }
  /**
   * RFC 9728 metadata of the resource at `path` (`/mcp/<server>`, `/mcp`, `/mcp/views/<name>`;
   * "" for the gateway as a whole); `server` names the server of a per-server path.
   */
  | { kind: "resource_metadata"; server: string | undefined; path: string }
  | { kind: "unknown_server"; server: string }
  | { kind: "not_found" };

const MCP_PATH = /^\/mcp\/([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)$/;
const VIEW_PATH = /^\/mcp\/views\/([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)$/;
const METADATA_PREFIX = "/.well-known/oauth-protected-resource";

export function parseRoute(rawPath: string, exists: (server: string) => boolean): Route {
  const q = rawPath.indexOf("?");
  const path = q < 0 ? rawPath : rawPath.slice(0, q);
  if (path === METADATA_PREFIX) return { kind: "resource_metadata", server: undefined, path: "" };
  if (path.startsWith(METADATA_PREFIX + "/")) {
    // Answered for any well-formed server or view name, registered or not: the document names
    // only the path and the authorization servers, and a 404 for unknown names would list the
    // registry to anyone who asks. The aggregated endpoint has its own (RFC 9728 section 3.1:
    // a client of /mcp asks at the well-known URI with /mcp appended first).
    const resource = path.slice(METADATA_PREFIX.length);
    if (resource === "/mcp" || VIEW_PATH.test(resource))
      return { kind: "resource_metadata", server: undefined, path: resource };
    const rest = MCP_PATH.exec(resource);
    return rest ? { kind: "resource_metadata", server: rest[1]!, path: resource } : { kind: "not_found" };
  }
  if (path === "/mcp") return { kind: "broker", view: undefined };
  const view = VIEW_PATH.exec(path);
  if (view) return { kind: "broker", view: view[1]! };
  const m = MCP_PATH.exec(path);
  if (!m) return { kind: "not_found" };
  return exists(m[1]!) ? { kind: "mcp", server: m[1]! } : { kind: "unknown_server", server: m[1]! };
}

function trimSlash(url: string): string {
  return url.endsWith("/") ? url.slice(0, -1) : url;
}

/** The path of a protected resource: a server's `/mcp/<server>`, or "" for the gateway. */
export function serverPath(server: string | undefined): string {
  return server ? `/mcp/${server}` : "";
}

export function resourceUrl(
  publicUrl: string,
  server: string | undefined,
  path = serverPath(server),
): string {
  return `${trimSlash(publicUrl)}${path}`;
}

export function resourceMetadataUrl(
  publicUrl: string,
  server: string | undefined,
  path = serverPath(server),
): string {
  return `${trimSlash(publicUrl)}${METADATA_PREFIX}${path}`;
}

/** An http(s) URL, as RFC 8414 requires of an authorization server's issuer identifier. */
function isHttpUrl(value: string): boolean {
  return /^https?:\/\//i.test(value) && URL.canParse(value);
}

/** The gateway.yaml settings the resource metadata reads (policy/ names what it needs; config/ produces it). */
export interface ResourceMetadataSettings {
  readonly publicUrl: string;
  readonly auth: {
    readonly authorizationServers: string[];
    readonly issuers: readonly { readonly issuer: string }[];
  };
}

/**
 * The authorization servers to advertise: the configured ones (URLs, checked at load), else the
 * issuers whose names are URLs. A bare issuer name such as `mcp-gateway-dev` is no URL; clients
 * that discover OAuth (mcp-remote, the Inspector) fail on one, so it is never advertised.
 */
export function authorizationServers(config: ResourceMetadataSettings): string[] {
  if (config.auth.authorizationServers.length) return config.auth.authorizationServers;
  return config.auth.issuers.map((i) => i.issuer).filter(isHttpUrl);
}

/** RFC 9728 protected resource metadata (authorization_servers is optional there: omitted when empty). */
export function resourceMetadata(
  config: ResourceMetadataSettings,
  server: string | undefined,
  path: string = serverPath(server),
): Record<string, unknown> {
  const servers = authorizationServers(config);
  return {
    resource: resourceUrl(config.publicUrl, server, path),
    ...(servers.length ? { authorization_servers: servers } : {}),
    bearer_methods_supported: ["header"],
    resource_name: server
      ? `MCP server '${server}' via mcp-gateway`
      : path === ""
        ? "mcp-gateway"
        : `Every MCP server (${path}) via mcp-gateway`,
  };
}
