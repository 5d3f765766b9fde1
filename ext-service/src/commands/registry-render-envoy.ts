import { resolve } from "node:path";
import { UsageError } from "../cli.js";
import { loadConfig } from "../config/load.js";
import { renderEnvoy, writeRendered } from "../envoy/render.js";
import type { RegistrySubcommand } from "./registry.js";

export const DEFAULT_RENDER_DIR = "envoy/rendered";

export const renderEnvoySubcommand: RegistrySubcommand = {
  name: "render-envoy",
  summary: "Render Envoy clusters and routes (CDS/RDS files) from the registry",
  usage: `Usage: mcp-gateway registry render-envoy --config <gateway.yaml> [--out ${DEFAULT_RENDER_DIR}]

Writes two DiscoveryResponse files for Envoy's file-based dynamic configuration:
  clusters.yaml  one cluster per registry server (circuit breakers, outlier detection,
                 TCP health checks, least-request balancing, TLS for https upstreams)
  routes.yaml    POST/GET/DELETE /mcp/<server> routes rewritten to the upstream path and host,
                 and the per-agent local rate limit (from edge.rateLimit and agents)
The output is checked against Envoy's v3 API before anything is written; each file is
replaced atomically (temporary file + rename), so a watching Envoy picks up whole files.
On an invalid config or registry nothing is written and the exit code is 1.`,
  options: {
    config: { type: "string", short: "c" },
    out: { type: "string", short: "o", default: DEFAULT_RENDER_DIR },
  },
  async run(values) {
    const file = values.config;
    if (typeof file !== "string") throw new UsageError("--config is required");
    const loaded = loadConfig(file);
    const rendered = renderEnvoy(loaded);
    for (const warning of rendered.warnings) process.stderr.write(`warning: ${warning}\n`);
    const written = writeRendered(resolve(values.out as string), rendered);
    process.stdout.write(
      `rendered ${rendered.clusters.length} cluster(s) and ${routeCount(rendered)} route(s) from registry ` +
        `${loaded.registry.version}:\n${written.map((w) => `  ${w}`).join("\n")}\n`,
    );
  },
};

function routeCount(rendered: ReturnType<typeof renderEnvoy>): number {
  const hosts = rendered.routeConfiguration.virtual_hosts as { routes: unknown[] }[];
  return hosts.reduce((n, h) => n + h.routes.length, 0);
}
