/**
 * What one request through the aggregated endpoint (`/mcp/views/<server>`) costs against the same
 * request to `/mcp/<server>`, counted in ways a loaded machine does not move: instructions under
 * `valgrind --tool=callgrind`, and bytes allocated on the JavaScript heap.
 *
 *   npm run build && node dist/bench/broker-cost.js                      # instructions, every path
 *   node dist/bench/broker-cost.js --mode alloc                          # allocation, every path
 *   node dist/bench/broker-cost.js --paths edge_call,broker_call --calls 200
 *
 * Each path runs in its own process (one at a time, or `--jobs`), all of it in that process: the
 * bench's reference server, the local edge with the bench config (every policy on; the broker's
 * hops go back to the same edge over loopback HTTP) and an undici client. The process warms the
 * path up (`--warmup` requests), collects the heap, then counts `--calls` requests between two
 * markers, so start-up and warm-up are not counted. The count is the whole process's: the client
 * and the reference server are in it too, equally on every path, so compare paths by their
 * difference (the broker's added cost) as well as by their ratio.
 *
 * - `instructions`: `node --predictable` under callgrind, dumping its counters at each marker
 *   (`os.getPriority()`, as bench/instructions.ts does). Prints instructions per request.
 * - `alloc`: plain node with a young generation larger than the counted phase allocates
 *   (checked: a collection during the phase fails the run); prints JavaScript heap bytes
 *   allocated per request (`heapUsed` after minus before; nothing is freed in between).
 *
 * Paths (the broker's lists are not kept, `broker.lists.ttl: 0`, so a list always makes its hop):
 * `edge_call` / `broker_call` (small `tools/call`, 2025 session on the broker), `edge_list` /
 * `broker_list` (`tools/list`, 50 tools) and `broker_call_2026` (the small call as a stateless
 * 2026-07-28 request to the broker, whose hop finds a 2025-only server).
 */
import { spawn } from "node:child_process";
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { getPriority } from "node:os";
import { basename, dirname, join } from "node:path";
import { PerformanceObserver } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { Pool } from "undici";
import { parse, stringify } from "yaml";
import { loadEngine } from "../ext-service/src/config/compile.js";
import { startEdge } from "../ext-service/src/edge/index.js";
import { Metrics } from "../ext-service/src/telemetry/metrics.js";
import { openSession, type PostJson } from "./mcp-session.js";
import { startReferenceServer } from "./reference-server.js";
import { benchRegistry, prepareWorkdir } from "./setup.js";
import { benchLogger } from "./targets/support.js";
import { JSON_SERVER, PROTOCOL_VERSION } from "./workloads.js";

const PATHS = ["edge_call", "broker_call", "edge_list", "broker_list", "broker_call_2026"] as const;
type PathId = (typeof PATHS)[number];
const MODERN = "2026-07-28";
const ECHO_TEXT = "Summarise ticket 4821 for the on-call engineer in two sentences.";
const MARKER = "uv_os_getpriority";
const SEMI_SPACE_MIB = 256;
const OUT_DIR = join(process.cwd(), "bench", "out", "broker-cost");

interface Request {
  path: string;
  headers: Record<string, string>;
  body: (id: number) => string;
  /** Text every answer contains. */
  expect: string;
}

function call(name: string, meta?: Record<string, unknown>) {
  return (id: number) =>
    JSON.stringify({
      jsonrpc: "2.0",
      id,
      method: "tools/call",
      params: { name, arguments: { text: ECHO_TEXT }, ...(meta ? { _meta: meta } : {}) },
    });
}

const list = (id: number) => JSON.stringify({ jsonrpc: "2.0", id, method: "tools/list", params: {} });

async function worker(values: Record<string, string | boolean | undefined>): Promise<void> {
  const id = String(values.path) as PathId;
  const warmup = Number(values.warmup);
  const calls = Number(values.calls);
  const reference = await startReferenceServer();
  // The registry points at this process's reference server: a file of this process's own.
  const configFile = String(values.config);
  const config = parse(readFileSync(configFile, "utf8")) as Record<string, Record<string, unknown>>;
  const registryFile = join(dirname(configFile), `registry-${process.pid}.yaml`);
  writeFileSync(registryFile, stringify(benchRegistry(`http://127.0.0.1:${reference.port}`)));
  config.registry = basename(registryFile) as never;
  const ownConfig = join(dirname(configFile), `gateway-${process.pid}.yaml`);
  writeFileSync(ownConfig, stringify(config));
  const { engine } = loadEngine(ownConfig);
  const edge = await startEdge({
    engine,
    host: "127.0.0.1",
    port: 0,
    logger: benchLogger(),
    metrics: new Metrics(),
  });
  const pool = new Pool(`http://127.0.0.1:${edge.port}`, { connections: 1, pipelining: 1 });
  const common = {
    "content-type": "application/json",
    accept: "application/json, text/event-stream",
    authorization: `Bearer ${String(values.token)}`,
    "mcp-protocol-version": PROTOCOL_VERSION,
  };
  const view = `/mcp/views/${JSON_SERVER}`;
  const post: PostJson = async (headers, body) => {
    const answer = await pool.request({ path: view, method: "POST", headers, body });
    const sessionId = answer.headers["mcp-session-id"];
    return {
      status: answer.statusCode,
      sessionId: typeof sessionId === "string" ? sessionId : undefined,
      text: await answer.body.text(),
    };
  };
  const session = async () => ({
    ...common,
    "mcp-session-id": await openSession(post, common, "broker-cost"),
  });
  const requests: Record<PathId, () => Promise<Request>> = {
    edge_call: async () => ({
      path: `/mcp/${JSON_SERVER}`,
      headers: common,
      body: call("echo"),
      expect: ECHO_TEXT,
    }),
    broker_call: async () => ({
      path: view,
      headers: await session(),
      body: call(`${JSON_SERVER}__echo`),
      expect: ECHO_TEXT,
    }),
    edge_list: async () => ({ path: `/mcp/${JSON_SERVER}`, headers: common, body: list, expect: '"echo"' }),
    broker_list: async () => ({
      path: view,
      headers: await session(),
      body: list,
      expect: `"${JSON_SERVER}__echo"`,
    }),
    broker_call_2026: async () => ({
      path: view,
      headers: {
        ...common,
        "mcp-protocol-version": MODERN,
        "mcp-method": "tools/call",
        "mcp-name": `${JSON_SERVER}__echo`,
      },
      body: call(`${JSON_SERVER}__echo`, {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientInfo": { name: "broker-cost", version: "1.0.0" },
        "io.modelcontextprotocol/clientCapabilities": {},
      }),
      expect: ECHO_TEXT,
    }),
  };
  const request = await requests[id]();
  let next = 1;
  const op = async () => {
    const res = await pool.request({
      path: request.path,
      method: "POST",
      headers: request.headers,
      body: request.body(next++),
    });
    const text = await res.body.text();
    if (res.statusCode !== 200 || !text.includes(request.expect) || text.includes('"error"'))
      throw new Error(`${id}: HTTP ${res.statusCode}: ${text.slice(0, 300)}`);
  };
  for (let i = 0; i < warmup; i++) await op();
  // Let the warm-up's audit writes, closes and timers settle before counting.
  await new Promise((resolve) => setTimeout(resolve, 200));
  const collect = (globalThis as { gc?: () => void }).gc;
  if (!collect) throw new Error("the worker needs --expose-gc");
  collect();
  const started = performance.now();
  const collections: string[] = [];
  const observer = new PerformanceObserver((list) => {
    // The forced collection above can be reported after observe(): only later ones count.
    for (const e of list.getEntries())
      if (e.startTime >= started)
        collections.push(
          `kind ${(e as { detail?: { kind?: number } }).detail?.kind} at ${Math.round(e.startTime)} ms`,
        );
  });
  observer.observe({ entryTypes: ["gc"] });
  const before = process.memoryUsage().heapUsed;
  getPriority();
  for (let i = 0; i < calls; i++) await op();
  getPriority();
  const after = process.memoryUsage().heapUsed;
  await new Promise((resolve) => setImmediate(resolve));
  observer.disconnect();
  process.stdout.write(
    `${JSON.stringify({ allocated: after - before, collections, started: Math.round(started) })}\n`,
  );
  await pool.close();
  await edge.close(0);
  await reference.close();
  rmSync(registryFile);
  rmSync(ownConfig);
}

interface Counted {
  perCall: number;
  note: string;
}

function runChild(command: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.on("error", reject);
    child.on("exit", (code) =>
      code === 0
        ? resolve(out)
        : reject(new Error(`${command} exited ${code}:\n${(out + err).slice(-3000)}`)),
    );
  });
}

async function countPath(
  mode: "instructions" | "alloc",
  path: PathId,
  common: string[],
  calls: number,
  extraFlags: string[],
): Promise<Counted> {
  const self = fileURLToPath(import.meta.url);
  const workerArgs = [self, "--worker", "--path", path, ...common];
  if (mode === "alloc") {
    const flags = [
      "--expose-gc",
      `--min-semi-space-size=${SEMI_SPACE_MIB}`,
      `--max-semi-space-size=${SEMI_SPACE_MIB}`,
    ];
    const out = await runChild(process.execPath, [...flags, ...extraFlags, ...workerArgs]);
    const result = JSON.parse(out.trim().split("\n").pop()!) as {
      allocated: number;
      collections: string[];
      started: number;
    };
    if (result.collections.length > 0)
      throw new Error(
        `${path}: collections while counting (from ${result.started} ms): ${result.collections.join(", ")}`,
      );
    return { perCall: result.allocated / calls, note: "bytes" };
  }
  const outFile = join(OUT_DIR, `${path}.callgrind.out`);
  for (const f of readdirSync(OUT_DIR)) if (f.startsWith(basename(outFile))) rmSync(join(OUT_DIR, f));
  await runChild("valgrind", [
    "--tool=callgrind",
    "--smc-check=all-non-file",
    `--dump-before=${MARKER}`,
    `--callgrind-out-file=${outFile}`,
    process.execPath,
    "--predictable",
    "--expose-gc",
    `--min-semi-space-size=64`,
    `--max-semi-space-size=64`,
    ...workerArgs,
  ]);
  const phases: number[] = [];
  for (let i = 1; existsSync(`${outFile}.${i}`); i++) {
    const m = /^summary: (\d+)$/m.exec(readFileSync(`${outFile}.${i}`, "utf8"));
    if (!m) throw new Error(`no summary in ${outFile}.${i}`);
    phases.push(Number(m[1]));
  }
  // [start-up and warm-up, the counted calls]
  if (phases.length !== 2) throw new Error(`${path}: expected 2 phases, callgrind dumped ${phases.length}`);
  return { perCall: phases[1]! / calls, note: "instructions" };
}

async function driver(values: Record<string, string | boolean | undefined>): Promise<void> {
  const mode = values.mode === "alloc" ? "alloc" : "instructions";
  const paths = (values.paths ? String(values.paths).split(",") : [...PATHS]) as PathId[];
  for (const p of paths)
    if (!PATHS.includes(p)) throw new Error(`unknown path ${p} (known: ${PATHS.join(", ")})`);
  // `--node-flags="--cpu-prof --cpu-prof-dir=DIR"`: more flags for the alloc mode's processes.
  const extraFlags = values["node-flags"] ? String(values["node-flags"]).split(" ").filter(Boolean) : [];
  const calls = Number(values.calls ?? (mode === "alloc" ? 100 : 50));
  const warmup = Number(values.warmup ?? 100);
  mkdirSync(OUT_DIR, { recursive: true });
  // Keys and token made once, here (key generation is random); the registry is each worker's.
  const work = await prepareWorkdir("http://127.0.0.1:9");
  try {
    const config = parse(readFileSync(work.configFile, "utf8")) as Record<string, Record<string, unknown>>;
    // Under valgrind everything runs tens of times slower: only time limits change (the scan
    // budget, the pin check's own tools/list, upstream and client timeouts), every check runs.
    config.security = {
      ...config.security,
      scanBudgetMs: 86_400_000,
      pins: { listTimeout: "10m", verifiedFor: "24h" },
    };
    config.edge = { ...config.edge, upstreamTimeout: "10m", headersTimeout: "10m", requestTimeout: "10m" };
    config.broker = { ...config.broker, lists: { ttl: 0 } };
    writeFileSync(work.configFile, stringify(config));
    const common = [
      "--config",
      work.configFile,
      "--token",
      work.token,
      "--calls",
      String(calls),
      "--warmup",
      String(warmup),
    ];
    process.stderr.write(
      `${mode}: ${paths.join(", ")}; ${warmup} warm-up + ${calls} counted requests each\n`,
    );
    const results: Partial<Record<PathId, Counted>> = {};
    const jobs = Number(values.jobs ?? 1);
    let next = 0;
    await Promise.all(
      Array.from({ length: Math.min(jobs, paths.length) }, async () => {
        while (next < paths.length) {
          const path = paths[next++]!;
          results[path] = await countPath(mode, path, common, calls, extraFlags);
          process.stderr.write(`  ${path}: ${Math.round(results[path].perCall).toLocaleString("en-US")}\n`);
        }
      }),
    );
    const unit = mode === "alloc" ? "bytes allocated per request" : "instructions per request";
    process.stdout.write(
      `\n${unit} (node ${process.version}; whole process: client, edge, broker, reference server)\n`,
    );
    const base = (p: PathId): PathId | undefined =>
      p === "broker_call" || p === "broker_call_2026"
        ? "edge_call"
        : p === "broker_list"
          ? "edge_list"
          : undefined;
    for (const p of paths) {
      const r = results[p]!;
      const b = base(p);
      const against = b && results[b] ? results[b] : undefined;
      const vs = against
        ? `  x${(r.perCall / against.perCall).toFixed(2)} of ${b}, +${Math.round(r.perCall - against.perCall).toLocaleString("en-US")}`
        : "";
      process.stdout.write(
        `  ${p.padEnd(17)} ${Math.round(r.perCall).toLocaleString("en-US").padStart(12)}${vs}\n`,
      );
    }
  } finally {
    work.remove();
  }
}

const { values } = parseArgs({
  options: {
    worker: { type: "boolean" },
    "node-flags": { type: "string" },
    mode: { type: "string" },
    paths: { type: "string" },
    path: { type: "string" },
    calls: { type: "string" },
    warmup: { type: "string" },
    jobs: { type: "string" },
    config: { type: "string" },
    token: { type: "string" },
  },
});
if (values.worker) await worker(values);
else await driver(values);
