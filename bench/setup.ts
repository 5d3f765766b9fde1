import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import { loadEngine } from "../ext-service/src/config/compile.js";
import { DEV_AUDIENCE, DEV_ISSUER, ensureDevKeys, signDevToken } from "../ext-service/src/config/devkeys.js";
import { REFERENCE_JSON_PATH, REFERENCE_SSE_PATH, REFERENCE_TOOLS } from "./reference-server.js";
import { CACHED_TOOL, JSON_SERVER, SSE_SERVER } from "./workloads.js";

export const BENCH_AGENT = "bench-agent";

export interface Workdir {
  dir: string;
  configFile: string;
  registryFile: string;
  /** A real signed JWT for BENCH_AGENT (1 hour). */
  token: string;
  remove(): void;
}

/**
 * The registry: both reference endpoints, each with the reference server's 50 tools. One
 * read-only tool has its results cached (CACHED_TOOL, per agent, for an hour): the call_cached
 * workload, against call_uncached on another read-only tool without a cache.
 */
export function benchRegistry(referenceOrigin: string): Record<string, unknown> {
  const tools = REFERENCE_TOOLS.map((t) => ({
    name: t.name,
    description: t.description,
    inputSchema: t.inputSchema,
    ...(t.annotations ? { annotations: t.annotations } : {}),
    ...(t.name === CACHED_TOOL ? { cache: { ttl: "1h", scope: "agent" } } : {}),
    risk: "low",
  }));
  return {
    version: "bench-1",
    servers: [
      {
        name: JSON_SERVER,
        description: "Benchmark reference server (JSON answers)",
        upstreams: [`${referenceOrigin}${REFERENCE_JSON_PATH}`],
        tools,
      },
      {
        name: SSE_SERVER,
        description: "Benchmark reference server (SSE answers)",
        upstreams: [`${referenceOrigin}${REFERENCE_SSE_PATH}`],
        tools,
      },
    ],
  };
}

/**
 * The gateway config: the dev issuer's keys from this directory, RBAC allowing every reference
 * tool (plus a deny rule, so the deny path is evaluated too), and an edge rate limit high enough
 * never to trigger. Security checks (schema, injection, DLP) run with their defaults.
 */
export function benchConfig(): Record<string, unknown> {
  return {
    registry: "registry.yaml",
    publicUrl: "http://127.0.0.1:8080",
    listen: {
      grpc: { host: "127.0.0.1", port: 0 },
      admin: { host: "127.0.0.1", port: 0 },
      edge: { host: "127.0.0.1", port: 0 },
    },
    auth: {
      mode: "required",
      issuers: [
        {
          issuer: DEV_ISSUER,
          audiences: [DEV_AUDIENCE],
          jwks: { file: "keys/jwks.json" },
          algorithms: ["ES256"],
          trustTokenRoles: false,
        },
      ],
    },
    roles: {
      bench: {
        description: "Every reference tool, except a name none of them has",
        rules: [
          { effect: "allow", tools: [`${JSON_SERVER}/*`, `${SSE_SERVER}/*`] },
          { effect: "deny", tools: ["*/drop_*"] },
        ],
      },
    },
    agents: { [BENCH_AGENT]: { description: "The benchmark's load generator", roles: ["bench"] } },
    edge: { rateLimit: { requestsPerSecond: 1_000_000, burst: 1_000_000 } },
    // The broker sides (targets/broker.ts): one view per server, so /mcp/views/<server> offers
    // exactly what /mcp/<server> does (the same 50 tools, prefixed).
    broker: {
      views: {
        [JSON_SERVER]: { servers: [JSON_SERVER] },
        [SSE_SERVER]: { servers: [SSE_SERVER] },
      },
    },
    logLevel: "info",
  };
}

/** Keys, token, gateway.yaml and registry.yaml in a fresh temp dir, checked by the real loader. */
export async function prepareWorkdir(referenceOrigin: string): Promise<Workdir> {
  const dir = mkdtempSync(join(tmpdir(), "mcp-gateway-bench-"));
  try {
    const keys = await ensureDevKeys(join(dir, "keys"));
    const configFile = join(dir, "gateway.yaml");
    const registryFile = join(dir, "registry.yaml");
    writeFileSync(registryFile, stringify(benchRegistry(referenceOrigin)));
    writeFileSync(configFile, stringify(benchConfig()));
    loadEngine(configFile);
    const token = await signDevToken(keys.privateJwk, { subject: BENCH_AGENT, ttl: "1h" });
    return {
      dir,
      configFile,
      registryFile,
      token,
      remove: () => rmSync(dir, { recursive: true, force: true }),
    };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}
