/**
 * Copies the Envoy v3 API protos that mcp-gateway's Envoy config validator needs into
 * proto/envoy-api/: the files that define the types our configs use (ROOTS), and every file they
 * import, transitively. Nothing else, so the vendored set stays small and reviewable.
 *
 *   npx tsx deploy/vendor-envoy-api.ts --envoy-api <data-plane-api checkout> --xds <cncf/xds checkout> \
 *     --pgv <protoc-gen-validate checkout> --googleapis <dir holding google/api, google/rpc>
 *
 * Then update the commits in proto/envoy-api/README.md. google/protobuf/* are not copied:
 * protobufjs ships them (the loader in ext-service/src/envoy/api-schema.ts resolves them there).
 */
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";

/** The message types our Envoy configs (bootstrap, rendered files, tests) can name. */
export const ROOTS = [
  "envoy/config/bootstrap/v3/bootstrap.proto",
  "envoy/service/discovery/v3/discovery.proto",
  "envoy/config/cluster/v3/cluster.proto",
  "envoy/config/route/v3/route.proto",
  "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
  "envoy/extensions/filters/http/router/v3/router.proto",
  "envoy/extensions/filters/http/ext_authz/v3/ext_authz.proto",
  "envoy/extensions/filters/http/ext_proc/v3/ext_proc.proto",
  "envoy/extensions/filters/http/local_ratelimit/v3/local_rate_limit.proto",
  "envoy/extensions/filters/http/ratelimit/v3/rate_limit.proto",
  "envoy/extensions/transport_sockets/tls/v3/tls.proto",
  "envoy/extensions/access_loggers/stream/v3/stream.proto",
  "envoy/extensions/access_loggers/filters/cel/v3/cel.proto",
  "envoy/extensions/formatter/req_without_query/v3/req_without_query.proto",
  "envoy/config/trace/v3/opentelemetry.proto",
  "envoy/extensions/resource_monitors/downstream_connections/v3/downstream_connections.proto",
  "envoy/extensions/resource_monitors/fixed_heap/v3/fixed_heap.proto",
  "envoy/extensions/upstreams/http/v3/http_protocol_options.proto",
  "envoy/extensions/clusters/dns/v3/dns_cluster.proto",
  "envoy/extensions/retry/host/previous_hosts/v3/previous_hosts.proto",
  "envoy/extensions/load_balancing_policies/round_robin/v3/round_robin.proto",
  // The services the ext-service implements, so their 1.38 shape can be read next to the config.
  "envoy/service/auth/v3/external_auth.proto",
  "envoy/service/ext_proc/v3/external_processor.proto",
  "envoy/service/ratelimit/v3/rls.proto",
  "xds/type/v3/typed_struct.proto",
  "udpa/type/v1/typed_struct.proto",
];

const IMPORT = /^\s*import\s+(?:public\s+|weak\s+)?"([^"]+)"\s*;/gm;

function main(): void {
  const { values } = parseArgs({
    options: {
      "envoy-api": { type: "string" },
      xds: { type: "string" },
      pgv: { type: "string" },
      googleapis: { type: "string" },
      out: { type: "string", default: join(import.meta.dirname, "..", "proto", "envoy-api") },
    },
  });
  const sources = [values["envoy-api"], values.xds, values.pgv, values.googleapis];
  if (sources.some((s) => typeof s !== "string")) {
    throw new Error("--envoy-api, --xds, --pgv and --googleapis are required");
  }
  const out = values.out as string;
  const locate = (name: string): string | undefined =>
    (sources as string[]).map((dir) => join(dir, name)).find((path) => existsSync(path));

  const needed = new Set<string>();
  const pending = [...ROOTS];
  for (let name = pending.pop(); name !== undefined; name = pending.pop()) {
    if (needed.has(name) || name.startsWith("google/protobuf/")) continue;
    const path = locate(name);
    if (!path) throw new Error(`${name} is in none of the source directories`);
    needed.add(name);
    for (const m of readFileSync(path, "utf8").matchAll(IMPORT)) pending.push(m[1]!);
  }

  for (const top of ["envoy", "xds", "udpa", "validate", "google"])
    rmSync(join(out, top), { recursive: true, force: true });
  for (const name of [...needed].sort()) {
    mkdirSync(dirname(join(out, name)), { recursive: true });
    cpSync(locate(name)!, join(out, name));
  }
  process.stdout.write(`copied ${needed.size} files to ${out}\n`);
}

if (process.argv[1] && import.meta.filename === process.argv[1]) main();
