import type { Server } from "node:http";
import type { Command } from "./command.js";
import { UsageError } from "./command.js";
import { loadEngine, warnEphemeralSessionKeys, warnReferences } from "../config/compile.js";
import { startEdge } from "../edge/index.js";
import { reloadOnHangup } from "./reload.js";
import { approvalsAdminApi } from "../approvals/admin-api.js";
import { consoleApi } from "../console/api.js";
import { consoleAssets } from "../console/routes.js";
import { adminBaseUrl, boundPort, startAdminServer } from "../telemetry/admin.js";
import { createLogger } from "../telemetry/logger.js";
import { Metrics } from "../telemetry/metrics.js";

export function parsePort(value: unknown, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (typeof value !== "string" || !/^\d+$/.test(value) || n > 65535) {
    throw new UsageError(`${flag} '${String(value)}' is not a port number (0-65535)`);
  }
  return n;
}

/**
 * Resolves on the first SIGINT or SIGTERM and runs `stop`; a second signal while stopping exits
 * at once with status 130.
 */
export function untilSignal(stop: (signal: NodeJS.Signals) => Promise<void>): Promise<void> {
  return new Promise((resolve, reject) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) {
        process.stderr.write(`\n${signal} again: exiting now\n`);
        process.exit(130);
      }
      stopping = true;
      stop(signal).then(() => {
        process.off("SIGINT", onSignal);
        process.off("SIGTERM", onSignal);
        resolve();
      }, reject);
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
  });
}

export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

export const edgeCommand: Command = {
  name: "edge",
  summary: "Run the local data plane (no Envoy needed) in front of the registry's MCP servers",
  usage: `Usage: mcp-gateway edge --config <gateway.yaml> [--port N] [--admin-port N] [--host H]

Serves POST|GET|DELETE /mcp/<server> (MCP Streamable HTTP) and the RFC 9728 metadata routes on
listen.edge (default 127.0.0.1:8080), applying the same policy as the Envoy path, and
/metrics, /healthz, /readyz on listen.admin (default 127.0.0.1:9901).
--port / --admin-port override the config (0 picks a free port). SIGINT/SIGTERM drain and stop.

On SIGHUP: gateway.yaml and the registry are read and checked again; if every check passes the
new policy and servers apply to the next requests (a server whose URLs did not change keeps its
connections and sessions), otherwise every problem is logged and the running config is kept.
listen, edge (rate limit, breaker, timeouts), logLevel and shutdownGrace need a restart.`,
  options: {
    config: { type: "string", short: "c" },
    port: { type: "string", short: "p" },
    "admin-port": { type: "string" },
    host: { type: "string" },
  },
  async run(values) {
    if (typeof values.config !== "string") throw new UsageError("--config is required");
    const port = parsePort(values.port, "--port");
    const adminPort = parsePort(values["admin-port"], "--admin-port");
    const { engine, references } = loadEngine(values.config);
    const logger = createLogger(engine.config.logLevel);
    warnReferences(logger, references);
    warnEphemeralSessionKeys(logger, engine.config);
    const metrics = new Metrics();
    const edge = await startEdge({
      engine,
      logger,
      metrics,
      port,
      host: typeof values.host === "string" ? values.host : undefined,
    });
    let admin: Server;
    try {
      admin = await startAdminServer(
        metrics,
        { ready: edge.ready },
        engine.config.listen.admin.host,
        adminPort ?? engine.config.listen.admin.port,
        [
          approvalsAdminApi(() => edge.engine, edge.state.approvals, logger),
          consoleApi({
            engine: () => edge.engine,
            approvals: edge.state.approvals,
            audit: edge.audit,
            store: edge.state.store,
            metrics,
            upstreams: () => edge.upstreamStatus(),
            logger,
          }),
          consoleAssets(),
        ],
      );
      edge.state.approvals.adminUrl = adminBaseUrl(engine.config.listen.admin.host, boundPort(admin));
    } catch (err) {
      await edge.close(0);
      throw err;
    }
    logger.info(
      { edge: edge.url, admin: `http://${engine.config.listen.admin.host}:${boundPort(admin)}` },
      "edge listening",
    );
    const stopReloading = reloadOnHangup({
      configFile: values.config,
      target: edge,
      logger,
      metrics,
      fixedAtStart: ["listen", "edge", "state", "logLevel", "shutdownGrace", "tracing"],
    });
    await untilSignal(async (signal) => {
      stopReloading();
      logger.info({ signal }, "draining");
      await edge.close();
      await closeServer(admin);
    });
    return 0;
  },
};
