import { execFile } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { ConfigError, loadConfig } from "../../ext-service/src/config/load.js";
import {
  CLUSTERS_FILE,
  ROUTES_FILE,
  renderEnvoy,
  tokenBucket,
  writeRendered,
} from "../../ext-service/src/envoy/render.js";
import { decodeEnvoy } from "../../ext-service/src/envoy/validate-config.js";

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, "..", "..");
const CLI = join(ROOT, "ext-service/src/cli.ts");
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

type Obj = Record<string, unknown>;

/** A gateway.yaml + registry.yaml pair in a fresh directory. */
function fixture(servers: string, gatewayExtra = ""): { dir: string; config: string } {
  const dir = mkdtempSync(join(tmpdir(), "render-envoy-"));
  dirs.push(dir);
  writeFileSync(
    join(dir, "gateway.yaml"),
    `registry: registry.yaml\nauth: { mode: optional }\nagents:\n  bot-a: {}\n  bot-b: {}\n${gatewayExtra}`,
  );
  writeFileSync(join(dir, "registry.yaml"), `version: "7"\nservers:\n${servers}`);
  return { dir, config: join(dir, "gateway.yaml") };
}

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, ["--import", "tsx", CLI, ...args], { cwd: ROOT });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

// Each case starts the CLI (tsx) in a child process, which takes seconds on a loaded machine.
describe("mcp-gateway registry render-envoy", { timeout: 90_000 }, () => {
  it("writes CDS and RDS files that decode against Envoy's API", async () => {
    const { dir, config } = fixture(
      `  - name: kb\n    upstreams: ["http://kb.internal:3101/mcp"]\n` +
        `  - name: search-2\n    upstreams: ["https://mcp.example.com/v1/mcp"]\n`,
    );
    const out = join(dir, "rendered");
    const result = await cli(["registry", "render-envoy", "--config", config, "--out", out]);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(result.stdout).toContain("rendered 2 cluster(s) and 12 route(s) from registry 7");
    expect(readdirSync(out).sort()).toEqual([CLUSTERS_FILE, ROUTES_FILE]);

    const clusters = parse(readFileSync(join(out, CLUSTERS_FILE), "utf8")) as Obj;
    const routes = parse(readFileSync(join(out, ROUTES_FILE), "utf8")) as Obj;
    for (const file of [clusters, routes]) {
      expect(decodeEnvoy("envoy.service.discovery.v3.DiscoveryResponse", file).errors).toEqual([]);
    }
    const [kb, search] = clusters.resources as Obj[];
    // Names resolve through the DNS cluster extension every 5s, never held for the record's TTL.
    const dns = (logical: boolean) => ({
      name: "envoy.cluster.dns",
      typed_config: {
        "@type": "type.googleapis.com/envoy.extensions.clusters.dns.v3.DnsCluster",
        dns_refresh_rate: "5s",
        respect_dns_ttl: false,
        dns_lookup_family: "V4_PREFERRED",
        ...(logical ? { all_addresses_in_single_endpoint: true } : {}),
      },
    });
    expect(kb).toMatchObject({ name: "mcp_kb", cluster_type: dns(false), lb_policy: "LEAST_REQUEST" });
    expect(kb!.type).toBeUndefined();
    expect(kb!.transport_socket).toBeUndefined();
    // A single https upstream behind DNS: one logical endpoint, TLS with SNI and the system CA bundle.
    expect(search).toMatchObject({
      name: "mcp_search-2",
      cluster_type: dns(true),
      transport_socket: {
        name: "envoy.transport_sockets.tls",
        typed_config: {
          sni: "mcp.example.com",
          common_tls_context: {
            validation_context: { trusted_ca: { filename: "/etc/ssl/certs/ca-certificates.crt" } },
          },
        },
      },
    });
    const endpoint = (((search!.load_assignment as Obj).endpoints as Obj[])[0]!.lb_endpoints as Obj[])[0];
    expect(endpoint).toEqual({
      endpoint: {
        address: { socket_address: { address: "mcp.example.com", port_value: 443 } },
        hostname: "mcp.example.com",
      },
    });
    const vh = ((routes.resources as Obj[])[0]!.virtual_hosts as Obj[])[0]!;
    const post = (vh.routes as Obj[]).find((r) => r.name === "search-2-post")!;
    expect(post).toEqual({
      name: "search-2-post",
      match: { path: "/mcp/search-2", headers: [{ name: ":method", string_match: { exact: "POST" } }] },
      route: {
        cluster: "mcp_search-2",
        prefix_rewrite: "/v1/mcp",
        auto_host_rewrite: true,
        timeout: "0s",
        idle_timeout: "300s",
      },
    });
  });

  it("renders IP upstreams as STATIC, the edge breaker as outlier detection, and a bucket per agent", () => {
    const { config } = fixture(
      `  - name: kb\n    upstreams: ["http://10.0.0.5:3101/mcp", "http://10.0.0.6:3101/mcp"]\n`,
      "edge:\n  rateLimit: { requestsPerSecond: 0.5, burst: 3 }\n  breaker: { consecutiveFailures: 7, cooldown: 45s }\n",
    );
    const rendered = renderEnvoy(loadConfig(config));
    const [kb] = rendered.clusters;
    expect(kb).toMatchObject({
      type: "STATIC",
      lb_policy: "RING_HASH",
      outlier_detection: { consecutive_5xx: 7, consecutive_gateway_failure: 7, base_ejection_time: "45s" },
    });
    expect(kb!.dns_lookup_family).toBeUndefined();
    expect(rendered.warnings).toEqual([
      "server 'kb' has 2 upstreams: Envoy hashes Mcp-Session-Id to one replica, but initialize may be answered " +
        "by another, so the server must share session state across replicas or run stateless",
    ]);
    const vh = (rendered.routeConfiguration.virtual_hosts as Obj[])[0]!;
    const rl = (vh.typed_per_filter_config as Obj)["envoy.filters.http.local_ratelimit"] as Obj;
    expect(rl.token_bucket).toEqual({ max_tokens: 3, tokens_per_fill: 1, fill_interval: "2s" });
    expect((rl.descriptors as Obj[]).map((d) => (d.entries as Obj[])[0])).toEqual([
      { key: "agent", value: "bot-a" },
      { key: "agent", value: "bot-b" },
      { key: "agent" },
    ]);
    // Several replicas: every MCP route hashes the session header, so a session stays on one.
    const mcpRoutes = (vh.routes as Obj[]).filter(
      (r) => r.route !== undefined && !String(r.name).startsWith("aggregate"),
    );
    expect(mcpRoutes.map((r) => r.name)).toEqual(["kb-post", "kb-get", "kb-delete"]);
    for (const r of mcpRoutes)
      expect((r.route as Obj).hash_policy).toEqual([{ header: { header_name: "mcp-session-id" } }]);
    // The aggregated endpoint hashes the session id whatever the servers' replicas: the broker
    // replica that relayed a server-to-client request is the one that can take the answer.
    const brokerRoutes = (vh.routes as Obj[]).filter((r) => String(r.name).startsWith("aggregate"));
    expect(brokerRoutes.map((r) => r.name)).toEqual(["aggregate", "aggregate-views"]);
    for (const r of brokerRoutes)
      expect(r.route).toMatchObject({
        cluster: "mcp_gateway_broker",
        hash_policy: [{ header: { header_name: "mcp-session-id" } }],
      });
    expect(tokenBucket(50, 100)).toEqual({ max_tokens: 100, tokens_per_fill: 50, fill_interval: "1s" });
  });

  it("rejects upstreams one Envoy cluster and route cannot express, naming the registry path", () => {
    const { config } = fixture(
      `  - name: kb\n    upstreams: ["http://a:1/mcp", "http://b:1/other", "https://c:1/mcp"]\n` +
        `  - name: q\n    upstreams: ["http://a:1/mcp?token=x"]\n`,
    );
    let error: unknown;
    try {
      renderEnvoy(loadConfig(config));
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems.map((p) => `${p.path}: ${p.message}`)).toEqual([
      "servers[0].upstreams[1]: path '/other' differs from '/mcp': one route rewrites to one upstream path",
      "servers[0].upstreams[2]: mixes http and https: one Envoy cluster has one transport",
      "servers[1].upstreams[0]: a query or fragment cannot be expressed as an Envoy path rewrite",
    ]);
  });

  it("on a server name that is not a valid cluster name: exits 1 with the rule, writes nothing", async () => {
    const { dir, config } = fixture(`  - name: Bad_Name\n    upstreams: ["http://a:1/mcp"]\n`);
    const out = join(dir, "rendered");
    const result = await cli(["registry", "render-envoy", "--config", config, "--out", out]);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe("");
    expect(result.stderr).toBe(
      `${join(dir, "registry.yaml")}:3:11: servers[0].name: server names are DNS labels that start with a ` +
        "letter: lower-case letters, digits and '-', 1-63 characters, no trailing '-' (/mcp gives their " +
        "resource URIs as '<server>.<uri>', and a URI scheme starts with a letter)\n1 problem(s) found.\n",
    );
    expect(existsSync(out)).toBe(false);
  });

  it("on an invalid registry leaves the previous rendering intact and no temporary files", async () => {
    const { dir, config } = fixture(`  - name: kb\n    upstreams: ["http://a:1/mcp"]\n`);
    const out = join(dir, "rendered");
    expect((await cli(["registry", "render-envoy", "--config", config, "--out", out])).code).toBe(0);
    const before = readdirSync(out).map((f) => [f, readFileSync(join(out, f), "utf8")]);

    writeFileSync(join(dir, "registry.yaml"), `version: "8"\nservers:\n  - name: kb\n    upstreams: []\n`);
    const result = await cli(["registry", "render-envoy", "--config", config, "--out", out]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("servers[0].upstreams: expected array to have >=1 items");
    expect(readdirSync(out).map((f) => [f, readFileSync(join(out, f), "utf8")])).toEqual(before);
  });

  it("--bootstrap checks an Envoy bootstrap against the API and the rendered files before writing", async () => {
    const dir = mkdtempSync(join(tmpdir(), "render-bootstrap-"));
    dirs.push(dir);
    const config = join(ROOT, "deploy/gateway.yaml");
    const good = await cli([
      "registry",
      "render-envoy",
      "--config",
      config,
      "--bootstrap",
      join(ROOT, "envoy/envoy.yaml"),
      "--out",
      join(dir, "ok"),
    ]);
    expect(good.stderr).toBe("");
    expect(good.code).toBe(0);

    const bad = join(dir, "envoy.yaml");
    writeFileSync(
      bad,
      readFileSync(join(ROOT, "envoy/envoy.yaml"), "utf8").replace(
        "failure_mode_allow: false",
        "failure_mode_allow: true",
      ),
    );
    const result = await cli([
      "registry",
      "render-envoy",
      "--config",
      config,
      "--bootstrap",
      bad,
      "--out",
      join(dir, "no"),
    ]);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      `${bad}: static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config.failure_mode_allow: ext_authz must fail closed\n` +
        `${bad}: static_resources.listeners[1].filter_chains[0].filters[0].typed_config: differs from ` +
        "static_resources.listeners[0].filter_chains[0].filters[0].typed_config (only stat_prefix and the access log's listener may differ)\n" +
        "2 problem(s) found.\n",
    );
    expect(existsSync(join(dir, "no"))).toBe(false);
  });

  it("writes each file by rename: a failed write removes its temporary file and keeps the old target", () => {
    const { dir, config } = fixture(`  - name: kb\n    upstreams: ["http://a:1/mcp"]\n`);
    const out = join(dir, "rendered");
    const rendered = renderEnvoy(loadConfig(config));
    writeRendered(out, rendered);
    const oldClusters = readFileSync(join(out, CLUSTERS_FILE), "utf8");
    // routes.yaml replaced by a non-empty directory: rename(2) over it fails.
    rmSync(join(out, ROUTES_FILE));
    mkdirSync(join(out, ROUTES_FILE, "blocker"), { recursive: true });
    const next = renderEnvoy(loadConfig(config));
    next.files[0]!.text = oldClusters.replace('version_info: "7"', 'version_info: "7b"');
    expect(() => writeRendered(out, next)).toThrow();
    expect(readdirSync(out).sort()).toEqual([CLUSTERS_FILE, ROUTES_FILE]);
    expect(readFileSync(join(out, CLUSTERS_FILE), "utf8")).toContain('version_info: "7b"');
  });
});
