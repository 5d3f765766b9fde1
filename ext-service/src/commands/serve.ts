import type { Command } from "./command.js";
import { UsageError } from "./command.js";
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { loadEngine, warnEphemeralSessionKeys, warnReferences } from "../config/compile.js";
import { durationMs, type GatewayConfig } from "../config/schema.js";
import type { GrpcTls } from "../envoy/server.js";
import { startExtService } from "../envoy/server.js";
import { reloadOnHangup } from "./reload.js";
import { createLogger } from "../telemetry/logger.js";

export { startExtService, type ExtService, type ExtServiceOptions } from "../envoy/server.js";

function portOption(value: unknown, name: string): number | undefined {
  if (value === undefined) return undefined;
  const port = Number(value);
  if (typeof value !== "string" || !/^\d+$/.test(value) || port > 65535) {
    throw new UsageError(`${name} '${String(value)}' is not a port number (0-65535)`);
  }
  return port;
}

/** listen.grpc.tls's PEM files, relative to gateway.yaml; a missing file stops the start. */
export function readGrpcTls(config: GatewayConfig, configFile: string): GrpcTls | undefined {
  const tls = config.listen.grpc.tls;
  if (!tls) return undefined;
  const read = (key: "cert" | "key" | "clientCa") => {
    const path = resolve(dirname(configFile), tls[key]);
    try {
      return readFileSync(path);
    } catch (err) {
      throw new Error(
        `listen.grpc.tls.${key}: cannot read ${path} (${(err as NodeJS.ErrnoException).code})`,
        {
          cause: err,
        },
      );
    }
  };
  return { cert: read("cert"), key: read("key"), clientCa: read("clientCa") };
}

export const serveCommand: Command = {
  name: "serve",
  summary: "Run the ext-service for Envoy: ext_authz and ext_proc over gRPC, admin HTTP",
  usage: `Usage: mcp-gateway serve --config <gateway.yaml> [--grpc-port N] [--admin-port N]

Serves Envoy's external authorization (envoy.service.auth.v3.Authorization) and external
processing (envoy.service.ext_proc.v3.ExternalProcessor) APIs plus grpc.health.v1.Health on one
gRPC port (listen.grpc, default 127.0.0.1:9001; another address needs listen.grpc.tls, mutual
TLS with Envoy's client certificate), and /metrics, /healthz, /readyz on the admin port
(listen.admin, default 9901), and the aggregated endpoint /mcp over HTTP for Envoy to route to
(listen.broker, default 127.0.0.1:9002; its hops go back through Envoy, broker.hopUrl). Port 0
picks a free port; the bound ports are printed on start.

On SIGHUP: gateway.yaml and the registry are read and checked again; if every check passes the
new policy applies to the calls and streams that start from then on, otherwise every problem is
logged and the running policy is kept. listen, limits, logLevel and shutdownGrace need a restart.

On SIGTERM or SIGINT: readiness and gRPC health turn NOT_SERVING; new calls are still served
for drainDelay (default 12s, so Envoy's health checks take this replica out of rotation
first); then no new streams are accepted, in-flight streams may finish until shutdownGrace
(default 10s), and the process exits 0. A second signal stops at once.`,
  options: {
    config: { type: "string", short: "c" },
    "grpc-port": { type: "string" },
    "admin-port": { type: "string" },
  },
  async run(values) {
    const file = values.config;
    if (typeof file !== "string") throw new UsageError("--config is required");
    const grpcPort = portOption(values["grpc-port"], "--grpc-port");
    const adminPort = portOption(values["admin-port"], "--admin-port");
    const { engine, references } = loadEngine(file);
    const logger = createLogger(engine.config.logLevel);
    warnReferences(logger, references);
    warnEphemeralSessionKeys(logger, engine.config);
    const grpcTls = readGrpcTls(engine.config, file);
    const service = await startExtService({ engine, logger, grpcPort, adminPort, grpcTls });
    const listen = engine.config.listen;
    process.stdout.write(
      `mcp-gateway serve: gRPC (ext_authz, ext_proc, health${grpcTls ? ", mutual TLS" : ""}) on ${listen.grpc.host}:${service.grpcPort}, ` +
        `admin on http://${listen.admin.host}:${service.adminPort}, aggregated endpoint (/mcp) on ${service.brokerUrl}\n`,
    );
    logger.info({ grpc_port: service.grpcPort, admin_port: service.adminPort }, "ext-service started");
    const stopReloading = reloadOnHangup({
      configFile: file,
      target: service,
      logger,
      metrics: service.metrics,
      fixedAtStart: ["listen", "limits", "state", "logLevel", "shutdownGrace", "drainDelay", "tracing"],
    });

    await new Promise<void>((resolve) => {
      let stopping = false;
      const onSignal = (signal: NodeJS.Signals) => {
        if (stopping) {
          logger.warn({ signal }, "second signal: stopping now");
          process.exit(1);
        }
        stopping = true;
        stopReloading();
        logger.info({ signal }, "draining: NOT_SERVING, then finishing in-flight streams");
        service.close(undefined, durationMs(engine.config.drainDelay)).then(
          () => {
            logger.info("ext-service stopped");
            resolve();
          },
          (err: unknown) => {
            logger.error({ err }, "shutdown failed");
            resolve();
          },
        );
      };
      process.on("SIGTERM", onSignal);
      process.on("SIGINT", onSignal);
    });
    return 0;
  },
};
