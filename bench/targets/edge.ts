import { loadEngine } from "../../ext-service/src/config/compile.js";
import type { PolicyEngine } from "../../ext-service/src/policy/engine.js";
import type { Logger } from "../../ext-service/src/telemetry/logger.js";
import { Metrics } from "../../ext-service/src/telemetry/metrics.js";
import { startHosted } from "../hosted.js";
import { httpSide } from "../http-side.js";
import { benchLogger, importModule, missingModules } from "./support.js";
import type { SideDeclaration, Target } from "./types.js";

/**
 * The local edge with every policy on, in its own process, in front of the reference server:
 * client -> edge (/mcp/<server>) -> reference server. Compared with `direct`.
 */

// Wiring point: the module exporting startEdge (path without extension).
const EDGE_MODULE = new URL("../../ext-service/src/edge/index", import.meta.url);

interface EdgeModule {
  startEdge(opts: {
    engine: PolicyEngine;
    host: string;
    port: number;
    logger: Logger;
    metrics: Metrics;
  }): Promise<{ port: number; close(): Promise<void> }> | { port: number; close(): Promise<void> };
}

/**
 * Runs in the edge's process (bench/host.ts). `logLevel` "warn" leaves the audit line out (the
 * record is still built, kept for the console and counted): what writing it costs; `unbatchedLog`
 * writes each line on its own (bench/edge-vs-bare.ts compares them).
 */
export async function serveEdge(params: {
  configFile: string;
  logLevel?: "info" | "warn";
  unbatchedLog?: boolean;
  port?: number;
}) {
  const { startEdge } = await importModule<EdgeModule>(EDGE_MODULE);
  const { engine } = loadEngine(params.configFile);
  const edge = await startEdge({
    engine,
    host: "127.0.0.1",
    port: params.port ?? 0,
    logger: benchLogger(params.logLevel, !params.unbatchedLog),
    metrics: new Metrics(),
  });
  return { ports: { http: edge.port }, close: () => edge.close() };
}

const EDGE: SideDeclaration = {
  name: "edge",
  baseline: "direct",
  cpuBaseline: "bare-proxy",
  description: "client -> local edge (all policies) -> reference MCP server",
};

export const target: Target = {
  name: "edge",
  sides: [EDGE],
  unavailable: () => missingModules(EDGE_MODULE),
  async start(ctx) {
    const edge = await startHosted(
      new URL(import.meta.url),
      "serveEdge",
      { configFile: ctx.configFile },
      "edge",
    );
    return [
      httpSide({
        ...EDGE,
        origin: `http://127.0.0.1:${edge.ports.http}`,
        pathFor: (w) => `/mcp/${w.server}`,
        token: ctx.token,
        connections: ctx.connections,
        serverCpuMicros: edge.cpuMicros,
        serverGc: edge.gc,
        onClose: edge.close,
      }),
    ];
  },
};
