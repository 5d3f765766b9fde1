import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import { connect, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import type { ClientCapabilities } from "@modelcontextprotocol/sdk/types.js";
import type { JWK } from "jose";
import { request } from "undici";
import { stringify } from "yaml";
import { startDev, type DevRuntime } from "../../ext-service/src/commands/dev.js";
import { loadEngine } from "../../ext-service/src/config/compile.js";
import {
  DEV_ISSUER,
  ensureDevKeys,
  signDevToken,
  type TokenRequest,
} from "../../ext-service/src/config/devkeys.js";
import { startEdge, type Edge } from "../../ext-service/src/edge/index.js";
import type { AuditRecord } from "../../ext-service/src/telemetry/audit.js";
import { createLogger, type Logger } from "../../ext-service/src/telemetry/logger.js";
import { Metrics } from "../../ext-service/src/telemetry/metrics.js";
import type { GatewayEngine } from "../../ext-service/src/config/compile.js";

/** Log lines captured from a pino logger, with the audit records picked out. */
export class LogCapture {
  readonly lines: Record<string, unknown>[] = [];
  readonly logger: Logger;

  constructor(level = "info") {
    this.logger = createLogger(level, {
      write: (line: string) => {
        this.lines.push(JSON.parse(line) as Record<string, unknown>);
      },
    });
  }

  get audits(): AuditRecord[] {
    return this.lines.filter((l) => l.audit === true) as unknown as AuditRecord[];
  }

  /** Waits (bounded) until the exchange with this request id has its audit record. */
  async auditFor(requestId: string): Promise<AuditRecord[]> {
    await waitFor(() => this.audits.some((a) => a.request_id === requestId));
    return this.audits.filter((a) => a.request_id === requestId);
  }
}

/** Polls `predicate` every 10 ms, up to `limitMs`; throws when it never holds. */
export async function waitFor(predicate: () => boolean, limitMs = 5_000, what = "condition"): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export function tempDir(prefix = "mcp-gw-test-"): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface GatewaySpec {
  servers: {
    name: string;
    upstreams: string[];
    upstream?: Record<string, unknown>;
    tools?: Record<string, unknown>[];
  }[];
  roles?: Record<string, unknown>;
  agents?: Record<string, unknown>;
  edge?: Record<string, unknown>;
  limits?: Record<string, unknown>;
  security?: Record<string, unknown>;
  sessions?: Record<string, unknown>;
  /** Extra top-level gateway.yaml keys (e.g. auth), merged over the defaults. */
  config?: Record<string, unknown>;
}

export interface Gateway {
  edge: Edge;
  engine: GatewayEngine;
  /** gateway.yaml, for a reload (loadEngine) in tests. */
  configFile: string;
  metrics: Metrics;
  log: LogCapture;
  url(server: string): string;
  token(subject: string, extra?: Partial<TokenRequest>): Promise<string>;
  privateJwk: JWK;
  close(): Promise<void>;
}

/** An edge on port 0 from a gateway.yaml and registry.yaml written to a temp dir. */
export async function startGateway(spec: GatewaySpec): Promise<Gateway> {
  const tmp = tempDir();
  const keys = await ensureDevKeys(join(tmp.dir, "keys"));
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
    roles: spec.roles ?? {
      all: { rules: [{ effect: "allow", tools: ["*/*"], prompts: ["*/*"], resources: ["*/**"] }] },
    },
    agents: spec.agents ?? { tester: { roles: ["all"] }, other: { roles: ["all"] } },
    ...(spec.edge ? { edge: spec.edge } : {}),
    ...(spec.limits ? { limits: spec.limits } : {}),
    ...(spec.security ? { security: spec.security } : {}),
    ...(spec.sessions ? { sessions: spec.sessions } : {}),
    logLevel: "info",
    ...spec.config,
  };
  writeFileSync(join(tmp.dir, "gateway.yaml"), stringify(config));
  writeFileSync(join(tmp.dir, "registry.yaml"), stringify({ version: "test", servers: spec.servers }));
  const { engine } = loadEngine(join(tmp.dir, "gateway.yaml"));
  const log = new LogCapture();
  const metrics = new Metrics(false);
  const edge = await startEdge({ engine, logger: log.logger, metrics, host: "127.0.0.1", port: 0 });
  return {
    edge,
    engine,
    configFile: join(tmp.dir, "gateway.yaml"),
    metrics,
    log,
    privateJwk: keys.privateJwk,
    url: (server) => `${edge.url}/mcp/${server}`,
    token: (subject, extra) => signDevToken(keys.privateJwk, { subject, ...extra }),
    async close() {
      await edge.close(0);
      tmp.remove();
    },
  };
}

export interface DemoGateway {
  dev: DevRuntime;
  log: LogCapture;
  metrics: Metrics;
  token(agent: string): string;
  privateJwk: JWK;
  close(): Promise<void>;
}

/** `mcp-gateway dev` in-process on free ports, with keys in a temp dir. */
export async function startDemoGateway(): Promise<DemoGateway> {
  const tmp = tempDir();
  const log = new LogCapture();
  const metrics = new Metrics(false);
  const dev = await startDev({
    keysDir: tmp.dir,
    edgePort: 0,
    adminPort: 0,
    demoPorts: { kb: 0, tickets: 0, deploy: 0 },
    logger: log.logger,
    metrics,
  });
  const keys = await ensureDevKeys(tmp.dir);
  return {
    dev,
    log,
    metrics,
    privateJwk: keys.privateJwk,
    token(agent) {
      const found = dev.agents.find((a) => a.name === agent);
      if (!found) throw new Error(`no demo agent ${agent}`);
      return found.token;
    },
    async close() {
      await dev.close(0);
      tmp.remove();
    },
  };
}

export interface Connected {
  client: Client;
  transport: StreamableHTTPClientTransport;
  close(): Promise<void>;
}

/** The official SDK client over Streamable HTTP, with a bearer token when given. */
export async function connectClient(
  url: string,
  token: string | undefined,
  capabilities: ClientCapabilities = {},
  /** Runs before connecting: register handlers for server-to-client requests here. */
  setup?: (client: Client) => void,
): Promise<Connected> {
  const client = new Client({ name: "e2e-test", version: "1.0.0" }, { capabilities });
  setup?.(client);
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: token ? { headers: { Authorization: `Bearer ${token}` } } : {},
  });
  await client.connect(transport);
  return { client, transport, close: () => client.close() };
}

export const MCP_HEADERS = {
  "content-type": "application/json",
  accept: "application/json, text/event-stream",
} as const;

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  /** JSON-RPC messages in the body: the JSON value, or the data of each SSE event. */
  messages: unknown[];
}

/** Parses a response body that is JSON or SSE into its JSON-RPC messages. */
export function bodyMessages(contentType: string | undefined, text: string): unknown[] {
  if (text === "") return [];
  if ((contentType ?? "").startsWith("text/event-stream")) {
    const out: unknown[] = [];
    for (const block of text.split(/\r?\n\r?\n/)) {
      const data = block
        .split(/\r?\n/)
        .filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).replace(/^ /, ""))
        .join("\n");
      if (data) out.push(JSON.parse(data));
    }
    return out;
  }
  try {
    const value = JSON.parse(text) as unknown;
    return Array.isArray(value) ? [value] : [value];
  } catch {
    return [];
  }
}

/** One HTTP exchange with undici, body read whole. */
export async function httpCall(
  url: string,
  options: { method?: string; headers?: Record<string, string>; body?: string | Buffer } = {},
): Promise<RawResponse> {
  const res = await request(url, {
    method: (options.method ?? "POST") as "POST",
    headers: options.headers,
    body: options.body,
  });
  const text = await res.body.text();
  const ct = res.headers["content-type"];
  return {
    status: res.statusCode,
    headers: res.headers,
    text,
    messages: bodyMessages(Array.isArray(ct) ? ct[0] : ct, text),
  };
}

/** A plain HTTP server on 127.0.0.1 for upstream fault cases. */
export async function fakeUpstream(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<{ server: Server; url: string; port: number; close(): Promise<void> }> {
  const server = createServer(handler);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as AddressInfo).port;
  return {
    server,
    port,
    url: `http://127.0.0.1:${port}/mcp`,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}

export interface SdkUpstream {
  /** http://127.0.0.1:<port>/mcp */
  url: string;
  /** http://127.0.0.1:<port> */
  base: string;
  close(): Promise<void>;
}

/**
 * A real MCP server (the official SDK, stateless) on 127.0.0.1, port 0, at /mcp: `build` makes a
 * fresh server for each request, so it serves the definitions of the moment. Any other path gets
 * the HTML 404 a web framework answers with. `onRequest` sees each request and its parsed body.
 */
export async function startSdkUpstream(
  build: () => McpServer,
  options: { enableJsonResponse?: boolean; onRequest?: (req: IncomingMessage, body: unknown) => void } = {},
): Promise<SdkUpstream> {
  const server = createServer((req, res) => {
    if (req.url !== "/mcp") {
      res.writeHead(404, { "content-type": "text/html" }).end(`<pre>Cannot ${req.method} ${req.url}</pre>`);
      return;
    }
    void (async () => {
      const body = req.method === "POST" ? await readJsonBody(req) : undefined;
      options.onRequest?.(req, body);
      const transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: undefined,
        enableJsonResponse: options.enableJsonResponse ?? false,
      });
      const mcp = build();
      res.on("close", () => void transport.close().then(() => mcp.close()));
      await mcp.connect(transport);
      await transport.handleRequest(req, res, body);
    })().catch(() => {
      if (!res.headersSent) res.writeHead(500).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url: `${base}/mcp`,
    base,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The one tool of the credential tests' servers. */
export const ECHO_TOOL = {
  name: "echo",
  description: "Echoes the text it is given.",
  inputSchema: { type: "object", properties: { text: { type: "string" } } },
};

export interface CredentialedUpstream {
  /** http://127.0.0.1:<port>/mcp */
  url: string;
  /** Every request it received, in order. */
  seen: { path: string; headers: IncomingHttpHeaders }[];
  close(): Promise<void>;
}

/**
 * A fake MCP server that checks its own credential, as a GitHub or Jira MCP server would: a
 * request on a path `checks` covers (every path unless told) without `Authorization: Bearer
 * <token()>` gets 401. tools/list lists ECHO_TOOL; any other call is answered with the text
 * `reply` makes of the request (a careless or hostile server echoing its credential).
 */
export async function startCredentialedUpstream(options: {
  token: () => string | undefined;
  reply: (req: IncomingMessage) => string;
  checks?: (path: string) => boolean;
}): Promise<CredentialedUpstream> {
  const seen: CredentialedUpstream["seen"] = [];
  const upstream = await fakeUpstream((req, res) => {
    void (async () => {
      seen.push({ path: req.url ?? "", headers: req.headers });
      const msg = (await readJsonBody(req)) as { id: number; method: string };
      const checked = options.checks?.(req.url ?? "") ?? true;
      if (checked && req.headers.authorization !== `Bearer ${options.token()}`) {
        res.writeHead(401, { "content-type": "application/json" });
        res.end("{}");
        return;
      }
      const result =
        msg.method === "tools/list"
          ? { tools: [ECHO_TOOL] }
          : { content: [{ type: "text", text: options.reply(req) }] };
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ jsonrpc: "2.0", id: msg.id, result }));
    })();
  });
  return { url: upstream.url, seen, close: upstream.close };
}

/** A port nothing listens on (bound then released). */
export async function unusedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export async function readJsonBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const text = Buffer.concat(chunks).toString("utf8");
  return text ? JSON.parse(text) : undefined;
}

export function rpc(method: string, params?: Record<string, unknown>, id: number | string = 1): string {
  return JSON.stringify({ jsonrpc: "2.0", id, method, ...(params ? { params } : {}) });
}

/** Sends raw bytes on a fresh TCP connection and collects everything until the server closes. */
export function rawHttp(
  port: number,
  payload: string | Buffer,
  options: { endAfterWrite?: boolean } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = connect(port, "127.0.0.1", () => {
      socket.write(payload);
      if (options.endAfterWrite) socket.end();
    });
    socket.on("data", (d) => chunks.push(d));
    socket.on("error", reject);
    socket.on("close", () => resolve(Buffer.concat(chunks).toString("utf8")));
  });
}

/** Status, lower-case headers and body of a raw HTTP/1.1 response (no chunked decoding). */
export function parseRawResponse(raw: string): {
  status: number;
  headers: Record<string, string>;
  body: string;
} {
  const split = raw.indexOf("\r\n\r\n");
  const head = split < 0 ? raw : raw.slice(0, split);
  const [statusLine, ...lines] = head.split("\r\n");
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const i = line.indexOf(":");
    if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  return { status: Number(statusLine?.split(" ")[1]), headers, body: split < 0 ? "" : raw.slice(split + 4) };
}
