/**
 * What one request through the aggregated endpoint (`/mcp/views/<server>`) costs against the same
 * request to `/mcp/<server>`, counted in ways a loaded machine does not move: instructions under
 * `valgrind --tool=callgrind`, and bytes allocated on the JavaScript heap.
 *
 *   npm run build && node dist/bench/broker-cost.js                      # instructions, every path
 *   node dist/bench/broker-cost.js --mode alloc                          # allocation, every path
 *   node dist/bench/broker-cost.js --mode cpu --rounds 3                 # CPU time, median ± half spread
 *   node dist/bench/broker-cost.js --paths edge_call,broker_call --calls 200
 *   node dist/bench/broker-cost.js --mode alloc --rounds 3 --baseline /tmp/before   # before/after
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
 * - `cpu`: plain node with its default heap; prints the process's CPU time (user + system, all
 *   threads: `process.cpuUsage()`) per request over the counted requests, garbage collection
 *   included. It moves with the machine's load (caches, frequency, the scheduler); read it with
 *   its spread over `--rounds`.
 *
 * `--rounds N` measures every path N times (round by round, each path in a new process) and prints
 * the median with ± half the spread (max - min). `--baseline DIR` measures each path with another
 * build too (DIR is a checkout whose `npm run build` is done: `DIR/dist/bench/broker-cost.js`),
 * in the same rounds, alternating with this one, and prints the change; a change smaller than the
 * spread of either side reads "not distinguishable". The baseline's harness must print what the
 * mode needs (the CPU mode: a build with this harness).
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
  const cpuBefore = process.cpuUsage();
  getPriority();
  for (let i = 0; i < calls; i++) await op();
  getPriority();
  const cpu = process.cpuUsage(cpuBefore);
  const after = process.memoryUsage().heapUsed;
  await new Promise((resolve) => setImmediate(resolve));
  observer.disconnect();
  process.stdout.write(
    `${JSON.stringify({
      allocated: after - before,
      cpuUs: cpu.user + cpu.system,
      collections,
      started: Math.round(started),
    })}\n`,
  );
  await pool.close();
  await edge.close(0);
  await reference.close();
  rmSync(registryFile);
  rmSync(ownConfig);
}

type Mode = "instructions" | "alloc" | "cpu";

interface Counted {
  perCall: number;
  note: string;
}

/** A build whose worker counts a path: this one, or the `--baseline` checkout's. */
interface Build {
  /** "" for this build, "baseline" for the other. */
  tag: string;
  script: string;
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
  mode: Mode,
  build: Build,
  path: PathId,
  common: string[],
  calls: number,
  extraFlags: string[],
): Promise<Counted> {
  const workerArgs = [build.script, "--worker", "--path", path, ...common];
  if (mode === "alloc" || mode === "cpu") {
    const flags =
      mode === "alloc"
        ? [
            "--expose-gc",
            `--min-semi-space-size=${SEMI_SPACE_MIB}`,
            `--max-semi-space-size=${SEMI_SPACE_MIB}`,
          ]
        : ["--expose-gc"];
    const out = await runChild(process.execPath, [...flags, ...extraFlags, ...workerArgs]);
    const result = JSON.parse(out.trim().split("\n").pop()!) as {
      allocated: number;
      cpuUs?: number;
      collections: string[];
      started: number;
    };
    if (mode === "cpu") {
      if (result.cpuUs === undefined) throw new Error(`${build.script}: its worker does not count CPU time`);
      return { perCall: result.cpuUs / calls, note: "us" };
    }
    if (result.collections.length > 0)
      throw new Error(
        `${path}: collections while counting (from ${result.started} ms): ${result.collections.join(", ")}`,
      );
    return { perCall: result.allocated / calls, note: "bytes" };
  }
  const outFile = join(OUT_DIR, `${path}${build.tag ? `.${build.tag}` : ""}.callgrind.out`);
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

/** Median and half the spread (max - min) of one path's rounds. */
interface Summary {
  median: number;
  spread: number;
}

function summarise(values: readonly number[]): Summary {
  const sorted = [...values].sort((x, y) => x - y);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { median, spread: sorted[sorted.length - 1]! - sorted[0]! };
}

const fmt = (n: number): string => Math.round(n).toLocaleString("en-US");
const shown = (s: Summary, rounds: number): string =>
  rounds > 1 ? `${fmt(s.median)} (±${fmt(s.spread / 2)})` : fmt(s.median);

/** The path a path is compared with: the same request to /mcp/<server>. */
function baseOf(p: PathId): PathId | undefined {
  return p === "broker_call" || p === "broker_call_2026"
    ? "edge_call"
    : p === "broker_list"
      ? "edge_list"
      : undefined;
}

async function driver(values: Record<string, string | boolean | undefined>): Promise<void> {
  const mode: Mode = values.mode === "alloc" ? "alloc" : values.mode === "cpu" ? "cpu" : "instructions";
  const paths = (values.paths ? String(values.paths).split(",") : [...PATHS]) as PathId[];
  for (const p of paths)
    if (!PATHS.includes(p)) throw new Error(`unknown path ${p} (known: ${PATHS.join(", ")})`);
  // `--node-flags="--cpu-prof --cpu-prof-dir=DIR"`: more flags for the alloc and cpu modes' processes.
  const extraFlags = values["node-flags"] ? String(values["node-flags"]).split(" ").filter(Boolean) : [];
  const calls = Number(values.calls ?? (mode === "instructions" ? 50 : 100));
  const warmup = Number(values.warmup ?? 100);
  const rounds = Number(values.rounds ?? 1);
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error("--rounds: a whole number from 1");
  const builds: Build[] = [{ tag: "", script: fileURLToPath(import.meta.url) }];
  if (values.baseline !== undefined) {
    const script = join(String(values.baseline), "dist", "bench", "broker-cost.js");
    if (!existsSync(script)) throw new Error(`--baseline: no ${script} (run npm run build there)`);
    builds.push({ tag: "baseline", script });
  }
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
      `${mode}: ${paths.join(", ")}; ${warmup} warm-up + ${calls} counted requests each, ${rounds} round(s)` +
        `${builds.length > 1 ? `, this build and ${String(values.baseline)} alternating` : ""}\n`,
    );
    // Round by round; within a round each path with each build, the builds' order alternating.
    const tasks: { round: number; path: PathId; build: Build }[] = [];
    for (let round = 0; round < rounds; round++)
      for (const path of paths)
        for (const build of round % 2 === 0 ? builds : [...builds].reverse())
          tasks.push({ round, path, build });
    const counted = new Map<string, number[]>();
    const jobs = Number(values.jobs ?? 1);
    let next = 0;
    await Promise.all(
      Array.from({ length: Math.min(jobs, tasks.length) }, async () => {
        while (next < tasks.length) {
          const { round, path, build } = tasks[next++]!;
          const r = await countPath(mode, build, path, common, calls, extraFlags);
          const key = `${build.tag} ${path}`;
          counted.set(key, [...(counted.get(key) ?? []), r.perCall]);
          process.stderr.write(
            `  round ${round + 1} ${path}${build.tag ? ` (${build.tag})` : ""}: ${fmt(r.perCall)}\n`,
          );
        }
      }),
    );
    const unit =
      mode === "alloc"
        ? "bytes allocated per request"
        : mode === "cpu"
          ? "CPU microseconds per request"
          : "instructions per request";
    process.stdout.write(
      `\n${unit} (node ${process.version}; whole process: client, edge, broker, reference server)` +
        `${rounds > 1 ? `; median (± half the spread) of ${rounds} rounds` : ""}\n`,
    );
    const summaryOf = (tag: string, p: PathId) => summarise(counted.get(`${tag} ${p}`)!);
    for (const build of builds) {
      if (builds.length > 1)
        process.stdout.write(build.tag ? `${build.tag} (${String(values.baseline)}):\n` : "this build:\n");
      for (const p of paths) {
        const r = summaryOf(build.tag, p);
        const b = baseOf(p);
        const against = b && paths.includes(b) ? summaryOf(build.tag, b) : undefined;
        const vs = against
          ? `  x${(r.median / against.median).toFixed(2)} of ${b}, +${fmt(r.median - against.median)}`
          : "";
        process.stdout.write(`  ${p.padEnd(17)} ${shown(r, rounds).padStart(20)}${vs}\n`);
      }
    }
    if (builds.length > 1) {
      process.stdout.write("change, this build against the baseline:\n");
      for (const p of paths) {
        const now = summaryOf("", p);
        const before = summaryOf("baseline", p);
        const diff = now.median - before.median;
        const change =
          Math.abs(diff) <= Math.max(now.spread, before.spread)
            ? "not distinguishable"
            : `${diff > 0 ? "+" : ""}${fmt(diff)} (${diff > 0 ? "+" : ""}${((100 * diff) / before.median).toFixed(0)}%)`;
        process.stdout.write(`  ${p.padEnd(17)} ${change}\n`);
      }
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
    rounds: { type: "string" },
    baseline: { type: "string" },
    config: { type: "string" },
    token: { type: "string" },
  },
});
if (values.worker) await worker(values);
else await driver(values);
