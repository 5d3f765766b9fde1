import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "node:tls";
import { promisify } from "node:util";
import { exportJWK, generateKeyPair } from "jose";
import { afterAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { compileEngine } from "../../ext-service/src/config/compile.js";
import { loadConfig, parseGatewayConfig, parseRegistry } from "../../ext-service/src/config/load.js";
import { Metrics } from "../../ext-service/src/telemetry/metrics.js";

// docker-compose.yml, the Dockerfile and the files they mount, checked without a Docker engine.

const ROOT = join(import.meta.dirname, "..", "..");
const read = (path: string) => readFileSync(join(ROOT, path), "utf8");
type Obj = Record<string, unknown>;

const compose = parse(read("docker-compose.yml"), { merge: true }) as {
  services: Record<string, Obj>;
  volumes: Obj;
};
const services = compose.services;
const envoyYaml = parse(read("envoy/envoy.yaml")) as Obj;
const OWN_IMAGE = "mcp-gateway:dev";

function listeners(): { name: string; port: number; address: string }[] {
  return ((envoyYaml.static_resources as Obj).listeners as Obj[]).map((l) => {
    const sa = (l.address as Obj).socket_address as Obj;
    return { name: l.name as string, port: sa.port_value as number, address: sa.address as string };
  });
}

/** Compose volume `./host:/container[:ro]` or `{ source, target }` -> [host, container]. */
function mounts(service: string): [string, string][] {
  return ((services[service]!.volumes as (string | Obj)[]) ?? []).map((v) => {
    if (typeof v !== "string") return [String(v.source), String(v.target)];
    const [host, container] = v.split(":");
    return [host!, container!];
  });
}

describe("docker-compose.yml", () => {
  it("runs the whole stack: Envoy, two ext-service replicas sharing Redis, demo servers, metrics, dashboards, tracing", () => {
    expect(Object.keys(services).sort()).toEqual([
      "envoy",
      "ext-service-1",
      "ext-service-2",
      "grafana",
      "jaeger",
      "keys",
      "mcp-deploy",
      "mcp-kb",
      "mcp-tickets",
      "prometheus",
      "redis",
    ]);
  });

  it("pins every image to a version tag, or builds it", () => {
    const builders = Object.entries(services).filter(([, s]) => s.build !== undefined);
    expect(builders.map(([name]) => name)).toEqual(["ext-service-1"]);
    for (const [name, service] of Object.entries(services)) {
      const image = service.image as string | undefined;
      if (image === OWN_IMAGE) {
        // Our image is built once, never pulled from a registry.
        expect(service.build !== undefined || service.pull_policy === "never", name).toBe(true);
        continue;
      }
      expect(image, `${name} has no image`).toBeTypeOf("string");
      const tag = /^[^@]+:([^/:@]+)$/.exec(image!)?.[1];
      expect(tag, `${name}: '${image}' is untagged`).toBeDefined();
      expect(tag, `${name}: '${image}'`).not.toMatch(/^(latest|main|master|stable|edge|nightly)$/);
      expect(tag, `${name}: '${image}' is not a version`).toMatch(/\d+\.\d+/);
    }
    expect(services.envoy!.image).toMatch(/^envoyproxy\/envoy:v1\.(3[1-9]|[4-9]\d)\.\d+$/);
  });

  it("gives every service a health check, and starts Envoy only after its dependencies are healthy", () => {
    for (const [name, service] of Object.entries(services)) {
      const check = service.healthcheck as Obj | undefined;
      expect(check?.test, `${name} has no healthcheck`).toBeInstanceOf(Array);
      expect((check!.test as string[])[0], name).toBe("CMD");
    }
    const deps = services.envoy!.depends_on as Record<string, { condition: string }>;
    for (const dep of ["ext-service-1", "ext-service-2", "mcp-kb", "mcp-tickets", "mcp-deploy"]) {
      expect(deps[dep], dep).toEqual({ condition: "service_healthy" });
    }
    // The tracing backend is not on the data path (review R6).
    expect(deps.jaeger).toEqual({ condition: "service_started" });
    // Envoy's admin answers HTTP/1.0 with 426 Upgrade Required: the probe speaks HTTP/1.1 (W3).
    const probe = (services.envoy!.healthcheck as Obj).test as string[];
    expect(probe.at(-1)).toContain("GET /ready HTTP/1.1\\r\\nHost: localhost\\r\\n");
    expect(probe.join(" ")).not.toContain("HTTP/1.0");
    for (const name of ["ext-service-1", "ext-service-2"]) {
      expect(services[name]!.depends_on).toEqual({
        keys: { condition: "service_completed_successfully" },
        redis: { condition: "service_healthy" },
      });
    }
    expect(services.grafana!.depends_on).toEqual({ prometheus: { condition: "service_healthy" } });
    // The key-making job mints a throwaway token on the way: it must not reach the logs.
    expect((services.keys!.command as string[]).join(" ")).toMatch(
      / token .*--ttl 1s .*--init-key > \/dev\/null$/,
    );
  });

  it("mounts envoy.yaml, the rendered files and the certs where envoy.yaml reads them", () => {
    const m = new Map(mounts("envoy").map(([host, container]) => [container, host]));
    const command = services.envoy!.command as string[];
    const configPath = command[command.indexOf("-c") + 1]!;
    expect(m.get(configPath)).toBe("./envoy/envoy.yaml");
    const text = read("envoy/envoy.yaml");
    const files = [...text.matchAll(/(?:filename|path): (\/etc\/envoy\/[^\s}]+)/g)].map((x) => x[1]!);
    expect(files.length).toBeGreaterThanOrEqual(6);
    for (const file of files) {
      const mount = [...m.keys()].find((c) => file === c || file.startsWith(`${c}/`));
      expect(mount, `${file} is not mounted into the envoy container`).toBeDefined();
    }
    expect(m.get("/etc/envoy/rendered")).toBe("./envoy/rendered");
    expect(m.get("/etc/envoy/certs")).toBe("./envoy/certs");
    // Missing certificates stop compose with a clear error instead of an empty root-owned dir (R6).
    const certs = (services.envoy!.volumes as (string | Obj)[]).find(
      (v) => typeof v !== "string" && v.target === "/etc/envoy/certs",
    ) as Obj;
    expect(certs).toMatchObject({ type: "bind", read_only: true, bind: { create_host_path: false } });
    // envoy/gen-certs.sh writes the names envoy.yaml expects.
    const script = read("envoy/gen-certs.sh");
    for (const name of files
      .filter((f) => f.startsWith("/etc/envoy/certs/"))
      .map((f) => f.split("/").at(-1)!)) {
      expect(script).toContain(`"$dir/${name}"`);
    }
  });

  it("publishes the MCP listeners (plain HTTP on loopback only) and never the admin or metrics ports", () => {
    const ports = (services.envoy!.ports as string[]).map((p) => p.split(":"));
    const byName = new Map(listeners().map((l) => [l.name, l]));
    expect(ports).toEqual([
      [String(byName.get("mcp_tls")!.port), String(byName.get("mcp_tls")!.port)],
      ["127.0.0.1", String(byName.get("mcp_plain")!.port), String(byName.get("mcp_plain")!.port)],
    ]);
    const published = new Set(
      Object.values(services).flatMap((s) => ((s.ports as string[]) ?? []).map((p) => p.split(":").at(-1))),
    );
    expect(published.has("9901")).toBe(false);
    expect(published.has(String(byName.get("metrics")!.port))).toBe(false);
    // Every published port of the supporting services is bound to loopback.
    for (const name of ["prometheus", "grafana", "jaeger"]) {
      for (const p of services[name]!.ports as string[]) expect(p, name).toMatch(/^127\.0\.0\.1:/);
    }
  });

  it("runs ext-service replicas where the ext_service cluster and Prometheus look for them", () => {
    const clusters = (envoyYaml.static_resources as Obj).clusters as Obj[];
    const ext = clusters.find((c) => c.name === "ext_service")!;
    const endpoints = (((ext.load_assignment as Obj).endpoints as Obj[])[0]!.lb_endpoints as Obj[]).map(
      (e) => ((e.endpoint as Obj).address as Obj).socket_address as Obj,
    );
    const gateway = parseGatewayConfig(read("deploy/gateway.yaml"));
    expect(endpoints.map((e) => `${String(e.address)}:${String(e.port_value)}`)).toEqual([
      `ext-service-1:${gateway.listen.grpc.port}`,
      `ext-service-2:${gateway.listen.grpc.port}`,
    ]);
    expect(gateway.listen.grpc.host).toBe("0.0.0.0");
    // Reachable on the compose network, so mutual TLS with certificates from envoy/gen-certs.sh,
    // mounted where gateway.yaml reads them (review F8).
    const tls = gateway.listen.grpc.tls!;
    const script = read("envoy/gen-certs.sh");
    for (const name of ["ext-service-1", "ext-service-2"]) {
      const m = new Map(mounts(name).map(([h, c]) => [c, h]));
      for (const file of [tls.cert, tls.key, tls.clientCa]) {
        const dir = file.slice(0, file.lastIndexOf("/"));
        expect(m.get(dir), `${name}: ${file}`).toBe("./envoy/certs");
        expect(script).toContain(`"$dir/${file.split("/").at(-1)}"`);
      }
      // SIGTERM waits drainDelay, then shutdownGrace: compose must not SIGKILL before that.
      expect(services[name]!.stop_grace_period).toBe("30s");
    }
    expect(gateway.listen.admin.host).toBe("0.0.0.0");
    // The aggregated endpoint: Envoy's broker cluster reaches each replica's broker listener, the
    // broker's hops come back through Envoy, and both replicas share the session key that seals
    // sessions and hop identities.
    const broker = clusters.find((c) => c.name === "mcp_gateway_broker")!;
    // Consistent hash of Mcp-Session-Id (the routes' hash_policy): a session sticks to a replica.
    expect(broker.lb_policy).toBe("RING_HASH");
    const brokerEndpoints = (
      ((broker.load_assignment as Obj).endpoints as Obj[])[0]!.lb_endpoints as Obj[]
    ).map((e) => ((e.endpoint as Obj).address as Obj).socket_address as Obj);
    expect(brokerEndpoints.map((e) => `${String(e.address)}:${String(e.port_value)}`)).toEqual([
      `ext-service-1:${gateway.listen.broker.port}`,
      `ext-service-2:${gateway.listen.broker.port}`,
    ]);
    expect(gateway.listen.broker.host).toBe("0.0.0.0");
    expect(new URL(gateway.broker.hopUrl!).hostname).toBe("envoy");
    expect(gateway.sessions.keys.length).toBeGreaterThan(0);
    for (const name of ["ext-service-1", "ext-service-2"]) {
      const s = services[name]!;
      expect(s.command).toEqual(["serve", "--config", "/etc/mcp-gateway/gateway.yaml"]);
      expect(s.expose).toEqual([
        String(gateway.listen.grpc.port),
        String(gateway.listen.admin.port),
        String(gateway.listen.broker.port),
      ]);
      const m = new Map(mounts(name).map(([h, c]) => [c, h]));
      // The directory is mounted (so a reload sees files replaced by rename), holding both files.
      expect(m.get("/etc/mcp-gateway")).toBe("./deploy");
      expect(gateway.registry).toBe("registry.yaml");
      expect(existsSync(join(ROOT, "deploy", "registry.yaml"))).toBe(true);
      const jwks = gateway.auth.issuers[0]!.jwks as { file: string };
      expect(
        [...m.keys()].some((c) => jwks.file.startsWith(`${c}/`)),
        "JWKS file is mounted",
      ).toBe(true);
    }
    // The upstreams Envoy routes to are the demo server services, on the ports they listen on.
    const registry = parseRegistry(read("deploy/registry.yaml"));
    for (const server of registry.servers) {
      const url = new URL(server.upstreams[0]!);
      const svc = services[url.hostname];
      expect(svc, `no compose service '${url.hostname}'`).toBeDefined();
      expect((svc!.environment as Obj).PORT).toBe(url.port);
      expect(svc!.command).toEqual([server.name]);
    }
    const prometheus = parse(read("deploy/prometheus/prometheus.yml")) as { scrape_configs: Obj[] };
    const targets = Object.fromEntries(
      prometheus.scrape_configs.map((s) => [s.job_name, (s.static_configs as Obj[])[0]!.targets as string[]]),
    );
    expect(targets["ext-service"]).toEqual(
      endpoints.map((e) => `${String(e.address)}:${gateway.listen.admin.port}`),
    );
    expect(targets.envoy).toEqual([`envoy:${listeners().find((l) => l.name === "metrics")!.port}`]);
  });

  it("gives both ext-service replicas one sealing key: the same compose secret, where sessions.keys reads it", () => {
    const gateway = parseGatewayConfig(read("deploy/gateway.yaml"));
    // One key source for session ids, SSE event ids and hop tokens, and no per-process fallback.
    expect(gateway.sessions.keys).toHaveLength(1);
    const keyFile = (gateway.sessions.keys[0] as { file: string }).file;
    const secretName = /^\/run\/secrets\/([\w.-]+)$/.exec(keyFile)?.[1];
    expect(secretName, keyFile).toBeDefined();
    for (const name of ["ext-service-1", "ext-service-2"]) {
      const secrets = (services[name]!.secrets as (string | Obj)[]).map((x) =>
        typeof x === "string" ? { source: x, target: x } : { source: x.source, target: x.target ?? x.source },
      );
      expect(secrets, name).toEqual([{ source: secretName, target: secretName }]);
      expect(services[name]!.command).toEqual(["serve", "--config", "/etc/mcp-gateway/gateway.yaml"]);
    }
    // A file the operator makes, never committed nor sent to the image build.
    const source = (
      (compose as unknown as { secrets: Record<string, Obj> }).secrets[secretName!]!.file as string
    ).replace(/^\.\//, "");
    const top = source.split("/")[0]!;
    expect(read(".gitignore").split("\n")).toContain(`${top}/`);
    expect(ignoredByDocker()).toContain(top);
    // The command that makes it is where the stack's setup is documented.
    expect(read("docker-compose.yml")).toContain(`openssl rand -base64 32 > ${source}`);
    expect(read("envoy/README.md")).toContain(`openssl rand -base64 32 > ${source}`);
  });

  it("lets either replica open what the other sealed, with deploy/gateway.yaml and a key file", async () => {
    const dir = mkdtempSync(join(tmpdir(), "mcp-gw-compose-"));
    try {
      writeFileSync(join(dir, "session-key"), randomBytes(32).toString("base64"));
      const { publicKey } = await generateKeyPair("ES256", { extractable: true });
      writeFileSync(
        join(dir, "jwks.json"),
        JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: "k" }] }),
      );
      const text = read("deploy/gateway.yaml")
        .replace("/run/secrets/mcp_gateway_session_key", join(dir, "session-key"))
        .replace("/var/lib/mcp-gateway/dev/jwks.json", join(dir, "jwks.json"));
      writeFileSync(join(dir, "gateway.yaml"), text);
      writeFileSync(join(dir, "registry.yaml"), read("deploy/registry.yaml"));
      const [one, two] = [
        compileEngine(loadConfig(join(dir, "gateway.yaml"))),
        compileEngine(loadConfig(join(dir, "gateway.yaml"))),
      ];
      const owner = { issuer: "mcp-gateway-dev", agent: "support-bot", server: "tickets" };
      expect(two!.sessions.open(one!.sessions.seal(owner, "upstream-1"), owner)).toBe("upstream-1");
      const exchange = one!.newExchange("GET");
      exchange.principal = {
        agent: "support-bot",
        roles: [],
        claims: {},
        issuer: "mcp-gateway-dev",
        anonymous: false,
      };
      exchange.server = "tickets";
      exchange.sessionId = "g1.session";
      expect(two!.resumption.open(exchange, one!.resumption.seal(exchange, "ev-1"))?.upstreamEventId).toBe(
        "ev-1",
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("gives both ext-service replicas the same persistent Redis as their state store", () => {
    const gateway = parseGatewayConfig(read("deploy/gateway.yaml"));
    expect(gateway.state.store).toBe("redis");
    const url = new URL(gateway.state.redis!.url);
    expect(services[url.hostname], `no compose service '${url.hostname}'`).toBeDefined();
    const redis = services[url.hostname]!;
    expect(redis.expose).toEqual([url.port]);
    expect(redis.ports).toBeUndefined();
    expect(redis.command).toEqual(expect.arrayContaining(["--appendonly", "yes"]));
    expect(mounts(url.hostname)).toEqual([["redis-data", "/data"]]);
    expect(compose.volumes).toHaveProperty("redis-data");
  });

  it("starts every container from a script that the build produces (dist/X.js from X.ts)", () => {
    for (const [name, service] of Object.entries(services)) {
      const argv = [
        ...((service.entrypoint as string[] | undefined) ?? []),
        ...((service.command as string[] | undefined) ?? []),
      ];
      for (const arg of argv.filter((a) => typeof a === "string" && a.startsWith("dist/"))) {
        const source = arg.replace(/^dist\//, "").replace(/\.js$/, ".ts");
        expect(existsSync(join(ROOT, source)), `${name}: ${arg}`).toBe(true);
      }
    }
  });

  // Regenerate deploy/registry.yaml with `npx tsx deploy/sync-registry.ts` when this fails.
  it("keeps the compose registry and gateway config in step with the demo ones", () => {
    const demo = parseRegistry(read("registry/registry.yaml"));
    const deploy = parseRegistry(read("deploy/registry.yaml"));
    const withoutUpstreams = (r: typeof demo) => ({
      ...r,
      servers: r.servers.map((s) => ({ ...s, upstreams: [] as string[] })),
    });
    expect(withoutUpstreams(deploy)).toEqual(withoutUpstreams(demo));
    const demoGateway = parseGatewayConfig(read("examples/gateway.yaml"));
    const deployGateway = loadConfig(join(ROOT, "deploy/gateway.yaml")).config;
    expect(deployGateway.roles).toEqual(demoGateway.roles);
    expect(deployGateway.agents).toEqual(demoGateway.agents);
    expect(deployGateway.auth.issuers.map((i) => ({ ...i, jwks: null }))).toEqual(
      demoGateway.auth.issuers.map((i) => ({ ...i, jwks: null })),
    );
  });
});

function ignoredByDocker(): string[] {
  return read(".dockerignore")
    .split("\n")
    .map((l) => l.trim());
}

describe("Dockerfile", () => {
  const dockerfile = read("Dockerfile");
  const stages = [...dockerfile.matchAll(/^FROM\s+(\S+)(?:\s+AS\s+(\S+))?/gim)].map((m) => ({
    image: m[1]!,
    name: m[2],
  }));

  it("is a multi-stage build on a pinned Node 24 image whose runtime installs the packed package", () => {
    expect(stages.map((s) => s.name)).toEqual(["build", "runtime"]);
    expect(dockerfile).toMatch(/^ARG NODE_IMAGE=node:24\.\d+\.\d+-[a-z]+-slim$/m);
    const build = dockerfile.slice(dockerfile.indexOf("AS build"), dockerfile.indexOf("AS runtime"));
    const runtime = dockerfile.slice(dockerfile.indexOf("AS runtime"));
    expect(build).toMatch(/RUN npm ci --no-audit[\s\S]*RUN npm pack /);
    // Every path package.json ships must reach the build stage, or npm pack leaves it out.
    const pkg = JSON.parse(read("package.json")) as { files: string[] };
    const copied = [...build.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((m) => m[1]!.split(/\s+/));
    for (const entry of pkg.files) {
      const top = entry.split("/")[0]!;
      if (top === "dist") continue;
      expect(copied, entry).toContain(top);
      expect(ignoredByDocker(), entry).not.toContain(top);
    }
    expect(runtime).toMatch(/COPY --from=build \/tmp\/mcp-gateway\.tgz /);
    expect(runtime).toMatch(/tar -xzf \/tmp\/mcp-gateway\.tgz --strip-components=1[\s\S]*npm ci --omit=dev/);
    // Nothing from the build tree but the tarball: what ships is what npm pack packed.
    expect(runtime.match(/COPY --from=/g)).toHaveLength(1);
  });

  it("runs as a non-root user with a health check", () => {
    const runtime = dockerfile.slice(dockerfile.indexOf("AS runtime"));
    const user = /^USER\s+(\S+)/m.exec(runtime)?.[1];
    expect(user).toBeDefined();
    expect(user).not.toMatch(/^(root|0)(:|$)/);
    expect(runtime.indexOf("USER")).toBeLessThan(runtime.indexOf("ENTRYPOINT"));
    expect(runtime).toMatch(/^HEALTHCHECK .*\n\s+CMD .*\/readyz/m);
    expect(runtime).toContain('ENTRYPOINT ["node", "--enable-source-maps", "dist/ext-service/src/cli.js"]');
  });

  it("keeps secrets and build output out of the build context", () => {
    const ignored = ignoredByDocker();
    for (const entry of [".git", "node_modules", "dist", ".dev", "envoy", ".env", "secrets"])
      expect(ignored).toContain(entry);
  });
});

describe("Grafana dashboard", () => {
  it("queries only mcp_gateway_* metrics that the ext-service exports", async () => {
    const dashboard = JSON.parse(read("deploy/grafana/dashboards/mcp-gateway.json")) as { panels: Obj[] };
    const exprs = dashboard.panels.flatMap((p) => ((p.targets as Obj[]) ?? []).map((t) => t.expr as string));
    const used = new Set(exprs.flatMap((e) => [...e.matchAll(/\bmcp_gateway_[a-z_]+/g)].map((m) => m[0])));
    const metrics = new Metrics(false);
    const exported = new Set(
      (await metrics.registry.getMetricsAsJSON()).flatMap((m) =>
        String(m.type) === "histogram" ? [`${m.name}_bucket`, `${m.name}_sum`, `${m.name}_count`] : [m.name],
      ),
    );
    expect(used.size).toBeGreaterThanOrEqual(6);
    // Set only by the local edge, never by serve (review W7): only in panels marked as the edge's,
    // never where the Envoy stack would show them empty as if all were well.
    for (const panel of dashboard.panels) {
      const text = ((panel.targets as Obj[]) ?? []).map((t) => t.expr as string).join("\n");
      if (/mcp_gateway_(breaker_open|upstream_errors_total)\b/.test(text)) {
        expect(panel.title as string).toMatch(/\(local edge\)$/);
      }
    }
    // An ext_proc stream's upstream time is the whole MCP exchange (SSE included): not a latency.
    expect(exprs.join("\n")).not.toMatch(/upstream_rq_time_bucket\{envoy_cluster_name="ext_service"\}/);
    // Envoy's own view of the two filters, and the per-agent limiter by its exact name.
    const all = exprs.join("\n");
    for (const stat of [
      "envoy_http_ext_authz_denied",
      "envoy_http_ext_authz_error",
      "ext_proc.*_streams_failed",
    ])
      expect(all).toContain(stat);
    expect(all).toContain(
      'envoy_http_local_rate_limit_rate_limited{envoy_local_http_ratelimit_prefix="mcp_agent"}',
    );
    for (const name of used)
      expect(exported, `${name} is not exported by telemetry/metrics.ts`).toContain(name);
    const titles = dashboard.panels.map((p) => p.title as string);
    for (const t of [
      "Calls by server and decision",
      "Denials by reason",
      "Redactions by kind",
      "Outlier ejections and circuit breakers (Envoy)",
      "ext_authz: denied and errors",
    ]) {
      expect(titles).toContain(t);
    }
  });
});

describe("envoy/gen-certs.sh", () => {
  const dir = mkdtempSync(join(tmpdir(), "certs-"));
  let server: Server | undefined;
  afterAll(async () => {
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    rmSync(dir, { recursive: true, force: true });
  });

  it("makes a server certificate that a TLS client verifies for localhost against the dev CA", async () => {
    await promisify(execFile)("bash", [join(ROOT, "envoy/gen-certs.sh")], {
      env: { ...process.env, MCP_GATEWAY_CERTS_DIR: dir },
    });
    const file = (name: string) => readFileSync(join(dir, name));
    server = createServer({ key: file("server.key"), cert: file("server.crt") }, (_req, res) =>
      res.end("ok"),
    );
    await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as { port: number }).port;
    const authorized = await new Promise<boolean>((resolve, reject) => {
      const socket = connect({ host: "127.0.0.1", port, servername: "localhost", ca: file("ca.crt") }, () => {
        resolve(socket.authorized);
        socket.end();
      });
      socket.on("error", reject);
    });
    expect(authorized).toBe(true);
  });
});
