import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Writable } from "node:stream";
import { vi } from "vitest";
import { main } from "../../ext-service/src/cli.js";
import { GatewayConfigSchema, RegistrySchema, type Registry } from "../../ext-service/src/config/schema.js";
import { PolicyEngine } from "../../ext-service/src/policy/engine.js";
import type { Exchange } from "../../ext-service/src/policy/exchange.js";
import { AuditTrail, type AuditRecord } from "../../ext-service/src/telemetry/audit.js";
import { createLogger } from "../../ext-service/src/telemetry/logger.js";
import { Metrics } from "../../ext-service/src/telemetry/metrics.js";

/**
 * Test helpers for the security policies: an engine built from inline config (optional auth, an
 * anonymous principal allowed everything, so the security layer is what decides), request and
 * response shortcuts through the engine's public contract, and a minimal HTTP gateway in front
 * of a real MCP server for end-to-end tests with the MCP SDK client.
 */

export const DEMO_TOOLS = [
  {
    name: "search_articles",
    description: "Search knowledge-base articles by keywords. Returns titles and ids.",
    inputSchema: {
      type: "object",
      properties: {
        query: { type: "string", minLength: 1 },
        limit: { type: "integer", minimum: 1, maximum: 20 },
      },
      required: ["query"],
    },
  },
  {
    name: "create_ticket",
    description: "Open a new support ticket.",
    inputSchema: {
      type: "object",
      properties: { title: { type: "string", minLength: 3 }, body: { type: "string" } },
      required: ["title"],
      additionalProperties: false,
    },
  },
];

export function registryOf(
  servers: { name: string; tools: Record<string, unknown>[]; upstream?: string }[],
): Registry {
  return RegistrySchema.parse({
    version: "test",
    servers: servers.map((s) => ({
      name: s.name,
      upstreams: [s.upstream ?? "http://127.0.0.1:9/mcp"],
      tools: s.tools,
    })),
  });
}

export function makeEngine(
  options: { security?: Record<string, unknown>; registry?: Registry; limits?: Record<string, unknown> } = {},
): PolicyEngine {
  const config = GatewayConfigSchema.parse({
    registry: "registry.yaml",
    auth: { mode: "optional", anonymous: { agent: "tester", roles: ["all"] } },
    roles: { all: { rules: [{ effect: "allow", tools: ["*/*"], prompts: ["*/*"], resources: ["*/**"] }] } },
    // No adapter fetches tools/list here: pins are not verified before calls unless asked for
    // (test/security/pin-verification.test.ts covers that).
    security: {
      ...options.security,
      pins: { verifyBeforeCall: false, ...(options.security?.pins as Record<string, unknown> | undefined) },
    },
    ...(options.limits ? { limits: options.limits } : {}),
  });
  const registry = options.registry ?? registryOf([{ name: "kb", tools: DEMO_TOOLS }]);
  return new PolicyEngine({ config, registry, configFile: "/nonexistent/gateway.yaml" });
}

/** An admitted exchange for `server`, as the data planes create one. */
export async function admitted(engine: PolicyEngine, server = "kb", method = "POST"): Promise<Exchange> {
  const exchange = engine.newExchange(method);
  const admission = await engine.admit({ method, path: `/mcp/${server}`, headers: {} }, exchange);
  if (!admission.ok) throw new Error(`not admitted: ${admission.reply.body}`);
  return exchange;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Sends one client message through evaluateRequestBody; returns the verdict and, if any, the reply JSON. */
export async function request(
  engine: PolicyEngine,
  message: Record<string, unknown> | Record<string, unknown>[],
  server = "kb",
): Promise<{ exchange: Exchange; forwarded: boolean; reply: unknown; raw: string | undefined }> {
  const exchange = await admitted(engine, server);
  const verdict = engine.evaluateRequestBody(exchange, encoder.encode(JSON.stringify(message)), {});
  if (verdict.action === "forward") return { exchange, forwarded: true, reply: undefined, raw: undefined };
  if (verdict.action === "list_tools") throw new Error(`the core asks for ${verdict.server}'s tools/list`);
  return { exchange, forwarded: false, reply: JSON.parse(verdict.reply.body), raw: verdict.reply.body };
}

/** A tools/call (or other) request forwarded, then the server's JSON answer through the transformer. */
export async function roundTrip(
  engine: PolicyEngine,
  requestMessage: Record<string, unknown>,
  response: Record<string, unknown>,
  server = "kb",
): Promise<{ exchange: Exchange; out: Record<string, unknown> | undefined; text: string | undefined }> {
  const { exchange, forwarded, raw } = await request(engine, requestMessage, server);
  if (!forwarded) throw new Error(`request refused: ${raw}`);
  const bytes = engine
    .responseTransformer(exchange, "application/json", 200)
    .transformJson(encoder.encode(JSON.stringify(response)));
  if (bytes === undefined) return { exchange, out: undefined, text: undefined };
  const text = decoder.decode(bytes);
  return { exchange, out: text ? (JSON.parse(text) as Record<string, unknown>) : undefined, text };
}

export function toolCall(id: number, name: string, args: unknown): Record<string, unknown> {
  return { jsonrpc: "2.0", id, method: "tools/call", params: { name, arguments: args } };
}

export function textResult(id: number, text: string): Record<string, unknown> {
  return { jsonrpc: "2.0", id, result: { content: [{ type: "text", text }] } };
}

/** Audit records and metrics as the data planes would produce them. */
export function telemetry(): { audit: AuditTrail; records: AuditRecord[]; metrics: Metrics } {
  const records: AuditRecord[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString("utf8").split("\n")) {
        if (line.trim()) {
          const parsed = JSON.parse(line) as AuditRecord;
          if (parsed.audit) records.push(parsed);
        }
      }
      cb();
    },
  });
  const metrics = new Metrics(false);
  return { audit: new AuditTrail(createLogger("info", sink), metrics, "test"), records, metrics };
}

const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "transfer-encoding",
  "host",
  "content-length",
  "upgrade",
]);

/**
 * A minimal data plane for end-to-end tests: routes /mcp/<server> through the engine's public
 * contract (admit, evaluateRequestBody, upstreamHeaders, responseTransformer) to one upstream,
 * streaming SSE chunk by chunk through `push`. Not the product's edge; just enough to put a real
 * MCP client and server on either side of the policy core.
 */
export async function startMiniGateway(
  engine: PolicyEngine,
  upstreams: Record<string, string>,
  audit?: AuditTrail,
): Promise<{ url: string; server: Server; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    handle(engine, upstreams, req, res, audit).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: String(err) }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function readBody(req: IncomingMessage): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function handle(
  engine: PolicyEngine,
  upstreams: Record<string, string>,
  req: IncomingMessage,
  res: ServerResponse,
  audit: AuditTrail | undefined,
): Promise<void> {
  const method = req.method ?? "GET";
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers)) if (typeof v === "string") headers[k] = v;
  const exchange = engine.newExchange(method);
  const finish = (status: number) => audit?.finish(exchange, status);
  const admission = await engine.admit({ method, path: req.url ?? "/", headers }, exchange);
  if (!admission.ok) {
    res.writeHead(admission.reply.status, admission.reply.headers).end(admission.reply.body);
    finish(admission.reply.status);
    return;
  }
  const body = method === "POST" ? await readBody(req) : undefined;
  if (body) {
    const verdict = engine.evaluateRequestBody(exchange, body, headers);
    if (verdict.action === "reply") {
      res.writeHead(verdict.reply.status, verdict.reply.headers).end(verdict.reply.body);
      finish(verdict.reply.status);
      return;
    }
  }
  const up = engine.upstreamHeaders(exchange, headers);
  const outHeaders: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers))
    if (!HOP_BY_HOP.has(k) && !up.remove.includes(k)) outHeaders[k] = v;
  Object.assign(outHeaders, up.set);
  const upstream = await fetch(upstreams[admission.server]!, {
    method,
    headers: outHeaders,
    body: body && body.byteLength > 0 ? body : undefined,
  });
  const resHeaders: Record<string, string> = {};
  upstream.headers.forEach((v, k) => {
    if (!HOP_BY_HOP.has(k) && k !== "content-encoding") resHeaders[k] = v;
  });
  const transformer = engine.responseTransformer(
    exchange,
    upstream.headers.get("content-type") ?? undefined,
    upstream.status,
  );
  if (transformer.mode === "sse" && upstream.body) {
    res.writeHead(upstream.status, resHeaders);
    const reader = upstream.body.getReader();
    req.on("close", () => void reader.cancel().catch(() => undefined));
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        const out = transformer.push(value);
        if (out.byteLength > 0) res.write(out);
      }
      const tail = transformer.end();
      if (tail.byteLength > 0) res.write(tail);
    } catch {
      // client or upstream went away
    }
    res.end();
    finish(upstream.status);
    return;
  }
  const raw = new Uint8Array(await upstream.arrayBuffer());
  const out = transformer.mode === "json" ? transformer.transformJson(raw) : undefined;
  const payload = out ?? raw;
  res
    .writeHead(upstream.status, { ...resHeaders, "content-length": String(payload.byteLength) })
    .end(payload);
  finish(upstream.status);
}

/** Runs the CLI in-process, capturing stdout and stderr. */
export async function runCli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const capture = (append: (s: string) => void) => (chunk: string | Uint8Array) => {
    append(typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8"));
    return true;
  };
  const stdout = vi.spyOn(process.stdout, "write").mockImplementation(capture((s) => (out += s)));
  const stderr = vi.spyOn(process.stderr, "write").mockImplementation(capture((s) => (err += s)));
  try {
    return { code: await main(args), out, err };
  } finally {
    stdout.mockRestore();
    stderr.mockRestore();
  }
}
