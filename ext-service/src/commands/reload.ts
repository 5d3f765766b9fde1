import { isDeepStrictEqual } from "node:util";
import { loadEngine, warnReferences } from "../config/compile.js";
import { ConfigError, formatProblem } from "../config/load.js";
import type { GatewayConfig } from "../config/schema.js";
import type { Logger } from "../telemetry/logger.js";
import type { Metrics } from "../telemetry/metrics.js";
import type { GatewayEngine } from "../config/compile.js";

/** A data plane whose policy can be replaced while it serves. */
export interface EngineHolder {
  readonly engine: GatewayEngine;
  setEngine(engine: GatewayEngine): void;
}

export interface ReloadOptions {
  configFile: string;
  target: EngineHolder;
  logger: Logger;
  metrics: Metrics;
  /** gateway.yaml keys the running process read once at start; a change is reported, not applied. */
  fixedAtStart: readonly (keyof GatewayConfig)[];
}

export type ReloadResult =
  | { ok: true; registryVersion: string; servers: string[]; needsRestart: string[] }
  | { ok: false; problems: string[] };

/**
 * Reads gateway.yaml and its registry again and, if every check passes, swaps the policy in one
 * step: requests already admitted finish under the policy they started with, the next ones get
 * the new one. Any problem keeps the running policy (a typo must never open or close the gateway).
 */
export function reloadConfig(options: ReloadOptions): ReloadResult {
  const { configFile, target, logger, metrics } = options;
  let next: GatewayEngine;
  try {
    const loaded = loadEngine(configFile);
    next = loaded.engine;
    warnReferences(logger, loaded.references);
  } catch (err) {
    const problems = err instanceof ConfigError ? err.problems.map(formatProblem) : [String(err)];
    metrics.configReloads.inc({ result: "rejected" });
    logger.error({ config: configFile, problems }, "config reload rejected: the running config is kept");
    return { ok: false, problems };
  }
  const before = target.engine.config;
  const needsRestart = options.fixedAtStart.filter(
    (key) => !isDeepStrictEqual(before[key], next.config[key]),
  );
  target.setEngine(next);
  metrics.configReloads.inc({ result: "applied" });
  const servers = next.registry.serverNames();
  const registryVersion = next.registry.version;
  if (needsRestart.length > 0) {
    logger.warn({ keys: needsRestart }, "config reload: these settings take effect on the next restart");
  }
  logger.info({ config: configFile, registry_version: registryVersion, servers }, "config reloaded");
  return { ok: true, registryVersion, servers, needsRestart };
}

/** Reloads on every SIGHUP until the returned function is called. */
export function reloadOnHangup(options: ReloadOptions): () => void {
  const onHangup = () => {
    options.logger.info({ config: options.configFile }, "SIGHUP: reloading config and registry");
    reloadConfig(options);
  };
  process.on("SIGHUP", onHangup);
  return () => process.off("SIGHUP", onHangup);
}
