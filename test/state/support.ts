import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { JWK } from "jose";
import { request } from "undici";
import { stringify } from "yaml";
import { loadEngine, type GatewayEngine } from "../../ext-service/src/config/compile.js";
import { DEV_ISSUER, ensureDevKeys, signDevToken } from "../../ext-service/src/config/devkeys.js";
import { startEdge, type Edge } from "../../ext-service/src/edge/index.js";
import { startExtService, type ExtService } from "../../ext-service/src/envoy/server.js";
import { Metrics } from "../../ext-service/src/telemetry/metrics.js";
import { LogCapture } from "../e2e/harness.js";

/**
 * A gateway.yaml and registry.yaml in a temp dir for the shared-state tests: one `tickets`
 * server (a fake MCP upstream in this process) with tools of different costs, agents in roles.
 */
export interface StateFiles {
  dir: string;
  configFile: string;
  engine(): GatewayEngine;
  token(agent: string): Promise<string>;
  privateJwk: JWK;
  remove(): void;
}

export async function writeStateFiles(options: {
  upstream: string;
  state?: Record<string, unknown>;
  budgets?: Record<string, unknown>;
  edge?: Record<string, unknown>;
  security?: Record<string, unknown>;
  cache?: Record<string, unknown>;
  tools?: Record<string, unknown>[];
}): Promise<StateFiles> {
  const dir = mkdtempSync(join(tmpdir(), "mcp-gw-state-"));
  const keys = await ensureDevKeys(join(dir, "keys"));
  const config = {
    registry: "registry.yaml",
    auth: {
      mode: "required",
      issuers: [
        {
          issuer: DEV_ISSUER,
          audiences: ["mcp-gateway"],
          jwks: { file: keys.jwksFile },
          algorithms: ["ES256"],
          trustTokenRoles: false,
        },
      ],
    },
    roles: { support: { rules: [{ effect: "allow", tools: ["tickets/*"] }] } },
    agents: {
      "bot-a": { roles: ["support"] },
      "bot-b": { roles: ["support"] },
      "bot-c": { roles: ["support"] },
    },
    ...(options.state ? { state: options.state } : {}),
    ...(options.budgets ? { budgets: options.budgets } : {}),
    ...(options.edge ? { edge: options.edge } : {}),
    // The fake upstream here is not a pinning target: pins verified before the first call (trial
    // B4) are tested in test/e2e/pin-verification.test.ts.
    security: {
      ...options.security,
      pins: { verifyBeforeCall: false, ...(options.security?.pins as Record<string, unknown> | undefined) },
    },
    ...(options.cache ? { cache: options.cache } : {}),
    logLevel: "info",
  };
  const tools = options.tools ?? [
    { name: "cheap", description: "A cheap call.", annotations: { readOnlyHint: true } },
    { name: "pricey", description: "An expensive call.", cost: 5 },
    { name: "free", description: "Not counted by the tickets budget.", cost: 0 },
  ];
  const configFile = join(dir, "gateway.yaml");
  writeFileSync(configFile, stringify(config));
  writeFileSync(
    join(dir, "registry.yaml"),
    stringify({
      version: "state-test",
      servers: [{ name: "tickets", upstreams: [options.upstream], tools }],
    }),
  );
  return {
    dir,
    configFile,
    engine: () => loadEngine(configFile).engine,
    token: (agent) => signDevToken(keys.privateJwk, { subject: agent }),
    privateJwk: keys.privateJwk,
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** The local edge in this process on the files' engine, on a free port, its log captured. */
export async function startStateEdge(
  files: StateFiles,
  metrics: Metrics = new Metrics(false),
): Promise<{ edge: Edge; log: LogCapture }> {
  const log = new LogCapture();
  const edge = await startEdge({
    engine: files.engine(),
    logger: log.logger,
    metrics,
    host: "127.0.0.1",
    port: 0,
  });
  return { edge, log };
}

/** The ext-service in this process on the files' engine, gRPC and admin on free ports, its log captured. */
export async function startStateService(
  files: StateFiles,
): Promise<{ service: ExtService; log: LogCapture }> {
  const log = new LogCapture();
  const service = await startExtService({
    engine: files.engine(),
    logger: log.logger,
    grpcHost: "127.0.0.1",
    grpcPort: 0,
    adminHost: "127.0.0.1",
    adminPort: 0,
    metrics: new Metrics(false),
  });
  return { service, log };
}

/** A fake MCP server answering every tools/call with a text result naming the tool; counts calls. */
export interface FakeMcp {
  url: string;
  calls: { name: string; arguments: unknown }[];
  /** Replaces the answer for the next calls. */
  answer: (name: string, args: unknown) => Record<string, unknown>;
  close(): Promise<void>;
}

export async function startFakeMcp(): Promise<FakeMcp> {
  const fake: FakeMcp = {
    url: "",
    calls: [],
    answer: (name) => ({ content: [{ type: "text", text: `ok ${name}` }] }),
    close: () => Promise.resolve(),
  };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const message = JSON.parse(Buffer.concat(chunks).toString("utf8") || "null") as {
        id: number;
        method: string;
        params?: { name: string; arguments?: unknown };
      } | null;
      if (!message || message.method !== "tools/call") {
        res.writeHead(202).end();
        return;
      }
      fake.calls.push({ name: message.params!.name, arguments: message.params!.arguments });
      const body = JSON.stringify({
        jsonrpc: "2.0",
        id: message.id,
        result: fake.answer(message.params!.name, message.params!.arguments),
      });
      res.writeHead(200, { "content-type": "application/json" }).end(body);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  fake.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`;
  fake.close = () =>
    new Promise<void>((r) => {
      server.close(() => r());
      server.closeAllConnections();
    });
  return fake;
}

export const MCP_HEADERS = {
  "content-type": "application/json",
  accept: "application/json, text/event-stream",
} as const;

let nextId = 1;
export function toolCall(name: string, args: Record<string, unknown> = {}, id: number = nextId++) {
  return { jsonrpc: "2.0", id, method: "tools/call", params: { name, arguments: args } };
}

/** POSTs a JSON-RPC body to the edge; returns the HTTP status and the parsed JSON answer. */
export async function postEdge(
  url: string,
  token: string,
  body: unknown,
): Promise<{ status: number; json: Record<string, unknown> & { error?: Record<string, unknown> } }> {
  const res = await request(url, {
    method: "POST",
    headers: { ...MCP_HEADERS, authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
  const text = await res.body.text();
  return { status: res.statusCode, json: JSON.parse(text) as Record<string, unknown> };
}

/**
 * What `mcp-gateway serve` prints on stdout once it listens:
 * `... on <host>:<grpc port>, admin on http://<host>:<port>, aggregated endpoint (/mcp) on <url>`.
 * The one place tests read that line, so a change to it breaks here and nowhere else.
 */
export interface ServeAddresses {
  /** host:port of the gRPC listener (ext_authz, ext_proc, health, rate limit). */
  grpc: string;
  grpcHost: string;
  grpcPort: number;
  /** http://host:port of the admin listener, without a trailing comma or slash. */
  admin: string;
  adminPort: number;
}

export function serveAddresses(output: string): ServeAddresses | undefined {
  const m = / on ([\d.]+):(\d+), admin on (http:\/\/[\d.]+:(\d+))/.exec(output);
  if (!m) return undefined;
  return {
    grpc: `${m[1]}:${m[2]}`,
    grpcHost: m[1]!,
    grpcPort: Number(m[2]),
    admin: m[3]!,
    adminPort: Number(m[4]),
  };
}

/** What `mcp-gateway edge` logs (pino JSON) once it listens: its MCP URL and its admin URL. */
export interface EdgeAddresses {
  edge: string;
  admin: string;
}

export function edgeAddresses(output: string): EdgeAddresses | undefined {
  const m = /"edge":"(http:\/\/[^"]+)","admin":"(http:\/\/[^"]+)"/.exec(output);
  return m ? { edge: m[1]!, admin: m[2]! } : undefined;
}

/**
 * Polls a child process's output until `find` returns something. Fails, with the output so far,
 * when the child exits first or `limitMs` passes.
 */
export async function untilOutput<T>(
  child: ChildProcess,
  output: () => string,
  find: (output: string) => T | undefined,
  what: string,
  limitMs: number,
): Promise<T> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    const found = find(output());
    if (found !== undefined) return found;
    if (child.exitCode !== null) throw new Error(`exited ${child.exitCode} before ${what}:\n${output()}`);
    if (Date.now() > deadline) throw new Error(`no ${what} within ${limitMs} ms:\n${output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A gateway command running from source in its own process, ready (its /readyz answered 200). */
export interface GatewayProcess<Addresses> {
  child: ChildProcess;
  addresses: Addresses;
  /** stdout and stderr so far. */
  output(): string;
}

/** Where a spawned process registers its stop, so it ends even when it never became ready. */
export type Cleanups = (() => Promise<void> | void)[];

const CLI_SOURCE = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "ext-service", "src", "cli.ts");

/** `mcp-gateway serve` on free ports; resolves once its gRPC address is printed and it is ready. */
export function spawnServe(
  configFile: string,
  cleanups: Cleanups,
  stopSignal: NodeJS.Signals = "SIGTERM",
): Promise<GatewayProcess<ServeAddresses>> {
  const args = ["serve", "--config", configFile, "--grpc-port", "0", "--admin-port", "0"];
  return spawnGateway(args, serveAddresses, cleanups, stopSignal);
}

/** `mcp-gateway edge` on free ports; resolves once its URL is logged and it is ready. */
export function spawnEdge(
  configFile: string,
  cleanups: Cleanups,
  stopSignal: NodeJS.Signals = "SIGTERM",
): Promise<GatewayProcess<EdgeAddresses>> {
  const args = ["edge", "--config", configFile, "--port", "0", "--admin-port", "0"];
  return spawnGateway(args, edgeAddresses, cleanups, stopSignal);
}

// Ready means its Redis connection (when it has one) is up. Generous: a cold `tsx` start on a
// loaded two-core machine takes seconds, and the limit only matters when something is broken.
const READY_LIMIT_MS = 20_000;

async function spawnGateway<Addresses extends { admin: string }>(
  args: string[],
  parse: (output: string) => Addresses | undefined,
  cleanups: Cleanups,
  stopSignal: NodeJS.Signals,
): Promise<GatewayProcess<Addresses>> {
  const child = spawn(process.execPath, ["--import", "tsx", CLI_SOURCE, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once("exit", () => resolve());
        child.kill(stopSignal);
      }),
  );
  let output = "";
  child.stderr!.on("data", (d: Buffer) => (output += d.toString()));
  const addresses = await new Promise<Addresses>((resolve, reject) => {
    child.stdout!.on("data", (d: Buffer) => {
      output += d.toString();
      const parsed = parse(output);
      if (parsed) resolve(parsed);
    });
    child.once("exit", (code) => reject(new Error(`${args[0]} exited (${code}):\n${output}`)));
  });
  const deadline = Date.now() + READY_LIMIT_MS;
  for (;;) {
    const res = await request(`${addresses.admin}/readyz`);
    await res.body.text();
    if (res.statusCode === 200) break;
    if (Date.now() > deadline) throw new Error(`${args[0]} never became ready:\n${output}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return { child, addresses, output: () => output };
}
