import { mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { isIP } from "node:net";
import { basename, join } from "node:path";
import { stringify } from "yaml";
import { ConfigError, type ConfigProblem, type LoadedConfig } from "../config/load.js";
import { durationMs, type RegistryServer } from "../config/schema.js";
import { Reasons, type Reason } from "../policy/reasons.js";
import { decodeEnvoy } from "./validate-config.js";

/**
 * `mcp-gateway registry render-envoy`: Envoy resources rendered from the registry, for Envoy's
 * file-based dynamic configuration (`path_config_source` with a watched directory). Two files,
 * each a DiscoveryResponse: `clusters.yaml` (CDS: one cluster per MCP server) and `routes.yaml`
 * (RDS: `/mcp/<server>` routes plus the per-agent local rate limit). Adding a server to the
 * registry and re-rendering reaches a running Envoy without a restart.
 */

export const CLUSTERS_FILE = "clusters.yaml";
export const ROUTES_FILE = "routes.yaml";
export const ROUTE_CONFIG_NAME = "mcp_routes";
/** HTTP filter names in envoy/envoy.yaml; per-route config is keyed by them. */
export const LOCAL_RATELIMIT_FILTER = "envoy.filters.http.local_ratelimit";
export const EXT_AUTHZ_FILTER = "envoy.filters.http.ext_authz";
export const EXT_PROC_FILTER = "envoy.filters.http.ext_proc";
/**
 * The ext-service's broker listener (listen.broker), a static cluster in envoy.yaml. Server
 * clusters are `mcp_<server>` and server names have no '_', so no server's cluster has this name.
 */
export const BROKER_CLUSTER = "mcp_gateway_broker";
/** Request header the ext_authz service sets to the verified agent; the rate-limit key. */
export const AGENT_HEADER = "x-mcp-agent";
export const RESOURCE_METADATA_PREFIX = "/.well-known/oauth-protected-resource";

const CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const ROUTE_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
const HTTP_OPTIONS_TYPE = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
const HTTP_OPTIONS_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
const DNS_CLUSTER_TYPE = "type.googleapis.com/envoy.extensions.clusters.dns.v3.DnsCluster";
const TLS_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";
const LOCAL_RATELIMIT_TYPE =
  "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit";
const EXT_AUTHZ_PER_ROUTE_TYPE =
  "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute";
const EXT_PROC_PER_ROUTE_TYPE =
  "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute";
const PREVIOUS_HOSTS_TYPE =
  "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate";
/** CA bundle path in the Envoy image (Debian/Ubuntu ca-certificates). */
export const SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt";

type Obj = Record<string, unknown>;

export interface RenderedEnvoy {
  clusters: Obj[];
  routeConfiguration: Obj;
  /** Advice that does not stop rendering (e.g. session affinity for multi-replica servers). */
  warnings: string[];
  /** The files to write, in write order: clusters before the routes that name them. */
  files: { name: string; text: string }[];
}

export const clusterName = (server: string): string => `mcp_${server}`;

const seconds = (ms: number): string => `${Number((ms / 1000).toFixed(3))}s`;

interface Upstream {
  scheme: "http" | "https";
  host: string; // without IPv6 brackets
  port: number;
  authority: string; // host[:port] as it goes in the Host header
  path: string;
}

function parseUpstreams(server: RegistryServer, index: number, file: string): Upstream[] | ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const upstreams: Upstream[] = [];
  server.upstreams.forEach((raw, j) => {
    const where = { file, path: `servers[${index}].upstreams[${j}]` };
    const url = new URL(raw);
    const scheme = url.protocol.slice(0, -1);
    if (scheme !== "http" && scheme !== "https") {
      problems.push({
        ...where,
        message: `scheme '${scheme}' is not supported for Envoy (use http or https)`,
      });
      return;
    }
    if (url.username || url.password) {
      problems.push({
        ...where,
        message: "credentials in the URL are not supported; the gateway injects identity",
      });
      return;
    }
    if (url.search || url.hash) {
      problems.push({
        ...where,
        message: "a query or fragment cannot be expressed as an Envoy path rewrite",
      });
      return;
    }
    const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
    const port = url.port ? Number(url.port) : scheme === "https" ? 443 : 80;
    upstreams.push({ scheme, host, port, authority: url.host, path: url.pathname || "/" });
  });
  if (problems.length) return problems;
  const first = upstreams[0]!;
  upstreams.forEach((u, j) => {
    const where = { file, path: `servers[${index}].upstreams[${j}]` };
    if (u.scheme !== first.scheme)
      problems.push({
        ...where,
        message: `mixes ${first.scheme} and ${u.scheme}: one Envoy cluster has one transport`,
      });
    else if (u.path !== first.path)
      problems.push({
        ...where,
        message: `path '${u.path}' differs from '${first.path}': one route rewrites to one upstream path`,
      });
  });
  return problems.length ? problems : upstreams;
}

function jsonRpcBody(reason: Reason, message?: string): string {
  const info = Reasons[reason];
  return JSON.stringify({
    jsonrpc: "2.0",
    id: null,
    error: { code: info.code, message: message ?? info.message, data: { reason } },
  });
}

const JSON_CONTENT_TYPE = {
  header: { key: "content-type", value: "application/json" },
  append_action: "OVERWRITE_IF_EXISTS_OR_ADD",
};

/**
 * Name resolution through the DNS cluster extension (Cluster's own dns_refresh_rate,
 * respect_dns_ttl and dns_lookup_family are deprecated since Envoy 1.33). A fixed 5 s refresh,
 * never the record's TTL: Docker's DNS answers with TTL 600, so a recreated container's new
 * address would otherwise be unknown to Envoy for ten minutes. `logical`: one HTTPS endpoint
 * behind a name (a SaaS server), connected to as one host like LOGICAL_DNS; otherwise every
 * address is an endpoint (STRICT_DNS).
 */
export function dnsClusterType(logical: boolean): Obj {
  return {
    name: "envoy.cluster.dns",
    typed_config: {
      "@type": DNS_CLUSTER_TYPE,
      dns_refresh_rate: "5s",
      respect_dns_ttl: false,
      dns_lookup_family: "V4_PREFERRED",
      ...(logical ? { all_addresses_in_single_endpoint: true } : {}),
    },
  };
}

/**
 * The edge's breaker, in Envoy terms: N consecutive failures (5xx, 502-504, connect failures
 * and timeouts counted apart) eject a replica for the cooldown, twice as long at the second
 * ejection in a row, and so on up to 300 s; the interval timer (5 s) lets it back. No active
 * health check unejects it early (Envoy's default would: a server answering 500 with its port
 * open would be back at the next TCP check, whatever the cooldown). The Envoy-role model runs
 * this object (outlier.ts).
 */
export function outlierDetection(breaker: { consecutiveFailures: number; cooldown: number | string }): Obj {
  const failures = breaker.consecutiveFailures;
  return {
    consecutive_5xx: failures,
    consecutive_gateway_failure: failures,
    consecutive_local_origin_failure: failures,
    split_external_local_origin_errors: true,
    interval: "5s",
    base_ejection_time: seconds(durationMs(breaker.cooldown)),
    max_ejection_time: seconds(Math.max(300_000, durationMs(breaker.cooldown))),
    max_ejection_percent: 100,
    enforcing_consecutive_5xx: 100,
    enforcing_consecutive_gateway_failure: 100,
    enforcing_consecutive_local_origin_failure: 100,
    enforcing_success_rate: 0,
    successful_active_health_check_uneject_host: false,
  };
}

function renderCluster(server: RegistryServer, upstreams: Upstream[], loaded: LoadedConfig): Obj {
  const { edge } = loaded.config;
  const tls = upstreams[0]!.scheme === "https";
  const allIps = upstreams.every((u) => isIP(u.host) !== 0);
  const name = clusterName(server.name);
  const cluster: Obj = {
    "@type": CLUSTER_TYPE,
    name,
    ...(allIps ? { type: "STATIC" } : { cluster_type: dnsClusterType(upstreams.length === 1 && tls) }),
    connect_timeout: "2s",
    // One replica: least request. Several: a consistent hash of Mcp-Session-Id (see serverRoutes).
    lb_policy: upstreams.length > 1 ? "RING_HASH" : "LEAST_REQUEST",
    load_assignment: {
      cluster_name: name,
      endpoints: [
        {
          lb_endpoints: upstreams.map((u) => ({
            endpoint: {
              address: { socket_address: { address: u.host, port_value: u.port } },
              hostname: u.authority,
            },
          })),
        },
      ],
    },
    // Bounds on what one MCP server may hold of Envoy; past them requests fail fast with 503.
    circuit_breakers: {
      thresholds: [
        {
          priority: "DEFAULT",
          max_connections: 1024,
          max_pending_requests: 256,
          max_requests: 1024,
          max_retries: 3,
          track_remaining: true,
        },
      ],
    },
    outlier_detection: outlierDetection(edge.breaker),
    // MCP has no standard health endpoint: a TCP connect check proves the listener is up without
    // creating MCP sessions or opening streams; failing requests are caught by outlier detection.
    health_checks: [
      {
        timeout: "2s",
        interval: "5s",
        interval_jitter: "1s",
        unhealthy_threshold: 2,
        healthy_threshold: 1,
        no_traffic_interval: "30s",
        tcp_health_check: {},
      },
    ],
    // No panic routing: with every replica down or ejected, fail fast (503) rather than spray.
    common_lb_config: { healthy_panic_threshold: { value: 0 } },
    typed_extension_protocol_options: {
      [HTTP_OPTIONS_KEY]: {
        "@type": HTTP_OPTIONS_TYPE,
        common_http_protocol_options: { idle_timeout: "300s" },
        ...(tls
          ? {
              upstream_http_protocol_options: { auto_sni: true, auto_san_validation: true },
              auto_config: { http_protocol_options: {}, http2_protocol_options: {} },
            }
          : { explicit_http_config: { http_protocol_options: {} } }),
      },
    },
    upstream_connection_options: {
      tcp_keepalive: { keepalive_time: 60, keepalive_interval: 10, keepalive_probes: 3 },
    },
  };
  if (tls) {
    cluster.transport_socket = {
      name: "envoy.transport_sockets.tls",
      typed_config: {
        "@type": TLS_TYPE,
        sni: upstreams[0]!.host,
        common_tls_context: {
          tls_params: { tls_minimum_protocol_version: "TLSv1_2" },
          alpn_protocols: ["h2", "http/1.1"],
          validation_context: { trusted_ca: { filename: SYSTEM_CA_BUNDLE } },
        },
      },
    };
  }
  return cluster;
}

export const SESSION_HEADER = "mcp-session-id";

function routeAction(cluster: string, upstreamPath: string, extra: Obj): Obj {
  return { cluster, prefix_rewrite: upstreamPath, auto_host_rewrite: true, ...extra };
}

/**
 * Session affinity for a server with several replicas: requests that carry the same
 * Mcp-Session-Id hash to the same replica (RING_HASH), so a session's POSTs, its GET stream and
 * its DELETE meet on one replica while the healthy set is stable. It does not make the request
 * that mints the session (initialize, no header yet) land where the hash later points, and a
 * replica leaving or joining moves about 1/N of the sessions: a server that keeps session state
 * only in process memory still needs shared session state (or one replica, or the gateway-owned
 * sessions of the aggregated endpoint).
 */
function sessionHash(replicas: number): Obj {
  return replicas > 1 ? { hash_policy: [{ header: { header_name: SESSION_HEADER } }] } : {};
}

/** The three MCP routes of one server, then a 405 for any other method. */
function serverRoutes(server: RegistryServer, upstream: Upstream, loaded: LoadedConfig): Obj[] {
  const path = `/mcp/${server.name}`;
  const affinity = sessionHash(server.upstreams.length);
  const cluster = clusterName(server.name);
  const method = (m: string) => ({ path, headers: [{ name: ":method", string_match: { exact: m } }] });
  // Safe to retry: the request never reached a server (no connection, or HTTP/2 REFUSED_STREAM).
  const safeRetry = {
    retry_on: "connect-failure,refused-stream",
    num_retries: 2,
    retry_host_predicate: [
      { name: "envoy.retry_host_predicates.previous_hosts", typed_config: { "@type": PREVIOUS_HOSTS_TYPE } },
    ],
    host_selection_retry_max_attempts: 3,
  };
  return [
    {
      // POST carries JSON-RPC, tools/call included: never retried, so no call runs twice.
      name: `${server.name}-post`,
      match: method("POST"),
      route: routeAction(cluster, upstream.path, { timeout: "0s", idle_timeout: "300s", ...affinity }),
    },
    {
      // GET opens the server-to-client SSE stream: no deadline, a long idle allowance.
      name: `${server.name}-get`,
      match: method("GET"),
      route: routeAction(cluster, upstream.path, {
        timeout: "0s",
        idle_timeout: "3600s",
        retry_policy: safeRetry,
        ...affinity,
      }),
    },
    {
      name: `${server.name}-delete`,
      match: method("DELETE"),
      route: routeAction(cluster, upstream.path, {
        timeout: seconds(durationMs(loaded.config.edge.upstreamTimeout)),
        retry_policy: safeRetry,
        ...affinity,
      }),
    },
    {
      name: `${server.name}-method-not-allowed`,
      match: { path },
      direct_response: {
        status: 405,
        body: { inline_string: jsonRpcBody("invalid_request", "MCP endpoints accept POST, GET and DELETE") },
      },
      response_headers_to_add: [
        JSON_CONTENT_TYPE,
        { header: { key: "allow", value: "GET, POST, DELETE" }, append_action: "OVERWRITE_IF_EXISTS_OR_ADD" },
      ],
    },
  ];
}

/** Token bucket for a rate in requests per second: integral tokens, refill interval >= 50 ms. */
export function tokenBucket(requestsPerSecond: number, burst: number): Obj {
  if (requestsPerSecond >= 1) {
    return { max_tokens: burst, tokens_per_fill: Math.round(requestsPerSecond), fill_interval: "1s" };
  }
  return {
    max_tokens: burst,
    tokens_per_fill: 1,
    fill_interval: seconds(Math.round(1000 / requestsPerSecond)),
  };
}

/** Dynamic per-agent buckets Envoy keeps (least recently used are dropped, then start full). */
export const MAX_DYNAMIC_AGENT_BUCKETS = 10_000;

/**
 * The per-agent local rate limit, on the virtual host. The descriptor comes from the filter's own
 * `rate_limits` (route-level descriptors are on their way out of Envoy): the x-mcp-agent header
 * ext_authz set from the verified token. Agents named in gateway.yaml get an exact descriptor;
 * every other agent gets its own bucket through the wildcard descriptor (blank value), so unnamed
 * agents never share one. Envoy matches exact descriptors before wildcards (local_ratelimit_impl.cc
 * requestAllowed). A request without the header (auth.mode optional, anonymous) uses token_bucket.
 */
function localRateLimit(loaded: LoadedConfig): Obj {
  const { requestsPerSecond, burst } = loaded.config.edge.rateLimit;
  const bucket = tokenBucket(requestsPerSecond, burst);
  const full = { default_value: { numerator: 100, denominator: "HUNDRED" } };
  return {
    "@type": LOCAL_RATELIMIT_TYPE,
    stat_prefix: "mcp_agent",
    token_bucket: bucket,
    filter_enabled: { ...full, runtime_key: "mcp_gateway.rate_limit.enabled" },
    filter_enforced: { ...full, runtime_key: "mcp_gateway.rate_limit.enforced" },
    always_consume_default_token_bucket: false,
    enable_x_ratelimit_headers: "DRAFT_VERSION_03",
    rate_limits: [{ actions: [{ request_headers: { header_name: AGENT_HEADER, descriptor_key: "agent" } }] }],
    descriptors: [
      ...Object.keys(loaded.config.agents)
        .sort()
        .map((agent) => ({ entries: [{ key: "agent", value: agent }], token_bucket: bucket })),
      { entries: [{ key: "agent" }], token_bucket: bucket },
    ],
    max_dynamic_descriptors: MAX_DYNAMIC_AGENT_BUCKETS,
  };
}

/**
 * `/mcp` and `/mcp/views/<name>`: the aggregated endpoint, served by the ext-service's broker
 * listener. ext_authz and ext_proc are off here: the broker authenticates the agent itself, and
 * each of its hops comes back through this listener on the server's own route, where both run.
 * The local rate limit is off too: without ext_authz's x-mcp-agent header every agent would share
 * one bucket. The broker listener counts each request against the agent's global bucket itself
 * (ratelimit.ts takeAgentToken), and the global limit does not count its hops (via_broker).
 */
function brokerRoutes(loaded: LoadedConfig): Obj[] {
  // A 2025 session's requests after initialize (the answers to relayed server-to-client
  // requests, its GET stream, DELETE) hash to one broker replica (mcp_gateway_broker is
  // RING_HASH in envoy.yaml): a relayed request is pending on the replica that sent it, and only
  // that replica can take the client's answer. initialize carries no id and lands anywhere.
  const action = {
    cluster: BROKER_CLUSTER,
    timeout: "0s",
    idle_timeout: "3600s",
    hash_policy: [{ header: { header_name: SESSION_HEADER } }],
  };
  const perFilter = {
    [EXT_AUTHZ_FILTER]: { "@type": EXT_AUTHZ_PER_ROUTE_TYPE, disabled: true },
    [EXT_PROC_FILTER]: { "@type": EXT_PROC_PER_ROUTE_TYPE, disabled: true },
    [LOCAL_RATELIMIT_FILTER]: {
      "@type": LOCAL_RATELIMIT_TYPE,
      stat_prefix: "mcp_aggregate",
      token_bucket: tokenBucket(
        loaded.config.edge.rateLimit.requestsPerSecond,
        loaded.config.edge.rateLimit.burst,
      ),
      filter_enabled: {
        default_value: { numerator: 0, denominator: "HUNDRED" },
        runtime_key: "mcp_gateway.rate_limit.aggregate_enabled",
      },
    },
  };
  return [
    { name: "aggregate", match: { path: "/mcp" }, route: action, typed_per_filter_config: perFilter },
    {
      name: "aggregate-views",
      match: { safe_regex: { regex: "^/mcp/views/[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$" } },
      route: action,
      typed_per_filter_config: perFilter,
    },
  ];
}

function renderRoutes(servers: { server: RegistryServer; upstream: Upstream }[], loaded: LoadedConfig): Obj {
  const routes: Obj[] = [];
  for (const { server, upstream } of servers) routes.push(...serverRoutes(server, upstream, loaded));
  // Exact paths: they never overlap a server's routes, so the order among them does not matter.
  routes.push(...brokerRoutes(loaded));
  routes.push(
    {
      // RFC 9728 metadata is answered by ext_authz (a 200 denied_response) before routing; ext_authz
      // runs on direct-response routes too. This 404 only shows if ext_authz ever let one through.
      name: "resource-metadata",
      match: { prefix: RESOURCE_METADATA_PREFIX },
      direct_response: { status: 404, body: { inline_string: jsonRpcBody("server_unknown") } },
      response_headers_to_add: [JSON_CONTENT_TYPE],
    },
    {
      name: "not-found",
      match: { prefix: "/" },
      direct_response: { status: 404, body: { inline_string: jsonRpcBody("server_unknown") } },
      response_headers_to_add: [JSON_CONTENT_TYPE],
    },
  );
  return {
    "@type": ROUTE_TYPE,
    name: ROUTE_CONFIG_NAME,
    virtual_hosts: [
      {
        name: "mcp",
        domains: ["*"],
        routes,
        // Request bodies are buffered for ext_proc up to the gateway's own limit and no further:
        // a larger one gets Envoy's 413, mapped to the ext-service's body_too_large reply.
        request_body_buffer_limit: loaded.config.limits.maxRequestBytes,
        typed_per_filter_config: { [LOCAL_RATELIMIT_FILTER]: localRateLimit(loaded) },
      },
    ],
  };
}

function discoveryFile(kind: string, source: string, version: string, resources: Obj[]): string {
  const header = [
    `# Generated by \`mcp-gateway registry render-envoy\` from ${source} (registry version ${version}).`,
    `# ${kind}: a DiscoveryResponse Envoy reads through path_config_source. Do not edit; re-render.`,
  ].join("\n");
  return `${header}\n${stringify({ version_info: version, resources }, { lineWidth: 0, aliasDuplicateObjects: false })}`;
}

/** Renders and validates against Envoy's protos; throws ConfigError on any problem. */
export function renderEnvoy(loaded: LoadedConfig): RenderedEnvoy {
  const problems: ConfigProblem[] = [];
  const warnings: string[] = [];
  const parsed: { server: RegistryServer; upstreams: Upstream[] }[] = [];
  loaded.registry.servers.forEach((server, i) => {
    const result = parseUpstreams(server, i, loaded.registryFile);
    if (result.length > 0 && "file" in result[0]!) problems.push(...(result as ConfigProblem[]));
    else parsed.push({ server, upstreams: result as Upstream[] });
  });
  if (problems.length) throw new ConfigError(problems);

  for (const { server, upstreams } of parsed) {
    if (upstreams.length > 1) {
      warnings.push(
        `server '${server.name}' has ${upstreams.length} upstreams: Envoy hashes Mcp-Session-Id to one replica, ` +
          "but initialize may be answered by another, so the server must share session state across replicas or run stateless",
      );
    }
  }
  const clusters = parsed.map(({ server, upstreams }) => renderCluster(server, upstreams, loaded));
  const routeConfiguration = renderRoutes(
    parsed.map(({ server, upstreams }) => ({ server, upstream: upstreams[0]! })),
    loaded,
  );

  // Never hand Envoy something it would reject: decode our own output against its API.
  for (const [file, resources] of [
    [CLUSTERS_FILE, clusters],
    [ROUTES_FILE, [routeConfiguration]],
  ] as const) {
    const report = decodeEnvoy("envoy.service.discovery.v3.DiscoveryResponse", { resources });
    for (const e of report.errors) problems.push({ file, path: e.path, message: `Envoy API: ${e.message}` });
  }
  if (problems.length) throw new ConfigError(problems);

  const source = basename(loaded.registryFile);
  const version = loaded.registry.version;
  return {
    clusters,
    routeConfiguration,
    warnings,
    files: [
      { name: CLUSTERS_FILE, text: discoveryFile("CDS", source, version, clusters) },
      { name: ROUTES_FILE, text: discoveryFile("RDS", source, version, [routeConfiguration]) },
    ],
  };
}

/**
 * Writes each file atomically: a temporary file in the same directory, then rename(2) over the
 * target, so Envoy (watching the directory) and readers only ever see a whole old or whole new
 * file. Nothing is written unless rendering succeeded.
 */
export function writeRendered(outDir: string, rendered: RenderedEnvoy): string[] {
  mkdirSync(outDir, { recursive: true });
  const written: string[] = [];
  for (const file of rendered.files) {
    const target = join(outDir, file.name);
    const temp = join(outDir, `.${file.name}.${process.pid}.tmp`);
    try {
      writeFileSync(temp, file.text, { mode: 0o644 });
      renameSync(temp, target);
    } catch (err) {
      rmSync(temp, { force: true });
      throw err;
    }
    written.push(target);
  }
  return written;
}
