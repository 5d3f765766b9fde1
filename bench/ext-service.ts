/**
 * Overhead of the ext-service behind Envoy, measured with the Envoy-role gRPC client.
 *
 *   npx tsx bench/ext-service.ts [--requests 3000] [--warmup 300]
 *
 * One `tools/call` per HTTP request, through both filters exactly as Envoy drives them: Check,
 * then a Process stream with request headers, the buffered request body, response headers and
 * the buffered JSON response body. The real ext-service (every check on: JWT, RBAC, registry,
 * JSON-RPC parsing, response inspection, audit record, metrics) and a do-nothing server run
 * together in a child process (as the ext-service runs apart from Envoy) and are measured in the
 * same run, alternating request by request, sequentially. Also times the decision core alone:
 * engine.evaluateRequestBody for the same tools/call, in this process.
 * The client is JavaScript playing Envoy, so absolute latencies include its own work (more than
 * Envoy's C++ would add); the ratio is the figure to watch.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { loadEngine } from "../ext-service/src/config/compile.js";
import { ensureDevKeys, signDevToken } from "../ext-service/src/config/devkeys.js";
import {
  EnvoyRoleClient,
  type HttpRequestSpec,
  type Upstream,
} from "../ext-service/src/envoy/envoy-role-client.js";
import { startExtService } from "../ext-service/src/envoy/server.js";
import { createLogger } from "../ext-service/src/telemetry/logger.js";
import { Metrics } from "../ext-service/src/telemetry/metrics.js";
import { startNoopExtService } from "./noop-ext-service.js";

const { values } = parseArgs({
  options: {
    requests: { type: "string", default: "3000" },
    warmup: { type: "string", default: "300" },
    "core-iterations": { type: "string", default: "20000" },
    /** Internal: run as the child process that hosts both servers in `dir`. */
    serve: { type: "string" },
  },
});
const REQUESTS = Number(values.requests);
const WARMUP = Number(values.warmup);
const CORE_ITERATIONS = Number(values["core-iterations"]);

const GATEWAY = `registry: registry.yaml
publicUrl: https://gateway.bench
auth:
  issuers:
    - issuer: mcp-gateway-dev
      audiences: [mcp-gateway]
      jwks: { file: keys/jwks.json }
      algorithms: [ES256]
roles:
  support:
    rules:
      - effect: allow
        tools: ["tickets/*"]
      - effect: deny
        tools: ["tickets/delete_ticket"]
      - effect: allow
        tools: ["tickets/create_ticket"]
        when: "arguments.priority != 'high' || 'support-lead' in roles"
agents:
  support-bot: { roles: [support] }
# The shipped chain asks the rate limit service on every request: measured, never limiting.
edge:
  rateLimit: { requestsPerSecond: 1000000, burst: 1000000 }
logLevel: info
`;

const REGISTRY = `version: "bench"
servers:
  - name: tickets
    upstreams: ["http://127.0.0.1:1/mcp"]
    tools:
      - name: get_ticket
        description: Fetch one ticket by id.
        inputSchema: { type: object, properties: { id: { type: string } }, required: [id] }
      - name: create_ticket
        description: Open a ticket.
      - name: delete_ticket
        description: Delete a ticket.
`;

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

function summary(samples: number[], wallMs: number) {
  const sorted = [...samples].sort((a, b) => a - b);
  return {
    median: quantile(sorted, 0.5),
    p99: quantile(sorted, 0.99),
    throughput: (samples.length / wallMs) * 1000,
  };
}

function writeConfig(dir: string): void {
  writeFileSync(join(dir, "gateway.yaml"), GATEWAY);
  writeFileSync(join(dir, "registry.yaml"), REGISTRY);
}

/** Child process: both servers, addresses on stdout, until stdin closes. */
async function serve(dir: string): Promise<void> {
  const { engine } = loadEngine(join(dir, "gateway.yaml"));
  // Audit records are serialised as in production, then discarded instead of written to a terminal.
  const logger = createLogger("info", { write: () => undefined });
  const full = await startExtService({
    engine,
    logger,
    grpcHost: "127.0.0.1",
    grpcPort: 0,
    adminHost: "127.0.0.1",
    adminPort: 0,
    metrics: new Metrics(false),
  });
  const noop = await startNoopExtService();
  process.stdout.write(JSON.stringify({ full: full.grpcAddress, noop: noop.address }) + "\n");
  process.stdin.resume();
  process.stdin.on("end", () => {
    void Promise.all([full.close(1000), noop.close()]).then(() => process.exit(0));
  });
}

async function startServers(dir: string): Promise<{ full: string; noop: string; stop(): Promise<void> }> {
  const child = spawn(process.execPath, ["--import", "tsx", ...process.argv.slice(1, 2), "--serve", dir], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  let out = "";
  const addresses = await new Promise<{ full: string; noop: string }>((resolve, reject) => {
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes("\n")) resolve(JSON.parse(out.split("\n")[0]!) as { full: string; noop: string });
    });
    child.once("exit", (code) => reject(new Error(`server process exited with ${code}`)));
  });
  return {
    ...addresses,
    async stop() {
      child.stdin.end();
      await exited;
    },
  };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "mcp-gateway-bench-"));
  const keys = await ensureDevKeys(join(dir, "keys"));
  writeConfig(dir);
  const { engine } = loadEngine(join(dir, "gateway.yaml"));
  const servers = await startServers(dir);
  const fullClient = new EnvoyRoleClient(servers.full);
  const noopClient = new EnvoyRoleClient(servers.noop);

  const token = await signDevToken(keys.privateJwk, { subject: "support-bot", ttl: "1h" });
  const body = JSON.stringify({
    jsonrpc: "2.0",
    id: 1,
    method: "tools/call",
    params: { name: "get_ticket", arguments: { id: "T-1042" } },
  });
  const request: HttpRequestSpec = {
    method: "POST",
    path: "/mcp/tickets",
    headers: {
      authorization: `Bearer ${token}`,
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      "mcp-protocol-version": "2025-06-18",
      "mcp-session-id": "bench-session",
    },
    body,
  };
  const answer = JSON.stringify({
    jsonrpc: "2.0",
    id: 1,
    result: { content: [{ type: "text", text: "T-1042: printer on fire (open)" }] },
  });
  const upstream: Upstream = () => ({
    status: 200,
    headers: { "content-type": "application/json" },
    body: answer,
  });

  const once = async (client: EnvoyRoleClient): Promise<number> => {
    const t = performance.now();
    const r = await client.exchange(request, upstream);
    const elapsed = performance.now() - t;
    if (r.response.status !== 200 || r.answeredBy !== "upstream") {
      throw new Error(
        `unexpected answer ${r.response.status} from ${r.answeredBy}: ${r.response.body.toString()}`,
      );
    }
    return elapsed;
  };

  for (let i = 0; i < WARMUP; i++) {
    await once(fullClient);
    await once(noopClient);
  }
  const fullSamples: number[] = [];
  const noopSamples: number[] = [];
  let fullWall = 0;
  let noopWall = 0;
  for (let i = 0; i < REQUESTS; i++) {
    // Alternate which goes first so neither always runs right after the other.
    if (i % 2 === 0) {
      const a = await once(fullClient);
      const b = await once(noopClient);
      fullSamples.push(a);
      noopSamples.push(b);
      fullWall += a;
      noopWall += b;
    } else {
      const b = await once(noopClient);
      const a = await once(fullClient);
      fullSamples.push(a);
      noopSamples.push(b);
      fullWall += a;
      noopWall += b;
    }
  }

  // The decision core alone: one tools/call body, a fresh exchange each time (as per request).
  const admission = await engine.admit(
    { method: "POST", path: "/mcp/tickets", headers: { authorization: `Bearer ${token}` } },
    engine.newExchange("POST"),
  );
  if (!admission.ok) throw new Error("bench token not admitted");
  const bytes = Buffer.from(body);
  const headers = request.headers!;
  const coreSamples: number[] = [];
  for (let i = 0; i < CORE_ITERATIONS; i++) {
    const exchange = engine.newExchange("POST");
    exchange.principal = admission.principal;
    exchange.server = "tickets";
    const t = performance.now();
    const verdict = engine.evaluateRequestBody(exchange, bytes, headers);
    const elapsed = performance.now() - t;
    if (verdict.action !== "forward") throw new Error("bench tools/call not forwarded");
    if (i >= CORE_ITERATIONS / 10) coreSamples.push(elapsed * 1000);
  }

  fullClient.close();
  noopClient.close();
  await servers.stop();
  rmSync(dir, { recursive: true, force: true });

  const f = summary(fullSamples, fullWall);
  const n = summary(noopSamples, noopWall);
  const core = [...coreSamples].sort((a, b) => a - b);
  const ms = (x: number) => `${x.toFixed(3)} ms`;
  const lines = [
    `tools/call through ext_authz + ext_proc (Envoy-role client, ${REQUESTS} requests each after ${WARMUP} warm-up, sequential, alternating)`,
    `  ${"".padEnd(22)}${"median".padStart(12)}${"p99".padStart(12)}${"req/s".padStart(10)}`,
    `  ${"mcp-gateway (all on)".padEnd(22)}${ms(f.median).padStart(12)}${ms(f.p99).padStart(12)}${f.throughput.toFixed(0).padStart(10)}`,
    `  ${"do-nothing server".padEnd(22)}${ms(n.median).padStart(12)}${ms(n.p99).padStart(12)}${n.throughput.toFixed(0).padStart(10)}`,
    `  ratio (all on / do-nothing): median ${(f.median / n.median).toFixed(2)}x, p99 ${(f.p99 / n.p99).toFixed(2)}x, throughput ${(n.throughput / f.throughput).toFixed(2)}x slower`,
    `decision core alone: engine.evaluateRequestBody(tools/call) median ${quantile(core, 0.5).toFixed(1)} µs, p99 ${quantile(core, 0.99).toFixed(1)} µs (${coreSamples.length} samples)`,
    `node ${process.version}`,
  ];
  process.stdout.write(lines.join("\n") + "\n");
}

(values.serve ? serve(values.serve) : main()).catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
});
