import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { loadConfig, parseGatewayConfig } from "../../ext-service/src/config/load.js";
import { CLUSTERS_FILE, ROUTES_FILE, renderEnvoy } from "../../ext-service/src/envoy/render.js";
import { checkEnvoyDeployment, type DeploymentInput } from "../../ext-service/src/envoy/semantics.js";
import { validateEnvoyYaml } from "../../ext-service/src/envoy/validate-config.js";

// envoy/envoy.yaml and the committed envoy/rendered/ files, checked as strictly as we can without an
// Envoy binary: decoded against Envoy's v3 API, then cross-checked for the gateway's contract.

const ROOT = join(import.meta.dirname, "..", "..");
const read = (path: string) => readFileSync(join(ROOT, path), "utf8");
type Obj = Record<string, unknown>;

function decoded(path: string, type: string) {
  const report = validateEnvoyYaml(read(path), type);
  return { report, value: report.value as Obj };
}

const bootstrap = decoded("envoy/envoy.yaml", "envoy.config.bootstrap.v3.Bootstrap");
const cds = decoded(`envoy/rendered/${CLUSTERS_FILE}`, "envoy.service.discovery.v3.DiscoveryResponse");
const rds = decoded(`envoy/rendered/${ROUTES_FILE}`, "envoy.service.discovery.v3.DiscoveryResponse");
const gateway = loadConfig(join(ROOT, "deploy/gateway.yaml"));

function input(): DeploymentInput {
  return {
    bootstrap: structuredClone(bootstrap.value),
    clusters: structuredClone(cds.value.resources as Obj[]),
    routeConfigurations: structuredClone(rds.value.resources as Obj[]),
    gateway: gateway.config,
  };
}

/** Walks a dotted/indexed path such as `a.b[0].c` and returns the parent object and last key. */
function at(root: unknown, path: string): [Obj, string] {
  const keys = path.match(/[^.[\]]+/g)!;
  let node = root as Obj;
  for (const key of keys.slice(0, -1)) node = node[key] as Obj;
  return [node, keys.at(-1)!];
}
function set(root: unknown, path: string, value: unknown): void {
  const [parent, key] = at(root, path);
  if (value === undefined) delete parent[key];
  else parent[key] = value;
}

const HCM = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config";
const messages = (i: DeploymentInput) => checkEnvoyDeployment(i).map((p) => `${p.path}: ${p.message}`);

describe("envoy/envoy.yaml against Envoy's API", () => {
  it("decodes as a Bootstrap without errors or deprecated fields", () => {
    expect(bootstrap.report.errors).toEqual([]);
    expect(bootstrap.report.warnings).toEqual([]);
  });

  it("uses exactly the extensions the gateway relies on", () => {
    expect([...bootstrap.report.anyTypes.keys()].sort()).toEqual([
      "envoy.config.trace.v3.OpenTelemetryConfig",
      "envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter",
      "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
      "envoy.extensions.clusters.dns.v3.DnsCluster",
      "envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
      "envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor",
      "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
      "envoy.extensions.filters.http.ratelimit.v3.RateLimit",
      "envoy.extensions.filters.http.router.v3.Router",
      "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
      "envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
      "envoy.extensions.resource_monitors.fixed_heap.v3.FixedHeapConfig",
      "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
      "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
      "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
    ]);
  });
});

describe("rendered CDS/RDS files", () => {
  it("decode as DiscoveryResponses holding only Clusters / one RouteConfiguration", () => {
    expect(cds.report.errors).toEqual([]);
    expect(rds.report.errors).toEqual([]);
    expect(cds.report.warnings).toEqual([]);
    expect(rds.report.warnings).toEqual([]);
    expect(cds.report.anyTypes.get("envoy.config.cluster.v3.Cluster")).toBe(3);
    // Name resolution through the DNS cluster extension, never for the record's TTL (W4).
    expect(cds.report.anyTypes.get("envoy.extensions.clusters.dns.v3.DnsCluster")).toBe(3);
    for (const cluster of cds.value.resources as Obj[]) {
      expect(cluster.type).toBeUndefined();
      expect((cluster.cluster_type as Obj).typed_config).toMatchObject({
        dns_refresh_rate: "5s",
        respect_dns_ttl: false,
      });
    }
    const routeTypes = [...rds.report.anyTypes.keys()].sort();
    expect(routeTypes).toEqual([
      "envoy.config.route.v3.RouteConfiguration",
      "envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute",
      "envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute",
      "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
      "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate",
    ]);
    const clusters = cds.value.resources as Obj[];
    expect(clusters.map((c) => c["@type"])).toEqual(
      Array(3).fill("type.googleapis.com/envoy.config.cluster.v3.Cluster"),
    );
  });

  it("are what render-envoy makes from deploy/gateway.yaml today (never hand-edited, never stale)", () => {
    const rendered = renderEnvoy(gateway);
    for (const file of rendered.files) {
      expect(read(`envoy/rendered/${file.name}`), `envoy/rendered/${file.name} is stale: re-render`).toBe(
        file.text,
      );
    }
  });
});

describe("semantic checks across envoy.yaml and the rendered files", () => {
  it("pass for the committed deployment", () => {
    expect(messages(input())).toEqual([]);
  });

  it("pass for a gateway.yaml left at its default limits (the shipped bootstrap and the defaults agree)", () => {
    const defaults = parseGatewayConfig(
      "registry: registry.yaml\nauth: { mode: optional }\nagents: { research-bot: {}, support-bot: {}, release-bot: {} }\n" +
        "listen: { grpc: { host: 0.0.0.0, tls: { cert: c.pem, key: k.pem, clientCa: ca.pem } } }\n",
    );
    expect(defaults.limits.maxResponseBytes).toBe(2_097_152);
    expect(messages({ ...input(), gateway: defaults })).toEqual([]);
  });

  it("catch a broker route without session affinity, and a hash_policy on a cluster that does not hash", () => {
    const i = input();
    const routes = (i.routeConfigurations[0]!.virtual_hosts as Obj[])[0]!.routes as Obj[];
    const at = routes.findIndex((r) => r.name === "aggregate");
    delete (routes[at]!.route as Obj).hash_policy;
    const broker = ((i.bootstrap.static_resources as Obj).clusters as Obj[]).find(
      (c) => c.name === "mcp_gateway_broker",
    )!;
    broker.lb_policy = "LEAST_REQUEST";
    expect(messages(i)).toEqual([
      `${ROUTES_FILE}:mcp_routes.virtual_hosts[0].routes[${at}].route: the aggregated endpoint's route must hash mcp-session-id (hash_policy): a session's answers to relayed requests must reach the broker replica that sent them`,
      `${ROUTES_FILE}:mcp_routes.virtual_hosts[0].routes[${at + 1}].route.hash_policy: cluster 'mcp_gateway_broker' is LEAST_REQUEST: a hash_policy needs RING_HASH or MAGLEV`,
    ]);
  });

  it("catch a route to a cluster that does not exist", () => {
    const i = input();
    const route = (i.routeConfigurations[0]!.virtual_hosts as Obj[])[0]!.routes as Obj[];
    (route[0]!.route as Obj).cluster = "mcp_nope";
    expect(messages(i)).toEqual([
      `${ROUTES_FILE}:mcp_routes.virtual_hosts[0].routes[0].route: cluster 'mcp_nope' does not exist`,
    ]);
  });

  it("catch filters out of order, and ext_authz / ext_proc pointed elsewhere or failing open", () => {
    const i = input();
    const filters = (at(i.bootstrap, `${HCM}.http_filters`)[0].http_filters as Obj[]).slice();
    [filters[1], filters[2]] = [filters[2]!, filters[1]!];
    set(i.bootstrap, `${HCM}.http_filters`, filters);
    const out = messages(i);
    expect(out).toContain(
      `${HCM}.http_filters: filters must be ext_authz, local_ratelimit, ratelimit, ext_proc, router (found ExtAuthz, RateLimit, LocalRateLimit, ExternalProcessor, Router)`,
    );

    const j = input();
    set(
      j.bootstrap,
      `${HCM}.http_filters[0].typed_config.grpc_service.envoy_grpc.cluster_name`,
      "otel_collector",
    );
    set(j.bootstrap, `${HCM}.http_filters[3].typed_config.failure_mode_allow`, true);
    set(j.bootstrap, `${HCM}.http_filters[3].typed_config.processing_mode.request_body_mode`, "STREAMED");
    expect(messages(j).filter((m) => m.startsWith(HCM))).toEqual([
      `${HCM}.http_filters[0].typed_config.grpc_service: ext_authz must call 'ext_service'`,
      `${HCM}.http_filters[3].typed_config.failure_mode_allow: ext_proc must fail closed`,
      `${HCM}.http_filters[3].typed_config.processing_mode.request_body_mode: must be BUFFERED (found STREAMED)`,
    ]);
  });

  it("catch a global rate limit that would not share the per-agent limit through the ext-service", () => {
    const i = input();
    const rl = `${HCM}.http_filters[2].typed_config`;
    set(i.bootstrap, `${rl}.domain`, "other");
    set(i.bootstrap, `${rl}.rate_limit_service.grpc_service.envoy_grpc.cluster_name`, "otel_collector");
    set(i.bootstrap, `${rl}.timeout`, "0.02s");
    set(i.bootstrap, `${rl}.rate_limits`, [
      { actions: [{ request_headers: { header_name: "x-forwarded-for", descriptor_key: "ip" } }] },
    ]);
    expect(messages(i).filter((m) => m.startsWith(HCM))).toEqual([
      `${rl}.domain: must be 'mcp_gateway'`,
      `${rl}.rate_limit_service.grpc_service: the rate limit service is 'ext_service'`,
      `${rl}.timeout: set it to 100ms or more (Envoy's default 20ms times out behind a store round trip)`,
      `${rl}.rate_limits: no descriptor from the x-mcp-agent header (ext_authz sets it): requests would not be limited per agent`,
    ]);
  });

  it("catch response_header_mode SKIP: local replies would bypass the ext-service's audit (issue 10)", () => {
    const i = input();
    set(i.bootstrap, `${HCM}.http_filters[3].typed_config.processing_mode.response_header_mode`, "SKIP");
    expect(messages(i)).toContain(
      `${HCM}.http_filters[3].typed_config.processing_mode.response_header_mode: must be SEND (found SKIP): ` +
        "local replies of ext_authz and local_ratelimit must reach the ext-service, which audits them",
    );
  });

  it("catch an ext_proc message timeout that is not below the route and idle timeouts", () => {
    const i = input();
    set(i.bootstrap, `${HCM}.http_filters[3].typed_config.message_timeout`, "400s");
    const out = messages(i);
    expect(out).toContain(
      `${HCM}.stream_idle_timeout: 300s is not above the ext_proc message_timeout (400000ms)`,
    );
    expect(out).toContain(
      `${ROUTES_FILE}:mcp_routes.virtual_hosts[0].routes[0].route.idle_timeout: 300s is not above the ext_proc message_timeout (400000ms)`,
    );
  });

  it("catch a retry policy on a route that carries POST (tools/call), and unsafe retry conditions", () => {
    const i = input();
    const routes = (i.routeConfigurations[0]!.virtual_hosts as Obj[])[0]!.routes as Obj[];
    const getRoute = routes[1]!.route as Obj;
    (routes[0]!.route as Obj).retry_policy = structuredClone(getRoute.retry_policy);
    (getRoute.retry_policy as Obj).retry_on = "5xx,connect-failure";
    expect(messages(i)).toEqual([
      `${ROUTES_FILE}:mcp_routes.virtual_hosts[0].routes[0].route.retry_policy: a route that carries POST (tools/call) must not retry`,
      `${ROUTES_FILE}:mcp_routes.virtual_hosts[0].routes[1].route.retry_policy.retry_on: only connect-failure and refused-stream are safe (found 5xx)`,
    ]);
  });

  it("catch an admin interface reachable from outside the host", () => {
    const i = input();
    set(i.bootstrap, "admin.address.socket_address.address", "0.0.0.0");
    expect(messages(i)).toEqual([
      "admin.address.socket_address.address: admin must bind 127.0.0.1 (found '0.0.0.0')",
    ]);
  });

  it("catch an ext-service cluster with one replica, no HTTP/2 or no gRPC health check", () => {
    const i = input();
    const clusters = at(i.bootstrap, "static_resources.clusters")[0].clusters as Obj[];
    const ext = clusters[0]!;
    (((ext.load_assignment as Obj).endpoints as Obj[])[0]!.lb_endpoints as unknown[]).pop();
    delete (ext.typed_extension_protocol_options as Obj)[
      "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ];
    ext.health_checks = [{ timeout: "1s", interval: "5s", tcp_health_check: {} }];
    expect(messages(i)).toEqual([
      "static_resources.clusters[0].load_assignment: the ext-service needs two or more replicas",
      "static_resources.clusters[0].typed_extension_protocol_options: gRPC needs explicit HTTP/2 (http2_protocol_options)",
      "static_resources.clusters[0].health_checks: the ext-service must be health-checked with grpc_health_check",
    ]);
  });

  it("catch the two MCP listeners drifting apart, and a buffer below the gateway's body limits", () => {
    const i = input();
    const plain = "static_resources.listeners[1].filter_chains[0].filters[0].typed_config";
    set(i.bootstrap, `${plain}.stream_idle_timeout`, "30s");
    set(i.bootstrap, "static_resources.listeners[0].per_connection_buffer_limit_bytes", 1_048_576);
    (i.routeConfigurations[0]!.virtual_hosts as Obj[])[0]!.request_body_buffer_limit = "65536";
    expect(messages(i)).toEqual([
      `${ROUTES_FILE}:mcp_routes.virtual_hosts[0]: request buffer 65536 is below limits.maxRequestBytes 1048576: Envoy would 413 first`,
      `${HCM}: listener buffer 1048576 is below limits.maxResponseBytes 2097152: Envoy would 500 first`,
      `${plain}: differs from ${HCM} (only stat_prefix and the access log's listener may differ)`,
    ]);
  });

  it("catch a local reply whose JSON-RPC error disagrees with the reason table", () => {
    const i = input();
    set(
      i.bootstrap,
      `${HCM}.local_reply_config.mappers[0].body_format_override.json_format.error.code`,
      -32000,
    );
    expect(messages(i)[0]).toBe(
      `${HCM}.local_reply_config.mappers[0]: JSON-RPC error for 'rate_limited' must be code -32029, message 'Too many requests; slow down'`,
    );
    const j = input();
    const mappers = at(j.bootstrap, `${HCM}.local_reply_config.mappers`)[0].mappers as Obj[];
    const tooLarge = mappers.findIndex((m) => JSON.stringify(m).includes("response_payload_too_large"));
    mappers[tooLarge]!.status_code = 500;
    expect(messages(j)[0]).toBe(
      `${HCM}.local_reply_config.mappers[${tooLarge}].status_code: must be 502, the status of 'response_too_large'`,
    );
  });

  it("catch a rate limit that is not keyed by the verified agent, or misses an agent", () => {
    const i = input();
    const vh = (i.routeConfigurations[0]!.virtual_hosts as Obj[])[0]!;
    const rl = (vh.typed_per_filter_config as Obj)["envoy.filters.http.local_ratelimit"] as Obj;
    rl.rate_limits = [
      { actions: [{ request_headers: { header_name: "x-agent", descriptor_key: "agent" } }] },
    ];
    (rl.descriptors as unknown[]).pop(); // the wildcard
    (rl.descriptors as unknown[]).pop(); // support-bot's own
    const vp = `${ROUTES_FILE}:mcp_routes.virtual_hosts[0]`;
    expect(messages(i)).toEqual([
      `${vp}.typed_per_filter_config: the local rate limit's rate_limits make no descriptor from the x-mcp-agent header`,
      `${vp}.typed_per_filter_config: agent 'support-bot' has no token bucket`,
    ]);

    // Route-level descriptors (deprecated for the local rate limit), and a wildcard without a size.
    const j = input();
    const jvh = (j.routeConfigurations[0]!.virtual_hosts as Obj[])[0]!;
    jvh.rate_limits = structuredClone(rl.rate_limits);
    delete ((jvh.typed_per_filter_config as Obj)["envoy.filters.http.local_ratelimit"] as Obj)
      .max_dynamic_descriptors;
    expect(messages(j)).toEqual([
      `${vp}.rate_limits: route-level rate limit descriptors are deprecated for the local rate limit: use the filter's own rate_limits`,
      `${vp}.typed_per_filter_config.max_dynamic_descriptors: size the per-agent buckets (the default is 20 agents)`,
    ]);
  });

  it("give every agent its own bucket: named agents exactly, all others through the wildcard", () => {
    const vh = ((rds.value.resources as Obj[])[0]!.virtual_hosts as Obj[])[0]!;
    expect(vh.rate_limits).toBeUndefined();
    const rl = (vh.typed_per_filter_config as Obj)["envoy.filters.http.local_ratelimit"] as Obj;
    expect(rl.rate_limits).toEqual([
      { actions: [{ request_headers: { header_name: "x-mcp-agent", descriptor_key: "agent" } }] },
    ]);
    const entries = (rl.descriptors as Obj[]).map((d) => (d.entries as Obj[])[0]);
    expect(entries).toEqual([
      ...Object.keys(gateway.config.agents)
        .sort()
        .map((agent) => ({ key: "agent", value: agent })),
      { key: "agent" },
    ]);
    expect(rl.max_dynamic_descriptors).toBe(10_000);
  });

  it("catch a retry policy ext_authz or ext_proc would ignore (envoy_grpc.retry_policy is for xDS)", () => {
    const i = input();
    const policy = { retry_on: "connect-failure", num_retries: 1 };
    set(i.bootstrap, `${HCM}.http_filters[0].typed_config.grpc_service.envoy_grpc.retry_policy`, policy);
    set(i.bootstrap, `${HCM}.http_filters[3].typed_config.grpc_service.envoy_grpc.retry_policy`, policy);
    expect(messages(i).filter((m) => m.startsWith(HCM))).toEqual([
      `${HCM}.http_filters[0].typed_config.grpc_service.envoy_grpc.retry_policy: ignored by Envoy for ext_authz/ext_proc (xDS streams only): put retry_policy on grpc_service itself`,
      `${HCM}.http_filters[3].typed_config.grpc_service.envoy_grpc.retry_policy: ignored by Envoy for ext_authz/ext_proc (xDS streams only): put retry_policy on grpc_service itself`,
    ]);
    // The shipped ext_authz retries where Envoy reads it.
    const authz = at(bootstrap.value, `${HCM}.http_filters[0].typed_config`)[0].typed_config as Obj;
    expect((authz.grpc_service as Obj).retry_policy).toMatchObject({
      retry_on: "connect-failure,refused-stream",
    });
  });

  it("catch an ext_proc that would answer an outage with 500 instead of ext_authz's 503", () => {
    const i = input();
    set(i.bootstrap, `${HCM}.http_filters[3].typed_config.status_on_error`, undefined);
    expect(messages(i).filter((m) => m.startsWith(HCM))).toEqual([
      `${HCM}.http_filters[3].typed_config.status_on_error: must be { code: ServiceUnavailable }: an ext-service outage answers 503 like ext_authz's, and the 503 local reply mapper makes it JSON-RPC`,
    ]);
  });
});

describe("what envoy.yaml promises in prose", () => {
  const hcm = at(bootstrap.value, `${HCM}.x`)[0];
  it("keeps SSE alive: no route deadline on GET/POST, idle timeouts of minutes", () => {
    const routes = ((rds.value.resources as Obj[])[0]!.virtual_hosts as Obj[])[0]!.routes as Obj[];
    const byName = new Map(routes.map((r) => [r.name as string, r.route as Obj | undefined]));
    expect(byName.get("kb-post")).toMatchObject({ timeout: "0s", idle_timeout: "300s" });
    expect(byName.get("kb-get")).toMatchObject({ timeout: "0s", idle_timeout: "3600s" });
    // The aggregated endpoint goes to the ext-service's broker listener without ext_authz and
    // ext_proc (its hops come back through the per-server routes, where both run).
    for (const name of ["aggregate", "aggregate-views"]) {
      const route = routes.find((r) => r.name === name)!;
      // A 2025 session after initialize sticks to one broker replica (see "Sessions across replicas").
      expect(route.route).toMatchObject({
        cluster: "mcp_gateway_broker",
        timeout: "0s",
        hash_policy: [{ header: { header_name: "mcp-session-id" } }],
      });
      expect(route.typed_per_filter_config).toMatchObject({
        "envoy.filters.http.ext_authz": { disabled: true },
        "envoy.filters.http.ext_proc": { disabled: true },
      });
    }
    expect(hcm.stream_idle_timeout).toBe("300s");
  });

  it("logs the MCP fields as JSON from the metadata namespaces ext_proc and ext_authz write", () => {
    const log = (((hcm.access_log as Obj[])[0]!.typed_config as Obj).log_format as Obj).json_format as Obj;
    expect(log).toMatchObject({
      agent: "%DYNAMIC_METADATA(mcp_gateway:agent)%",
      server: "%DYNAMIC_METADATA(mcp_gateway:server)%",
      mcp_method: "%DYNAMIC_METADATA(mcp_gateway:method)%",
      tool: "%DYNAMIC_METADATA(mcp_gateway:tool)%",
      decision: "%DYNAMIC_METADATA(mcp_gateway:decision)%",
      reasons: "%DYNAMIC_METADATA(mcp_gateway:reasons)%",
    });
    expect(JSON.stringify(log)).not.toMatch(/authorization/i);
  });

  it("parses as plain YAML (no anchors or merge keys that Envoy's loader may treat differently)", () => {
    const text = read("envoy/envoy.yaml");
    expect(text).not.toMatch(/^\s*<<:|[&*][a-z_-]+\s*$/m);
    expect(parse(text)).toEqual(bootstrap.value);
  });
});
