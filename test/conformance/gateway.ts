/**
 * The gateway the conformance suite runs through: test/fixtures/conformance/{gateway,registry}.yaml copied to a temp
 * dir, with dev keys and each server's upstream pointed at the conformance server the test started.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseDocument } from "yaml";
import { loadEngine } from "../../ext-service/src/config/compile.js";
import { ensureDevKeys, signDevToken } from "../../ext-service/src/config/devkeys.js";
import { startEdge, type Edge } from "../../ext-service/src/edge/index.js";
import { startEnvoyRoleFront } from "../../ext-service/src/envoy/envoy-role-front.js";
import { createLogger } from "../../ext-service/src/telemetry/logger.js";
import { Metrics } from "../../ext-service/src/telemetry/metrics.js";
import type { Revision } from "./servers.js";
import type { GatewayEngine } from "../../ext-service/src/config/compile.js";

export const FIXTURE_DIR = fileURLToPath(new URL("../fixtures/conformance/", import.meta.url));
export const AGENT = "conformance-suite";

/** The registry server that fronts the conformance server of each revision. */
export function serverName(revision: Revision): string {
  return `conformance-${revision.slice(0, 4)}`;
}

export interface GatewayConfig {
  dir: string;
  configFile: string;
  engine: GatewayEngine;
  token: string;
  remove(): void;
}

/**
 * Writes the fixture config with live upstreams and compiles it. `publicUrl`, when given, is where clients reach
 * the gateway (through the token hop: the hop's origin), so the gateway takes that Origin for its own.
 */
export async function prepareGatewayConfig(
  upstreams: Partial<Record<Revision, string>>,
  publicUrl?: string,
): Promise<GatewayConfig> {
  const dir = mkdtempSync(join(tmpdir(), "mcp-conformance-gw-"));
  const keys = await ensureDevKeys(join(dir, "keys"));
  const gateway = parseDocument(readFileSync(join(FIXTURE_DIR, "gateway.yaml"), "utf8"));
  if (publicUrl) gateway.set("publicUrl", publicUrl);
  writeFileSync(join(dir, "gateway.yaml"), gateway.toString());
  const registry = parseDocument(readFileSync(join(FIXTURE_DIR, "registry.yaml"), "utf8"));
  for (const [revision, url] of Object.entries(upstreams)) {
    const servers = registry.get("servers") as {
      items: { get(k: string): unknown; set(k: string, v: unknown): void }[];
    };
    const entry = servers.items.find((s) => s.get("name") === serverName(revision as Revision));
    if (!entry) throw new Error(`registry fixture has no server ${serverName(revision as Revision)}`);
    entry.set("upstreams", [url]);
  }
  writeFileSync(join(dir, "registry.yaml"), registry.toString());
  const configFile = join(dir, "gateway.yaml");
  const { engine } = loadEngine(configFile);
  const token = await signDevToken(keys.privateJwk, { subject: AGENT, ttl: "1h" });
  return { dir, configFile, engine, token, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A data plane in front of the conformance servers: where the suite's hop sends each revision's traffic. */
export interface PlaneGateway {
  url(revision: Revision): string;
  /** The aggregated endpoint's view of that one server, under its own names (`prefix: false`). */
  viewUrl(revision: Revision): string;
  close(): Promise<void>;
}

export type Plane = "edge" | "envoy";

const quietLogger = () => createLogger("warn", { write: () => undefined });

/** The local edge (`mcp-gateway edge`) in process. */
async function startEdgeGateway(config: GatewayConfig): Promise<PlaneGateway> {
  const edge: Edge = await startEdge({
    engine: config.engine,
    logger: quietLogger(),
    metrics: new Metrics(false),
    host: "127.0.0.1",
    port: 0,
  });
  return {
    url: (revision) => `${edge.url}/mcp/${serverName(revision)}`,
    viewUrl: (revision) => `${edge.url}/mcp/views/${serverName(revision)}`,
    close: () => edge.close(0),
  };
}

/**
 * The Envoy path without an Envoy binary: the Envoy-role front (an HTTP listener playing the shipped filter chain,
 * ext_authz then ext_proc over real gRPC, streaming both ways) in front of the real ext-service (`mcp-gateway serve`).
 */
async function startEnvoyGateway(config: GatewayConfig): Promise<PlaneGateway> {
  const front = await startEnvoyRoleFront({ extService: { engine: config.engine, logger: quietLogger() } });
  return {
    url: (revision) => `${front.url}/mcp/${serverName(revision)}`,
    viewUrl: (revision) => `${front.url}/mcp/views/${serverName(revision)}`,
    close: () => front.close(),
  };
}

export function startPlane(plane: Plane, config: GatewayConfig): Promise<PlaneGateway> {
  return plane === "edge" ? startEdgeGateway(config) : startEnvoyGateway(config);
}
