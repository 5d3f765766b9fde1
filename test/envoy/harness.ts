import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { loadEngine } from "../../ext-service/src/config/compile.js";
import { ensureDevKeys, signDevToken, type TokenRequest } from "../../ext-service/src/config/devkeys.js";
import { EnvoyRoleClient, type EnvoyRoleOptions } from "../../ext-service/src/envoy/envoy-role-client.js";
import { startExtService, type ExtService } from "../../ext-service/src/envoy/server.js";
import { sealUpstreamSession } from "../../ext-service/src/policy/session-seal.js";
import { createLogger } from "../../ext-service/src/telemetry/logger.js";
import { Metrics } from "../../ext-service/src/telemetry/metrics.js";
import { PinVerifier, type ToolLister } from "../../ext-service/src/upstream/pin-verifier.js";
import { listedTool } from "../policy/support.js";
import type { GatewayEngine } from "../../ext-service/src/config/compile.js";

/** A test gateway: its own keys, config and registry in a temp dir; the real ext-service on port 0. */

export const GATEWAY_YAML = `registry: registry.yaml
publicUrl: https://gateway.test
auth:
  mode: required
  issuers:
    - issuer: mcp-gateway-dev
      audiences: [mcp-gateway]
      jwks: { file: keys/jwks.json }
      algorithms: [ES256]
      trustTokenRoles: false
roles:
  support:
    rules:
      - effect: allow
        tools: ["tickets/*"]
        prompts: ["tickets/*"]
      - effect: deny
        tools: ["tickets/delete_ticket"]
  reader:
    rules:
      - effect: allow
        tools: ["kb/*"]
agents:
  support-bot: { roles: [support] }
  research-bot: { roles: [reader] }
  idle-bot: { roles: [] }
limits:
  maxRequestBytes: 4096
  maxResponseBytes: 65536
  maxBatchSize: 3
  maxJsonDepth: 8
  maxSseEventBytes: 2048
shutdownGrace: 2s
drainDelay: 200ms
logLevel: debug
`;

export const REGISTRY_YAML = `version: "test-1"
servers:
  - name: tickets
    upstreams: ["http://127.0.0.1:1/mcp"]
    tools:
      - name: list_tickets
        description: List tickets — ünïcode ✓
      - name: get_ticket
        description: Fetch one ticket.
        inputSchema: { type: object, properties: { id: { type: string } }, required: [id] }
      - name: delete_ticket
        description: Delete a ticket.
  - name: kb
    upstreams: ["http://127.0.0.1:2/mcp"]
    tools:
      - name: search_articles
        description: Search articles.
`;

/** How `server` lists `name` in tools/list: REGISTRY_YAML's definition, so its pin matches. */
export function listedTestTool(server: string, name: string): Record<string, unknown> {
  return listedTool(parseYaml(REGISTRY_YAML) as Record<string, unknown>, server, name);
}

/**
 * The MCP servers behind this harness exist only as Envoy-role callbacks, so the ext-service's
 * own tools/list fetch (pins checked before the first call) is answered here: each registry
 * server lists exactly its registered definitions, unless `lists` says otherwise for a URL.
 */
export function registryLister(
  registryYaml: string | (() => string),
  lists: Record<string, () => Record<string, unknown>[]> = {},
): ToolLister {
  const current = () =>
    parseYaml(typeof registryYaml === "string" ? registryYaml : registryYaml()) as {
      servers: { name: string; upstreams: string[]; tools: { name: string }[] }[];
    };
  return async (url) => {
    const own = lists[url];
    if (own) return own();
    const reg = current();
    const server = reg.servers.find((s) => s.upstreams.includes(url));
    if (!server) throw Object.assign(new Error(`connect ECONNREFUSED ${url}`), { code: "ECONNREFUSED" });
    return server.tools.map((t) =>
      listedTool(reg as unknown as Record<string, unknown>, server.name, t.name),
    );
  };
}

/** Collects pino's JSON lines so tests can read audit records and check what was logged. */
export class LogCapture {
  readonly lines: string[] = [];
  write(line: string): void {
    this.lines.push(line);
  }
  records(): Record<string, unknown>[] {
    return this.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  }
  audits(): Record<string, unknown>[] {
    return this.records().filter((r) => r.audit === true);
  }
  auditsFor(requestId: string): Record<string, unknown>[] {
    return this.audits().filter((r) => r.request_id === requestId);
  }
  text(): string {
    return this.lines.join("");
  }
}

export interface Gateway {
  dir: string;
  engine: GatewayEngine;
  service: ExtService;
  metrics: Metrics;
  logs: LogCapture;
  client: EnvoyRoleClient;
  token(subject: string, extra?: Omit<TokenRequest, "subject">): Promise<string>;
  /** The id a client of `agent` holds for the upstream's session `upstream` on `server` (sealed). */
  session(agent: string, server: string, upstream?: string): string;
  newClient(options?: EnvoyRoleOptions): EnvoyRoleClient;
  close(): Promise<void>;
}

export async function startGateway(
  options: {
    clientOptions?: EnvoyRoleOptions;
    /** Config and registry texts in place of GATEWAY_YAML and REGISTRY_YAML. */
    gatewayYaml?: string;
    registryYaml?: string;
    /** What the servers answer to the ext-service's own tools/list; default registryLister. */
    lister?: ToolLister;
  } = {},
): Promise<Gateway> {
  const dir = mkdtempSync(join(tmpdir(), "mcp-gateway-envoy-"));
  const keys = await ensureDevKeys(join(dir, "keys"));
  writeFileSync(join(dir, "gateway.yaml"), options.gatewayYaml ?? GATEWAY_YAML);
  writeFileSync(join(dir, "registry.yaml"), options.registryYaml ?? REGISTRY_YAML);
  const { engine } = loadEngine(join(dir, "gateway.yaml"));
  const logs = new LogCapture();
  const logger = createLogger("debug", logs);
  const metrics = new Metrics(false);
  const service = await startExtService({
    engine,
    logger,
    grpcHost: "127.0.0.1",
    grpcPort: 0,
    adminHost: "127.0.0.1",
    adminPort: 0,
    metrics,
    pinVerifier: new PinVerifier(
      logger,
      options.lister ?? registryLister(() => readFileSync(join(dir, "registry.yaml"), "utf8")),
    ),
  });
  const clients: EnvoyRoleClient[] = [];
  const newClient = (clientOptions?: EnvoyRoleOptions) => {
    const c = new EnvoyRoleClient(service.grpcAddress, clientOptions);
    clients.push(c);
    return c;
  };
  const client = newClient(options.clientOptions);
  return {
    dir,
    engine,
    service,
    metrics,
    logs,
    client,
    newClient,
    token: (subject, extra = {}) => signDevToken(keys.privateJwk, { subject, ...extra }),
    session: (agent, server, upstream = "session-1") =>
      sealUpstreamSession(engine.sessions, { issuer: "mcp-gateway-dev", agent, server }, { upstream }),
    async close() {
      for (const c of clients) c.close();
      await service.close(1000);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export const MCP_POST_HEADERS = {
  "content-type": "application/json",
  accept: "application/json, text/event-stream",
  "mcp-protocol-version": "2025-06-18",
};

export function toolsCall(id: number | string, name: string, args: Record<string, unknown> = {}) {
  return { jsonrpc: "2.0", id, method: "tools/call", params: { name, arguments: args } };
}

export function jsonResult(id: number | string, result: unknown) {
  return JSON.stringify({ jsonrpc: "2.0", id, result });
}
