import { durationMs, isLoopbackHost, type GatewayConfig } from "../config/schema.js";
import { Reasons, type Reason } from "../policy/reasons.js";
import {
  AGENT_HEADER,
  BROKER_CLUSTER,
  CLUSTERS_FILE,
  LOCAL_RATELIMIT_FILTER,
  ROUTES_FILE,
} from "./render.js";
import type { EnvoyProblem } from "./validate-config.js";

/**
 * Checks across envoy.yaml and the rendered CDS/RDS files that the API decoder cannot see: the
 * gateway's contract with Envoy (filter order, fail-closed settings, metadata namespaces), route
 * and cluster references, timeouts that keep SSE alive, retries that never re-send a tools/call,
 * and the loopback admin. Input is the already-decoded JSON (run decodeEnvoy first).
 */

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const obj = (v: unknown): Obj => (isObj(v) ? v : {});

export const EXT_SERVICE_CLUSTER = "ext_service";
/** The global rate limit filter's domain: the ext-service's rate limit service keys buckets on it. */
export const RATE_LIMIT_DOMAIN = "mcp_gateway";
export const RATELIMIT_FILTER = "envoy.filters.http.ratelimit";
export const EXPECTED_FILTERS = [
  "envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
  "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
  "envoy.extensions.filters.http.ratelimit.v3.RateLimit",
  "envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor",
  "envoy.extensions.filters.http.router.v3.Router",
];
const HCM_TYPE = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";

const typeOf = (any: unknown): string => {
  const url = obj(any)["@type"];
  return typeof url === "string" ? url.slice(url.lastIndexOf("/") + 1) : "";
};

/** Duration string to milliseconds (the decoder has already checked the syntax). */
export function durationToMs(value: unknown): number | undefined {
  if (typeof value !== "string") return undefined;
  const m = /^(\d+)(?:\.(\d+))?s$/.exec(value);
  return m ? Number(m[1]) * 1000 + Number(`0.${m[2] ?? "0"}`) * 1000 : undefined;
}

export interface DeploymentInput {
  bootstrap: Obj;
  /** Cluster resources from the rendered CDS file. */
  clusters: Obj[];
  /** RouteConfiguration resources from the rendered RDS file. */
  routeConfigurations: Obj[];
  /** The gateway config the ext-service runs with, for limits and agents. */
  gateway?: GatewayConfig;
}

interface Hcm {
  path: string;
  listener: Obj;
  config: Obj;
}

function connectionManagers(bootstrap: Obj): Hcm[] {
  const out: Hcm[] = [];
  list(obj(bootstrap.static_resources).listeners).forEach((listener, i) => {
    list(obj(listener).filter_chains).forEach((chain, j) => {
      list(obj(chain).filters).forEach((filter, k) => {
        const config = obj(obj(filter).typed_config);
        if (typeOf(config) === HCM_TYPE) {
          out.push({
            path: `static_resources.listeners[${i}].filter_chains[${j}].filters[${k}].typed_config`,
            listener: obj(listener),
            config,
          });
        }
      });
    });
  });
  return out;
}

interface RouteRef {
  path: string;
  route: Obj;
}

function routesOf(config: Obj, base: string): RouteRef[] {
  const out: RouteRef[] = [];
  list(config.virtual_hosts).forEach((vh, i) => {
    list(obj(vh).routes).forEach((route, j) =>
      out.push({ path: `${base}.virtual_hosts[${i}].routes[${j}]`, route: obj(route) }),
    );
  });
  return out;
}

/** Methods a route can carry: from a `:method` header matcher, or all when there is none. */
function routeMethods(route: Obj): string[] | "any" {
  const matcher = list(obj(route.match).headers)
    .map(obj)
    .find((h) => h.name === ":method");
  if (!matcher) return "any";
  const sm = obj(matcher.string_match);
  if (typeof sm.exact === "string") return [sm.exact.toUpperCase()];
  const regex = obj(sm.safe_regex).regex;
  if (typeof regex === "string") {
    return ["GET", "POST", "DELETE", "PUT", "PATCH", "OPTIONS", "HEAD"].filter((m) =>
      new RegExp(regex).test(m),
    );
  }
  return "any";
}

function clusterNamesOf(route: Obj): string[] {
  const action = obj(route.route);
  if (typeof action.cluster === "string") return [action.cluster];
  return list(obj(action.weighted_clusters).clusters).map((c) => String(obj(c).name));
}

function watchedPath(source: unknown): { path?: string; dir?: string } {
  const p = obj(obj(source).path_config_source);
  return {
    path: typeof p.path === "string" ? p.path : undefined,
    dir:
      typeof obj(p.watched_directory).path === "string" ? String(obj(p.watched_directory).path) : undefined,
  };
}

function withoutListenerSpecifics(config: Obj): string {
  return JSON.stringify(config, (key, value: unknown) => {
    if (key === "stat_prefix" && typeof value === "string" && value.startsWith("mcp_")) return "<listener>";
    if (key === "listener") return "<listener>";
    return value;
  });
}

/**
 * GrpcService.EnvoyGrpc.retry_policy is read only by xDS (management-plane) streams; ext_authz and
 * ext_proc read GrpcService.retry_policy (Envoy's grpc/async_client_impl.cc). A retry policy in the
 * wrong place is silently ignored, so it is refused here.
 */
function checkGrpcRetryPlacement(grpcService: unknown, path: string, add: (p: string, m: string) => void) {
  if (obj(obj(grpcService).envoy_grpc).retry_policy !== undefined)
    add(
      `${path}.grpc_service.envoy_grpc.retry_policy`,
      "ignored by Envoy for ext_authz/ext_proc (xDS streams only): put retry_policy on grpc_service itself",
    );
}

/**
 * The global rate limit filter: it must ask the ext-service (whose rate limit service answers
 * from the shared store) in the gateway's domain, with a descriptor made from the agent header
 * ext_authz sets. Envoy's 20 ms default timeout is refused: behind a store round trip it turns
 * the shared limit off for much of the traffic (a timeout is an error, and errors pass).
 */
function checkGlobalRateLimit(
  found: { path: string; filter: Obj; config: Obj },
  add: (p: string, m: string) => void,
): void {
  const p = `${found.path}.typed_config`;
  const c = found.config;
  if (found.filter.name !== RATELIMIT_FILTER) add(`${found.path}.name`, `must be '${RATELIMIT_FILTER}'`);
  if (c.domain !== RATE_LIMIT_DOMAIN) add(`${p}.domain`, `must be '${RATE_LIMIT_DOMAIN}'`);
  const service = obj(c.rate_limit_service);
  if (obj(obj(service.grpc_service).envoy_grpc).cluster_name !== EXT_SERVICE_CLUSTER)
    add(`${p}.rate_limit_service.grpc_service`, `the rate limit service is '${EXT_SERVICE_CLUSTER}'`);
  if (service.transport_api_version !== "V3")
    add(`${p}.rate_limit_service.transport_api_version`, "must be V3");
  checkGrpcRetryPlacement(service.grpc_service, `${p}.rate_limit_service`, add);
  const timeout = durationToMs(c.timeout);
  if (timeout === undefined || timeout < 100)
    add(`${p}.timeout`, "set it to 100ms or more (Envoy's default 20ms times out behind a store round trip)");
  const actions = list(c.rate_limits).flatMap((r) => list(obj(r).actions).map(obj));
  const agent = actions.map((a) => obj(a.request_headers)).find((a) => a.header_name === AGENT_HEADER);
  if (!agent || agent.skip_if_absent === true)
    add(
      `${p}.rate_limits`,
      `no descriptor from the ${AGENT_HEADER} header (ext_authz sets it): requests would not be limited per agent`,
    );
}

export function checkEnvoyDeployment(input: DeploymentInput): EnvoyProblem[] {
  const problems: EnvoyProblem[] = [];
  const seen = new Set<string>();
  // Both MCP listeners share the route configuration: report each problem once.
  const add = (path: string, message: string) => {
    const key = `${path}\n${message}`;
    if (!seen.has(key)) problems.push({ path, message });
    seen.add(key);
  };
  const { bootstrap } = input;

  // Admin on loopback only.
  const adminAddress = obj(obj(obj(bootstrap.admin).address).socket_address).address;
  if (bootstrap.admin !== undefined && adminAddress !== "127.0.0.1" && adminAddress !== "::1") {
    add(
      "admin.address.socket_address.address",
      `admin must bind 127.0.0.1 (found '${String(adminAddress)}')`,
    );
  }

  const staticClusters = list(obj(bootstrap.static_resources).clusters).map(obj);
  const clusters = new Map<string, Obj>();
  for (const c of [...staticClusters, ...input.clusters]) clusters.set(String(c.name), c);

  // The ext-service cluster: two or more replicas, HTTP/2, gRPC health checks, circuit breakers.
  const ext = clusters.get(EXT_SERVICE_CLUSTER);
  const extPath = `static_resources.clusters[${staticClusters.findIndex((c) => c.name === EXT_SERVICE_CLUSTER)}]`;
  if (!ext) add("static_resources.clusters", `no '${EXT_SERVICE_CLUSTER}' cluster`);
  else {
    const endpoints = list(obj(ext.load_assignment).endpoints).flatMap((e) => list(obj(e).lb_endpoints));
    if (endpoints.length < 2) add(`${extPath}.load_assignment`, "the ext-service needs two or more replicas");
    const options = obj(
      obj(ext.typed_extension_protocol_options)["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"],
    );
    if (!isObj(obj(options.explicit_http_config).http2_protocol_options))
      add(
        `${extPath}.typed_extension_protocol_options`,
        "gRPC needs explicit HTTP/2 (http2_protocol_options)",
      );
    if (!list(ext.health_checks).some((h) => isObj(obj(h).grpc_health_check)))
      add(`${extPath}.health_checks`, "the ext-service must be health-checked with grpc_health_check");
    if (!isObj(ext.circuit_breakers)) add(`${extPath}.circuit_breakers`, "circuit breakers are required");
    // Whoever reaches the ext-service can claim any identity (it trusts the ext_authz metadata):
    // over a network, Envoy must authenticate with a client certificate.
    const remote = endpoints.some((e) => {
      const address = obj(obj(obj(obj(e).endpoint).address).socket_address).address;
      return typeof address === "string" && !isLoopbackHost(address);
    });
    const tls = obj(obj(ext.transport_socket).typed_config);
    const clientCerts = list(obj(tls.common_tls_context).tls_certificates);
    const validation = obj(obj(tls.common_tls_context).validation_context);
    if (remote && (clientCerts.length === 0 || !isObj(validation.trusted_ca)))
      add(
        `${extPath}.transport_socket`,
        "the ext-service is reached over the network: use mutual TLS (a client certificate, and trusted_ca to verify the ext-service's)",
      );
    if (input.gateway && remote && !input.gateway.listen.grpc.tls)
      add(
        `${extPath}.transport_socket`,
        "gateway.yaml has no listen.grpc.tls for the ext-service's side of mutual TLS",
      );
    // Envoy keeps sending new calls to a replica until its health checks have seen NOT_SERVING
    // unhealthy_threshold times: serve must keep answering that long after SIGTERM (drainDelay).
    if (input.gateway) {
      const check = list(ext.health_checks)
        .map(obj)
        .find((h) => isObj(h.grpc_health_check));
      const interval = durationToMs(check?.interval) ?? 0;
      const jitter = durationToMs(check?.interval_jitter) ?? 0;
      const needed = interval * Number(check?.unhealthy_threshold ?? 1) + jitter;
      const drainDelay = durationMs(input.gateway.drainDelay);
      if (drainDelay < needed)
        add(
          `${extPath}.health_checks`,
          `gateway.yaml drainDelay ${input.gateway.drainDelay} is below interval x unhealthy_threshold + jitter (${needed}ms): Envoy would still send calls to a replica that stopped accepting them`,
        );
    }
  }

  // Dynamic resources come from the rendered files, watched by directory.
  const cds = watchedPath(obj(bootstrap.dynamic_resources).cds_config);
  if (!cds.path?.endsWith(`/${CLUSTERS_FILE}`) || !cds.dir || !cds.path.startsWith(`${cds.dir}/`))
    add("dynamic_resources.cds_config", `CDS must read <dir>/${CLUSTERS_FILE} with watched_directory <dir>`);

  const hcms = connectionManagers(bootstrap);
  const mcpHcms = hcms.filter((h) => isObj(h.config.rds));
  if (mcpHcms.length === 0) add("static_resources.listeners", "no listener serves the MCP routes (rds)");

  const routeConfigByName = new Map(input.routeConfigurations.map((rc) => [String(rc.name), rc]));
  const allRoutes: RouteRef[] = [];
  hcms.forEach((h) => {
    if (isObj(h.config.route_config))
      allRoutes.push(...routesOf(h.config.route_config, `${h.path}.route_config`));
  });
  input.routeConfigurations.forEach((rc) =>
    allRoutes.push(...routesOf(rc, `${ROUTES_FILE}:${String(rc.name)}`)),
  );

  for (const h of mcpHcms) {
    const rds = obj(h.config.rds);
    const source = watchedPath(rds.config_source);
    if (!source.path?.endsWith(`/${ROUTES_FILE}`) || source.dir !== cds.dir)
      add(`${h.path}.rds.config_source`, `RDS must read ${ROUTES_FILE} from the CDS watched directory`);
    const rc = routeConfigByName.get(String(rds.route_config_name));
    if (!rc)
      add(
        `${h.path}.rds.route_config_name`,
        `no rendered route configuration '${String(rds.route_config_name)}'`,
      );

    // Filter order.
    const filters = list(h.config.http_filters).map(obj);
    const types = filters.map((f) => typeOf(f.typed_config));
    if (JSON.stringify(types) !== JSON.stringify(EXPECTED_FILTERS)) {
      add(
        `${h.path}.http_filters`,
        `filters must be ext_authz, local_ratelimit, ratelimit, ext_proc, router (found ${types.map((t) => t.split(".").at(-1)).join(", ")})`,
      );
    }
    const filter = (type: string) => {
      const i = types.indexOf(type);
      return i < 0
        ? undefined
        : {
            path: `${h.path}.http_filters[${i}]`,
            filter: filters[i]!,
            config: obj(filters[i]!.typed_config),
          };
    };

    const authz = filter(EXPECTED_FILTERS[0]!);
    if (authz) {
      const c = authz.config;
      const cluster = obj(obj(c.grpc_service).envoy_grpc).cluster_name;
      if (cluster !== EXT_SERVICE_CLUSTER)
        add(`${authz.path}.typed_config.grpc_service`, `ext_authz must call '${EXT_SERVICE_CLUSTER}'`);
      if (c.failure_mode_allow === true)
        add(`${authz.path}.typed_config.failure_mode_allow`, "ext_authz must fail closed");
      if (c.transport_api_version !== "V3")
        add(`${authz.path}.typed_config.transport_api_version`, "must be V3");
      if (c.with_request_body !== undefined)
        add(
          `${authz.path}.typed_config.with_request_body`,
          "ext_authz is headers only; bodies go to ext_proc",
        );
      checkGrpcRetryPlacement(c.grpc_service, `${authz.path}.typed_config`, add);
      if (authz.filter.name !== "envoy.filters.http.ext_authz")
        add(
          `${authz.path}.name`,
          "must be 'envoy.filters.http.ext_authz' (the ext-service reads metadata under that namespace)",
        );
    }

    const global = filter(EXPECTED_FILTERS[2]!);
    if (global) checkGlobalRateLimit(global, add);

    const proc = filter(EXPECTED_FILTERS[3]!);
    let messageTimeout: number | undefined;
    if (proc) {
      const c = proc.config;
      const p = `${proc.path}.typed_config`;
      if (obj(obj(c.grpc_service).envoy_grpc).cluster_name !== EXT_SERVICE_CLUSTER)
        add(`${p}.grpc_service`, `ext_proc must call '${EXT_SERVICE_CLUSTER}'`);
      if (c.failure_mode_allow === true) add(`${p}.failure_mode_allow`, "ext_proc must fail closed");
      checkGrpcRetryPlacement(c.grpc_service, p, add);
      if (obj(c.status_on_error).code !== "ServiceUnavailable")
        add(
          `${p}.status_on_error`,
          "must be { code: ServiceUnavailable }: an ext-service outage answers 503 like ext_authz's, and the 503 local reply mapper makes it JSON-RPC",
        );
      if (c.allow_mode_override !== true)
        add(`${p}.allow_mode_override`, "must be true (response body mode is chosen per response)");
      const mode = obj(c.processing_mode);
      const expected: Record<string, string> = {
        request_header_mode: "SEND",
        request_body_mode: "BUFFERED",
        response_header_mode: "SEND",
        response_body_mode: "NONE",
        request_trailer_mode: "SKIP",
        response_trailer_mode: "SKIP",
      };
      // Why a value is required where the reason is not obvious (proto/README.md explains).
      const why: Record<string, string> = {
        response_header_mode:
          ": local replies of ext_authz and local_ratelimit must reach the ext-service, which audits them",
      };
      for (const [k, v] of Object.entries(expected)) {
        if (mode[k] !== v)
          add(
            `${p}.processing_mode.${k}`,
            `must be ${v} (found ${String(mode[k] ?? "unset")})${why[k] ?? ""}`,
          );
      }
      const md = obj(c.metadata_options);
      if (!list(obj(md.forwarding_namespaces).untyped).includes("envoy.filters.http.ext_authz"))
        add(`${p}.metadata_options.forwarding_namespaces`, "must forward 'envoy.filters.http.ext_authz'");
      if (!list(obj(md.receiving_namespaces).untyped).includes("mcp_gateway"))
        add(`${p}.metadata_options.receiving_namespaces`, "must receive 'mcp_gateway'");
      messageTimeout = durationToMs(c.message_timeout) ?? 200;
    }

    // Timeouts: every per-message timer must fire long before a stream is considered idle.
    if (messageTimeout !== undefined) {
      const limits: [string, unknown][] = [
        [`${h.path}.stream_idle_timeout`, h.config.stream_idle_timeout],
        [`${h.path}.request_timeout`, h.config.request_timeout],
      ];
      if (rc) {
        for (const { path, route } of routesOf(rc, `${ROUTES_FILE}:${String(rc.name)}`)) {
          const action = obj(route.route);
          limits.push(
            [`${path}.route.timeout`, action.timeout],
            [`${path}.route.idle_timeout`, action.idle_timeout],
          );
        }
      }
      for (const [path, value] of limits) {
        const ms = durationToMs(value);
        if (ms !== undefined && ms > 0 && ms <= messageTimeout)
          add(path, `${String(value)} is not above the ext_proc message_timeout (${messageTimeout}ms)`);
      }
    }

    // Per-agent rate limit: the vhost config sits under the filter's name and keys on x-mcp-agent.
    const rl = filter(EXPECTED_FILTERS[1]!);
    if (rl && rc) {
      list(rc.virtual_hosts).forEach((vh, i) => {
        const v = obj(vh);
        const vp = `${ROUTES_FILE}:${String(rc.name)}.virtual_hosts[${i}]`;
        const perRoute = obj(obj(v.typed_per_filter_config)[String(rl.filter.name)]);
        if (!isObj(perRoute.token_bucket))
          add(`${vp}.typed_per_filter_config`, `no token bucket for filter '${String(rl.filter.name)}'`);
        if (v.rate_limits !== undefined)
          add(
            `${vp}.rate_limits`,
            "route-level rate limit descriptors are deprecated for the local rate limit: use the filter's own rate_limits",
          );
        const actions = list(perRoute.rate_limits)
          .flatMap((r) => list(obj(r).actions))
          .map((a) => obj(obj(a).request_headers));
        const action = actions.find((a) => a.header_name === AGENT_HEADER);
        if (!action)
          add(
            `${vp}.typed_per_filter_config`,
            `the local rate limit's rate_limits make no descriptor from the ${AGENT_HEADER} header`,
          );
        const entries = list(perRoute.descriptors).flatMap((d) => list(obj(d).entries).map(obj));
        for (const e of entries) {
          if (action && e.key !== action.descriptor_key)
            add(
              `${vp}.typed_per_filter_config`,
              `descriptor key '${String(e.key)}' is not '${String(action.descriptor_key)}'`,
            );
        }
        // A wildcard descriptor (no value) gives every agent its own bucket; without one, every
        // agent named in gateway.yaml needs an exact descriptor or it shares the default bucket.
        const wildcard = entries.some((e) => e.value === undefined || e.value === "");
        if (!wildcard && input.gateway) {
          const agents = new Set(entries.map((e) => e.value));
          for (const agent of Object.keys(input.gateway.agents))
            if (!agents.has(agent))
              add(`${vp}.typed_per_filter_config`, `agent '${agent}' has no token bucket`);
        }
        if (wildcard && perRoute.max_dynamic_descriptors === undefined)
          add(
            `${vp}.typed_per_filter_config.max_dynamic_descriptors`,
            "size the per-agent buckets (the default is 20 agents)",
          );
      });
      if (rl.filter.name !== LOCAL_RATELIMIT_FILTER)
        add(`${rl.path}.name`, `must be '${LOCAL_RATELIMIT_FILTER}'`);
    }

    // Envoy's own error replies: JSON-RPC errors matching the reason table.
    for (const [i, mapper] of list(obj(h.config.local_reply_config).mappers).entries()) {
      const body = obj(obj(obj(mapper).body_format_override).json_format);
      const error = obj(body.error);
      const reason = obj(error.data).reason as Reason;
      const info = Reasons[reason];
      const mp = `${h.path}.local_reply_config.mappers[${i}]`;
      if (!info) add(mp, `unknown reason '${String(reason)}'`);
      else if (error.code !== info.code || error.message !== info.message)
        add(mp, `JSON-RPC error for '${reason}' must be code ${info.code}, message '${info.message}'`);
      else if (obj(mapper).status_code !== undefined && obj(mapper).status_code !== info.status)
        add(`${mp}.status_code`, `must be ${info.status}, the status of '${reason}'`);
    }

    // Buffer limits vs the gateway's body limits: Envoy must not refuse what the ext-service
    // would accept. Requests: the virtual host's request_body_buffer_limit, else the listener's
    // buffer; BUFFERED responses: the listener's buffer.
    if (input.gateway) {
      const limit = Number(h.listener.per_connection_buffer_limit_bytes ?? 1_048_576);
      const { maxRequestBytes, maxResponseBytes } = input.gateway.limits;
      const hosts = rc ? list(rc.virtual_hosts).map(obj) : [];
      hosts.forEach((v, i) => {
        const requestLimit = Number(v.request_body_buffer_limit ?? limit);
        if (requestLimit < maxRequestBytes)
          add(
            `${ROUTES_FILE}:${String(rc!.name)}.virtual_hosts[${i}]`,
            `request buffer ${requestLimit} is below limits.maxRequestBytes ${maxRequestBytes}: Envoy would 413 first`,
          );
      });
      if (limit < maxResponseBytes)
        add(
          `${h.path}`,
          `listener buffer ${limit} is below limits.maxResponseBytes ${maxResponseBytes}: Envoy would 500 first`,
        );
    }
  }

  // All MCP listeners run the same chain.
  if (mcpHcms.length > 1) {
    const first = withoutListenerSpecifics(mcpHcms[0]!.config);
    for (const h of mcpHcms.slice(1)) {
      if (withoutListenerSpecifics(h.config) !== first)
        add(
          h.path,
          `differs from ${mcpHcms[0]!.path} (only stat_prefix and the access log's listener may differ)`,
        );
    }
  }

  // Every route's cluster exists; no retries where tools/call can travel.
  for (const { path, route } of allRoutes) {
    for (const name of clusterNamesOf(route)) {
      if (!clusters.has(name)) add(`${path}.route`, `cluster '${name}' does not exist`);
    }
    const action = obj(route.route);
    // Session affinity: a route's hash_policy only means something on a consistent-hash cluster
    // (Envoy ignores it under LEAST_REQUEST), and the broker's routes must hash the session id:
    // a relayed server-to-client request waits on one replica for the client's answer.
    const hashing = list(action.hash_policy).length > 0;
    for (const name of clusterNamesOf(route)) {
      const policy = clusters.get(name)?.lb_policy;
      if (hashing && clusters.has(name) && policy !== "RING_HASH" && policy !== "MAGLEV")
        add(
          `${path}.route.hash_policy`,
          `cluster '${name}' is ${String(policy ?? "ROUND_ROBIN")}: a hash_policy needs RING_HASH or MAGLEV`,
        );
      const sessionHashed = list(action.hash_policy).some(
        (h) => String(obj(obj(h).header).header_name).toLowerCase() === "mcp-session-id",
      );
      if (name === BROKER_CLUSTER && !sessionHashed)
        add(
          `${path}.route`,
          `the aggregated endpoint's route must hash mcp-session-id (hash_policy): a session's answers to relayed requests must reach the broker replica that sent them`,
        );
    }
    const methods = routeMethods(route);
    const carriesPost = isObj(route.route) && (methods === "any" || methods.includes("POST"));
    if (carriesPost && action.retry_policy !== undefined)
      add(`${path}.route.retry_policy`, "a route that carries POST (tools/call) must not retry");
    const retryOn = String(obj(action.retry_policy).retry_on ?? "");
    const unsafe = retryOn
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s && s !== "connect-failure" && s !== "refused-stream");
    if (unsafe.length)
      add(
        `${path}.route.retry_policy.retry_on`,
        `only connect-failure and refused-stream are safe (found ${unsafe.join(", ")})`,
      );
  }
  for (const rc of input.routeConfigurations) {
    list(rc.virtual_hosts).forEach((vh, i) => {
      if (obj(vh).retry_policy !== undefined)
        add(
          `${ROUTES_FILE}:${String(rc.name)}.virtual_hosts[${i}].retry_policy`,
          "no virtual-host retry policy: it would cover POST",
        );
    });
  }

  // Tracing and other static references.
  for (const h of hcms) {
    const tracer = obj(obj(obj(h.config.tracing).provider).typed_config);
    const cluster = obj(obj(tracer.grpc_service).envoy_grpc).cluster_name;
    if (typeof cluster === "string" && !clusters.has(cluster))
      add(`${h.path}.tracing`, `cluster '${cluster}' does not exist`);
  }
  return problems;
}
