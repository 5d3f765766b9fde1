import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { UsageError } from "./command.js";
import { ConfigError, loadConfig } from "../config/load.js";
import { renderEnvoy, writeRendered, type RenderedEnvoy } from "../envoy/render.js";
import { checkEnvoyDeployment } from "../envoy/semantics.js";
import { validateEnvoyYaml } from "../envoy/validate-config.js";
import type { RegistrySubcommand } from "./command.js";

export const DEFAULT_RENDER_DIR = "envoy/rendered";

export const renderEnvoySubcommand: RegistrySubcommand = {
  name: "render-envoy",
  summary: "Render Envoy clusters and routes (CDS/RDS files) from the registry",
  usage: `Usage: mcp-gateway registry render-envoy --config <gateway.yaml> [--out ${DEFAULT_RENDER_DIR}] [--bootstrap envoy/envoy.yaml]

Writes two DiscoveryResponse files for Envoy's file-based dynamic configuration:
  clusters.yaml  one cluster per registry server (circuit breakers, outlier detection,
                 TCP health checks, least-request balancing, TLS for https upstreams)
  routes.yaml    POST/GET/DELETE /mcp/<server> routes rewritten to the upstream path and host,
                 and the per-agent local rate limit (from edge.rateLimit and agents)
The output is checked against Envoy's v3 API before anything is written; each file is
replaced atomically (temporary file + rename), so a watching Envoy picks up whole files.
--bootstrap also checks that Envoy bootstrap against Envoy's API and against the rendered
files (filter order, fail-closed settings, cluster references, timeouts, retries).
On any problem nothing is written and the exit code is 1.`,
  options: {
    config: { type: "string", short: "c" },
    out: { type: "string", short: "o", default: DEFAULT_RENDER_DIR },
    bootstrap: { type: "string", short: "b" },
  },
  async run(values) {
    const file = values.config;
    if (typeof file !== "string") throw new UsageError("--config is required");
    const loaded = loadConfig(file);
    const rendered = renderEnvoy(loaded);
    const warnings = [...rendered.warnings];
    if (typeof values.bootstrap === "string")
      warnings.push(...checkBootstrap(values.bootstrap, rendered, loaded));
    for (const warning of warnings) process.stderr.write(`warning: ${warning}\n`);
    const written = writeRendered(resolve(values.out as string), rendered);
    process.stdout.write(
      `rendered ${rendered.clusters.length} cluster(s) and ${routeCount(rendered)} route(s) from registry ` +
        `${loaded.registry.version}:\n${written.map((w) => `  ${w}`).join("\n")}\n`,
    );
  },
};

/** Decodes the bootstrap and checks it against the rendered resources; returns warnings. */
function checkBootstrap(
  file: string,
  rendered: RenderedEnvoy,
  loaded: ReturnType<typeof loadConfig>,
): string[] {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new ConfigError([
      { file, path: "", message: `cannot read (${(err as NodeJS.ErrnoException).code})` },
    ]);
  }
  const report = validateEnvoyYaml(text, "envoy.config.bootstrap.v3.Bootstrap");
  const problems = report.errors.map((e) => ({ file, path: e.path, message: e.message }));
  if (problems.length === 0) {
    const semantic = checkEnvoyDeployment({
      bootstrap: report.value as Record<string, unknown>,
      clusters: rendered.clusters,
      routeConfigurations: [rendered.routeConfiguration],
      gateway: loaded.config,
    });
    problems.push(...semantic.map((e) => ({ file, path: e.path, message: e.message })));
  }
  if (problems.length) throw new ConfigError(problems);
  return report.warnings.map((w) => `${file}: ${w.path}: ${w.message}`);
}

function routeCount(rendered: RenderedEnvoy): number {
  const hosts = rendered.routeConfiguration.virtual_hosts as { routes: unknown[] }[];
  return hosts.reduce((n, h) => n + h.routes.length, 0);
}
