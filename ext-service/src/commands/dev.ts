import { existsSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import {
  DEMO_SERVERS,
  startDemoServers,
  type DemoServerName,
  type RunningServer,
} from "../../../examples/servers/index.js";
import type { Command } from "./command.js";
import { UsageError } from "./command.js";
import { compileEngine } from "../config/compile.js";
import { DEV_ISSUER, ensureDevKeys, ensureDevSessionKey, signDevToken } from "../config/devkeys.js";
import { loadConfig, type LoadedConfig } from "../config/load.js";
import { startEdge, type Edge } from "../edge/index.js";
import type { Principal } from "../policy/identity.js";
import { approvalsAdminApi } from "../approvals/admin-api.js";
import { consoleApi } from "../console/api.js";
import { consoleAssets } from "../console/routes.js";
import { adminBaseUrl, boundPort, startAdminServer } from "../telemetry/admin.js";
import { createLogger, type Logger } from "../telemetry/logger.js";
import { Metrics } from "../telemetry/metrics.js";
import { closeServer, parsePort, untilSignal } from "./edge.js";
import type { GatewayEngine } from "../config/compile.js";

/** The repository root: the nearest ancestor holding examples/gateway.yaml (works from src and dist). */
export function repoRoot(from = dirname(fileURLToPath(import.meta.url))): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, "examples", "gateway.yaml"))) return dir;
    if (dirname(dir) === dir) throw new Error("cannot find examples/gateway.yaml above " + from);
  }
}

export interface DevOptions {
  /** Defaults to examples/gateway.yaml. */
  configFile?: string;
  /** Dev signing keys; defaults to .dev/ in the repository. */
  keysDir?: string;
  host?: string;
  /** Edge port; defaults to the config's listen.edge.port. 0 picks a free port. */
  edgePort?: number;
  adminPort?: number;
  /** Demo server ports; default 3101-3103. 0 picks a free port. */
  demoPorts?: Partial<Record<DemoServerName, number>>;
  tokenTtl?: string;
  logger?: Logger;
  metrics?: Metrics;
}

export interface DevAgent {
  name: string;
  roles: readonly string[];
  description: string | undefined;
  token: string;
}

export interface DevRuntime {
  engine: GatewayEngine;
  edge: Edge;
  adminUrl: string;
  servers: Record<DemoServerName, RunningServer>;
  agents: DevAgent[];
  /** Gateway URL per registry server. */
  urls: Record<string, string>;
  close(graceMs?: number): Promise<void>;
}

function freePort(host: string): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, host, () => {
      const port = (probe.address() as AddressInfo).port;
      probe.close(() => resolvePort(port));
    });
  });
}

function explainListenError(err: unknown, what: string, port: number): Error {
  if ((err as NodeJS.ErrnoException).code === "EADDRINUSE") {
    return new Error(
      `${what} port ${port} is already in use; stop the other process or choose other ports ` +
        "(npm start -- --port 0 --demo-ports 0 --admin-port 0 picks free ones)",
    );
  }
  return err as Error;
}

/**
 * `mcp-gateway dev`: dev keys, the three demo MCP servers and the edge in one process, with the
 * demo config. The demo servers' registry entries point at wherever the servers really listen.
 */
export async function startDev(options: DevOptions = {}): Promise<DevRuntime> {
  const root = repoRoot();
  const host = options.host ?? "127.0.0.1";
  const keysDir = resolve(options.keysDir ?? join(root, ".dev"));
  const keys = await ensureDevKeys(keysDir);
  const base = loadConfig(options.configFile ?? join(root, "examples", "gateway.yaml"));

  const demoPorts: Partial<Record<DemoServerName, number>> = {};
  for (const name of Object.keys(DEMO_SERVERS) as DemoServerName[]) {
    demoPorts[name] = options.demoPorts?.[name] ?? DEMO_SERVERS[name].port;
  }
  let servers: Record<DemoServerName, RunningServer>;
  try {
    servers = await startDemoServers(demoPorts, host);
  } catch (err) {
    throw explainListenError(err, "A demo server", (err as { port?: number }).port ?? 0);
  }
  const started: { close(): Promise<void> }[] = Object.values(servers);
  try {
    let edgePort = options.edgePort ?? base.config.listen.edge.port;
    if (edgePort === 0) edgePort = await freePort(host);
    const publicUrl = `http://${host}:${edgePort}`;
    const loaded: LoadedConfig = {
      ...base,
      config: {
        ...base.config,
        publicUrl,
        // A config without session keys gets the dev one (beside the dev signing key): the
        // session ids agents hold survive a restart of the dev gateway. One with keys keeps them.
        sessions:
          base.config.sessions.keys.length > 0
            ? base.config.sessions
            : { ...base.config.sessions, keys: [{ file: ensureDevSessionKey(keysDir) }] },
        auth: {
          ...base.config.auth,
          issuers: base.config.auth.issuers.map((i) =>
            i.issuer === DEV_ISSUER ? { ...i, jwks: { file: keys.jwksFile } } : i,
          ),
        },
      },
      registry: {
        ...base.registry,
        servers: base.registry.servers.map((s) =>
          s.name in servers ? { ...s, upstreams: [servers[s.name as DemoServerName].url] } : s,
        ),
      },
    };
    const engine = compileEngine(loaded);
    const logger = options.logger ?? createLogger(engine.config.logLevel);
    const metrics = options.metrics ?? new Metrics();
    let edge: Edge;
    try {
      edge = await startEdge({ engine, logger, metrics, host, port: edgePort });
    } catch (err) {
      throw explainListenError(err, "The gateway", edgePort);
    }
    started.unshift({ close: () => edge.close(0) });
    const adminPort = options.adminPort ?? engine.config.listen.admin.port;
    let admin: Server;
    try {
      admin = await startAdminServer(
        metrics,
        { ready: edge.ready },
        engine.config.listen.admin.host,
        adminPort,
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
      throw explainListenError(err, "The admin", adminPort);
    }
    const agents: DevAgent[] = [];
    for (const [name, agent] of Object.entries(engine.config.agents)) {
      const token = await signDevToken(keys.privateJwk, { subject: name, ttl: options.tokenTtl ?? "12h" });
      agents.push({ name, roles: agent.roles, description: agent.description, token });
    }
    const urls = Object.fromEntries(engine.registry.serverNames().map((n) => [n, `${edge.url}/mcp/${n}`]));
    return {
      engine,
      edge,
      adminUrl: `http://${engine.config.listen.admin.host}:${boundPort(admin)}`,
      servers,
      agents,
      urls,
      async close(graceMs?: number) {
        await edge.close(graceMs);
        await closeServer(admin);
        await Promise.allSettled(Object.values(servers).map((s) => s.close()));
      },
    };
  } catch (err) {
    await Promise.allSettled(started.map((s) => s.close()));
    throw err;
  }
}

export const CURL_PROTOCOL_VERSION = "2025-06-18";

/** A shell snippet (bash/zsh) that initializes a session through the gateway and lists tools. */
export function curlListTools(url: string, token: string): string {
  const init = JSON.stringify({
    jsonrpc: "2.0",
    id: 1,
    method: "initialize",
    params: {
      protocolVersion: CURL_PROTOCOL_VERSION,
      capabilities: {},
      clientInfo: { name: "curl", version: "1.0" },
    },
  });
  const list = JSON.stringify({ jsonrpc: "2.0", id: 2, method: "tools/list" });
  const mcpHeaders = `-H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream'`;
  return [
    `TOKEN='${token}'`,
    `URL=${url}`,
    `SID=$(curl -s -o /dev/null -D - "$URL" -H "Authorization: Bearer $TOKEN" ${mcpHeaders} \\`,
    `  -d '${init}' \\`,
    `  | tr -d '\\r' | awk 'tolower($1)=="mcp-session-id:" {print $2}')`,
    `curl -s "$URL" -H "Authorization: Bearer $TOKEN" -H "Mcp-Session-Id: $SID" \\`,
    `  -H 'Mcp-Protocol-Version: ${CURL_PROTOCOL_VERSION}' ${mcpHeaders} \\`,
    `  -d '${list}' | sed -n 's/^data: //p'`,
  ].join("\n");
}

export const CURL_BEGIN = "--- copy from here ---";
export const CURL_END = "--- to here ---";

/** The principal a demo agent's token stands for (roles from gateway.yaml, the dev issuer). */
function principalOf(dev: DevRuntime, agent: DevAgent): Principal {
  return {
    agent: agent.name,
    roles: agent.roles,
    claims: { sub: agent.name },
    issuer: DEV_ISSUER,
    anonymous: false,
  };
}

export function devBanner(dev: DevRuntime): string {
  const width = Math.max(...Object.keys(dev.urls).map((n) => n.length));
  const lines = [
    "",
    "mcp-gateway dev: the local edge in front of three demo MCP servers",
    "",
    "Gateway URLs (MCP Streamable HTTP; every request needs a bearer token):",
  ];
  for (const [name, url] of Object.entries(dev.urls)) {
    const upstreams = dev.engine.registry.server(name)?.config.upstreams.join(", ") ?? "";
    lines.push(`  ${name.padEnd(width)}  ${url}   (demo server ${upstreams})`);
  }
  const separator = dev.engine.config.broker.separator;
  lines.push(
    "",
    `One URL for every server the token's agent may use (names <server>${separator}<name>, README.md):`,
    `  ${dev.edge.url}/mcp`,
  );
  lines.push(
    "",
    "Demo agents and ready tokens (valid 12h, signed by the dev key; roles come from gateway.yaml):",
  );
  for (const a of dev.agents) {
    lines.push(`  ${a.name}  roles: ${a.roles.join(", ")}${a.description ? ` - ${a.description}` : ""}`);
    lines.push(`    ${a.token}`);
  }
  const agent = dev.agents.find((a) => a.name === "support-bot") ?? dev.agents[0];
  const server = dev.urls.tickets ? "tickets" : Object.keys(dev.urls)[0]!;
  if (agent) {
    lines.push(
      "",
      `List the tools ${agent.name} may use on '${server}' (paste into bash or zsh):`,
      CURL_BEGIN,
      curlListTools(dev.urls[server]!, agent.token),
      CURL_END,
      "",
      "Point any MCP client at a gateway URL with the header 'Authorization: Bearer <token>'",
      "(Claude Code, Cursor, MCP Inspector, mcp-remote: see 'Connect an MCP client' in README.md).",
    );
  }
  const approver = dev.agents.find(
    (a) => dev.engine.approvals.adminAccess(principalOf(dev, a)) !== undefined,
  );
  if (approver && dev.engine.config.approvals.rules.length > 0) {
    lines.push(
      "",
      "Held calls (human approval, docs/APPROVALS.md): a call that needs approval is answered",
      "approval_required with an approval id; the agent's identical retry goes through once it is approved:",
      `  export MCP_GATEWAY_ADMIN_TOKEN='${approver.token}'   # ${approver.name}`,
      `  npx tsx ext-service/src/cli.ts approvals list --url ${dev.adminUrl}`,
      `  npx tsx ext-service/src/cli.ts approvals approve <approval id> --url ${dev.adminUrl}`,
    );
  }
  const consoleUser =
    dev.agents.find((a) => dev.engine.approvals.adminAccess(principalOf(dev, a)) === "admin") ?? approver;
  if (consoleUser) {
    lines.push(
      "",
      `Admin console (docs/CONSOLE.md): open ${dev.adminUrl}/console and paste this token (${consoleUser.name}):`,
      `  ${consoleUser.token}`,
    );
  }
  lines.push(
    "",
    `Admin: ${dev.adminUrl}/metrics  ${dev.adminUrl}/healthz  ${dev.adminUrl}/readyz  ${dev.adminUrl}/admin/approvals`,
    "Audit records follow as JSON lines. Ctrl-C stops everything.",
    "",
  );
  return lines.join("\n");
}

function parseDemoPorts(value: unknown): Partial<Record<DemoServerName, number>> | undefined {
  if (value === undefined) return undefined;
  const names = Object.keys(DEMO_SERVERS) as DemoServerName[];
  const parts = String(value).split(",");
  if (parts.length !== 1 && parts.length !== names.length) {
    throw new UsageError(`--demo-ports takes one port for all (0) or ${names.length}: ${names.join(",")}`);
  }
  const ports = parts.map((p) => parsePort(p.trim(), "--demo-ports")!);
  if (parts.length === 1 && ports[0] !== 0) throw new UsageError("--demo-ports with one value must be 0");
  return Object.fromEntries(names.map((n, i) => [n, ports[parts.length === 1 ? 0 : i]!]));
}

export const devCommand: Command = {
  name: "dev",
  summary: "Demo: the edge plus three demo MCP servers, dev keys and tokens (npm start)",
  usage: `Usage: mcp-gateway dev [--config examples/gateway.yaml] [--port 8080] [--admin-port 9901]
                       [--demo-ports kb,tickets,deploy | 0] [--keys .dev]

Creates the dev signing key and session key in --keys (first run only, never committed; the
session key keeps session ids valid across restarts when the config has no sessions.keys), starts the demo MCP
servers (kb 3101, tickets 3102, deploy 3103) and the local edge with the demo config, then prints
the gateway URL per server, a ready token per demo agent and a curl command that lists tools
through the gateway. Port 0 picks free ports. Ctrl-C (SIGINT) or SIGTERM stops everything.`,
  options: {
    config: { type: "string", short: "c" },
    port: { type: "string", short: "p" },
    "admin-port": { type: "string" },
    "demo-ports": { type: "string" },
    keys: { type: "string" },
  },
  async run(values) {
    const dev = await startDev({
      configFile: typeof values.config === "string" ? values.config : undefined,
      keysDir: typeof values.keys === "string" ? values.keys : undefined,
      edgePort: parsePort(values.port, "--port"),
      adminPort: parsePort(values["admin-port"], "--admin-port"),
      demoPorts: parseDemoPorts(values["demo-ports"]),
    });
    process.stdout.write(devBanner(dev) + "\n");
    await untilSignal(async (signal) => {
      process.stdout.write(`\n${signal}: stopping the gateway and the demo servers\n`);
      await dev.close();
      process.stdout.write("stopped\n");
    });
    return 0;
  },
};
