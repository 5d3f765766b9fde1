import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { ROOTS } from "../../deploy/vendor-envoy-api.js";
import { loadEnvoyApi } from "../../ext-service/src/envoy/api-schema.js";
import { decodeEnvoy, validateEnvoyYaml } from "../../ext-service/src/envoy/validate-config.js";

// The decoder stands in for running Envoy: these tests prove it rejects what Envoy would reject,
// with the path to the offending value.

const BOOTSTRAP = "envoy.config.bootstrap.v3.Bootstrap";
const EXT_PROC = "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor";

function errors(type: string, value: unknown): string[] {
  return decodeEnvoy(type, value).errors.map((e) => `${e.path}: ${e.message}`);
}

/** A bootstrap with one HCM whose http_filters are given. */
function withFilters(httpFilters: unknown[]): unknown {
  return {
    static_resources: {
      listeners: [
        {
          name: "l",
          address: { socket_address: { address: "0.0.0.0", port_value: 8080 } },
          filter_chains: [
            {
              filters: [
                {
                  name: "envoy.filters.network.http_connection_manager",
                  typed_config: {
                    "@type":
                      "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    stat_prefix: "x",
                    route_config: { name: "r" },
                    http_filters: httpFilters,
                  },
                },
              ],
            },
          ],
        },
      ],
    },
  };
}

const HF = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters";
const router = {
  name: "envoy.filters.http.router",
  typed_config: { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" },
};
const extProc = (config: Record<string, unknown>) => ({
  name: "envoy.filters.http.ext_proc",
  typed_config: { "@type": EXT_PROC, grpc_service: { envoy_grpc: { cluster_name: "ext" } }, ...config },
});

describe("Envoy API loading", () => {
  it("loads the vendored 1.38 API: every type our configs name, and the fields added after mid-2024", () => {
    const api = loadEnvoyApi();
    expect(api.loaded).toBeGreaterThan(90);
    // Fields the review's fixes need and the old @grpc/grpc-js-xds snapshot lacked.
    const fields: [string, string][] = [
      ["envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor", "status_on_error"],
      ["envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit", "rate_limits"],
      ["envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit", "max_dynamic_descriptors"],
      ["envoy.config.route.v3.VirtualHost", "request_body_buffer_limit"],
      ["envoy.extensions.clusters.dns.v3.DnsCluster", "dns_refresh_rate"],
    ];
    for (const [type, field] of fields)
      expect(api.message(type)?.fields[field], `${type}.${field}`).toBeDefined();
    for (const type of [
      BOOTSTRAP,
      "envoy.config.cluster.v3.Cluster",
      "envoy.config.route.v3.RouteConfiguration",
      "envoy.service.discovery.v3.DiscoveryResponse",
      "envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor",
      "envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
      "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
      "envoy.config.trace.v3.OpenTelemetryConfig",
    ]) {
      expect(api.message(type), type).toBeDefined();
    }
  });
});

describe("the vendored protos (proto/envoy-api)", () => {
  const dir = join(import.meta.dirname, "..", "..", "proto", "envoy-api");
  const list = (d: string): string[] =>
    readdirSync(d, { withFileTypes: true }).flatMap((e) =>
      e.isDirectory()
        ? list(join(d, e.name))
        : e.name.endsWith(".proto")
          ? [relative(dir, join(d, e.name))]
          : [],
    );

  it("are exactly the import closure of the root files: nothing missing, nothing extra", () => {
    const needed = new Set<string>();
    const pending = [...ROOTS];
    for (let name = pending.pop(); name !== undefined; name = pending.pop()) {
      if (needed.has(name) || name.startsWith("google/protobuf/")) continue;
      expect(existsSync(join(dir, name)), `${name} is imported but not vendored`).toBe(true);
      needed.add(name);
      for (const m of readFileSync(join(dir, name), "utf8").matchAll(
        /^\s*import\s+(?:public\s+)?"([^"]+)"\s*;/gm,
      ))
        pending.push(m[1]!);
    }
    expect(list(dir).sort()).toEqual([...needed].sort());
    expect(readFileSync(join(dir, "README.md"), "utf8")).toMatch(
      /data-plane-api.*84e84367f2560cdb47b9bb78fd3e615feb80c3e4/,
    );
    expect(existsSync(join(dir, "LICENSE"))).toBe(true);
  });
});

describe("strict decoding of Envoy config", () => {
  it("accepts a valid config, in original or lowerCamelCase field names", () => {
    const config = withFilters([
      extProc({
        processingMode: { requestBodyMode: "BUFFERED", response_header_mode: "SEND" },
        message_timeout: "0.5s",
      }),
      router,
    ]);
    expect(errors(BOOTSTRAP, config)).toEqual([]);
  });

  it("rejects a bad enum value deep inside nested Anys, with its full path", () => {
    const config = withFilters([extProc({ processing_mode: { request_body_mode: "BUFFER" } }), router]);
    expect(errors(BOOTSTRAP, config)).toEqual([
      `${HF}[0].typed_config.processing_mode.request_body_mode: unknown enum value 'BUFFER' for ` +
        "envoy.extensions.filters.http.ext_proc.v3.ProcessingMode.BodySendMode " +
        "(one of NONE, STREAMED, BUFFERED, BUFFERED_PARTIAL, FULL_DUPLEX_STREAMED, GRPC); did you mean 'BUFFERED'?",
    ]);
  });

  it("rejects a misspelled field and suggests the right one", () => {
    const config = withFilters([extProc({ mesage_timeout: "1s" }), router]);
    expect(errors(BOOTSTRAP, config)).toEqual([
      `${HF}[0].typed_config.mesage_timeout: unknown field 'mesage_timeout' in ` +
        "envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor; did you mean 'message_timeout'?",
    ]);
  });

  it("rejects wrong types: a number for a duration, a string for a bool, a list for a message", () => {
    const config = withFilters([
      extProc({ message_timeout: 1, failure_mode_allow: "false", processing_mode: [] }),
      router,
    ]);
    expect(errors(BOOTSTRAP, config)).toEqual([
      `${HF}[0].typed_config.message_timeout: expected a duration string such as "1.5s", got number 1`,
      `${HF}[0].typed_config.failure_mode_allow: expected true or false, got the string "false"`,
      `${HF}[0].typed_config.processing_mode: expected an object ` +
        "(envoy.extensions.filters.http.ext_proc.v3.ProcessingMode), got a list",
    ]);
  });

  it("rejects an unresolvable @type and a missing @type", () => {
    const config = withFilters([
      {
        name: "a",
        typed_config: { "@type": "type.googleapis.com/envoy.extensions.filters.http.nope.v3.Nope" },
      },
      { name: "b", typed_config: { stat_prefix: "x" } },
      router,
    ]);
    expect(errors(BOOTSTRAP, config)).toEqual([
      `${HF}[0].typed_config["@type"]: unknown type 'envoy.extensions.filters.http.nope.v3.Nope': ` +
        "no such message in the Envoy API protos",
      `${HF}[1].typed_config["@type"]: is required: every typed_config / Any names its type`,
    ]);
  });

  it("rejects two members of one oneof", () => {
    const cluster = {
      name: "c",
      type: "STATIC",
      cluster_type: { name: "envoy.clusters.aggregate" },
    };
    expect(errors("envoy.config.cluster.v3.Cluster", cluster)).toEqual([
      "cluster_type: oneof 'cluster_discovery_type' is already set by 'type'; set only one of type, cluster_type",
    ]);
  });

  it("rejects a field given under both of its names", () => {
    const cluster = { name: "c", connect_timeout: "1s", connectTimeout: "2s" };
    expect(errors("envoy.config.cluster.v3.Cluster", cluster)).toEqual([
      "connectTimeout: field 'connect_timeout' is set twice (also as 'connect_timeout')",
    ]);
  });

  it("applies the proto3 JSON mapping: durations, wrappers, int64 strings, bytes, Struct, null", () => {
    const ok = {
      name: "c",
      connect_timeout: "0.250s",
      per_connection_buffer_limit_bytes: 32768, // UInt32Value as a plain number
      max_requests_per_connection: null, // null = not set
      metadata: { filter_metadata: { "envoy.lb": { canary: true, weights: [1, 2] } } }, // Struct
      load_balancing_policy: {
        policies: [
          {
            typed_extension_config: {
              name: "rr",
              typed_config: {
                "@type":
                  "type.googleapis.com/envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin",
              },
            },
          },
        ],
      },
    };
    expect(errors("envoy.config.cluster.v3.Cluster", ok)).toEqual([]);
    expect(
      errors("envoy.config.core.v3.DataSource", { inline_bytes: "aGVsbG8=" }),
      "bytes as base64",
    ).toEqual([]);
    expect(errors("envoy.config.core.v3.DataSource", { inline_bytes: "not base64!" })).toEqual([
      "inline_bytes: is not valid base64",
    ]);
    expect(errors("envoy.config.cluster.v3.Cluster", { name: "c", connect_timeout: "250ms" })).toEqual([
      `connect_timeout: '250ms' is not a duration (seconds with an 's' suffix, e.g. "0.25s")`,
    ]);
    expect(
      errors("envoy.config.cluster.v3.Cluster", {
        name: "c",
        per_connection_buffer_limit_bytes: { value: 1 },
      }),
    ).toEqual([
      "per_connection_buffer_limit_bytes: expected an integer (uint32), got an object " +
        "(google.protobuf.UInt32Value is written as a plain value)",
    ]);
    // int64 as a string or a number; out of range is an error.
    const bucket = (v: unknown) => ({ max_tokens: 1, fill_interval: "1s", tokens_per_fill: v });
    expect(errors("envoy.type.v3.TokenBucket", bucket("5"))).toEqual([]);
    expect(errors("envoy.type.v3.TokenBucket", bucket(-1))).toEqual([
      "tokens_per_fill: -1 is out of range for uint32",
    ]);
    expect(
      errors("envoy.config.core.v3.RuntimeFractionalPercent", {
        runtime_key: "k",
        default_value: { numerator: "9007199254740993" },
      }),
    ).toEqual(["default_value.numerator: 9007199254740993 is out of range for uint32"]);
  });

  it("applies the validation rules Envoy enforces at load time", () => {
    // required message, string min_len on an unset field, uint32 range, required oneof, repeated min_items
    expect(errors("envoy.config.route.v3.Route", { direct_response: { status: 404 } })).toEqual([
      "match: is required (envoy.config.route.v3.RouteMatch)",
    ]);
    expect(errors("envoy.config.core.v3.SocketAddress", { address: "x", port_value: 70000 })).toEqual([
      "port_value: must be <= 65535",
    ]);
    expect(errors("envoy.config.core.v3.SocketAddress", { port_value: 80 })).toEqual([
      "address: is required (must not be empty)",
    ]);
    const routeMatch = decodeEnvoy("envoy.config.route.v3.RouteMatch", {}).errors;
    expect(routeMatch).toHaveLength(1);
    expect(routeMatch[0]!.path).toBe("");
    expect(routeMatch[0]!.message).toMatch(
      /^one of 'prefix', 'path', .* is required \(oneof 'path_specifier'\)$/,
    );
    expect(errors("envoy.config.route.v3.VirtualHost", { name: "v" })).toEqual([
      "domains: is required (at least 1 items)",
    ]);
    expect(
      errors("envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor", {
        grpc_service: { envoy_grpc: { cluster_name: "x" } },
        message_timeout: "7200s",
      }),
    ).toEqual(["message_timeout: must be >= 0s and <= 3600s"]);
  });

  it("decodes TypedStruct payloads against their type_url and reports deprecated fields", () => {
    const typed = {
      "@type": "type.googleapis.com/xds.type.v3.TypedStruct",
      type_url: "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
      value: { suppress_envoy_headers: "yes" },
    };
    const config = withFilters([{ name: "r", typed_config: typed }]);
    expect(errors(BOOTSTRAP, config)).toEqual([
      `${HF}[0].typed_config.value.suppress_envoy_headers: expected true or false, got the string "yes"`,
    ]);
    const report = decodeEnvoy(
      BOOTSTRAP,
      withFilters([{ ...router, typed_config: { ...router.typed_config, start_child_span: true } }]),
    );
    expect(report.errors).toEqual([]);
    expect(report.warnings).toEqual([
      { path: `${HF}[0].typed_config.start_child_span`, message: "'start_child_span' is deprecated" },
    ]);
  });

  it("reports YAML syntax errors and duplicate keys", () => {
    const dup = validateEnvoyYaml("node:\n  id: a\n  id: b\n", BOOTSTRAP);
    expect(dup.errors).toHaveLength(1);
    expect(dup.errors[0]!.message).toMatch(/^YAML: Map keys must be unique/);
  });

  it("checks discovery files: resources are Anys, each decoded as its own type", () => {
    const file = {
      version_info: "1",
      resources: [
        {
          "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
          name: "a",
          lb_policy: "LEAST_REQUESTS",
        },
      ],
    };
    expect(errors("envoy.service.discovery.v3.DiscoveryResponse", file)).toEqual([
      "resources[0].lb_policy: unknown enum value 'LEAST_REQUESTS' for envoy.config.cluster.v3.Cluster.LbPolicy " +
        "(one of ROUND_ROBIN, LEAST_REQUEST, RING_HASH, RANDOM, MAGLEV, CLUSTER_PROVIDED, LOAD_BALANCING_POLICY_CONFIG); " +
        "did you mean 'LEAST_REQUEST'?",
    ]);
  });
});
