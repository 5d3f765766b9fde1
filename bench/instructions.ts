/**
 * Instruction counts of the hot paths (bench/hot-paths.ts) under `valgrind --tool=callgrind`:
 * what a path costs, whatever else the machine is doing. Wall-clock and even CPU-time figures
 * move with the load on a shared machine; the number of instructions a deterministic run executes
 * does not.
 *
 *   npm run bench:instructions                      measure every path, compare with the baseline
 *   npm run bench:instructions -- --paths json_64k,sse_64k --repeat 2
 *   npm run bench:instructions -- --write-baseline  make this run the committed baseline
 *   node dist/bench/instructions.js --compare bench/out/instructions/results.json
 *   npm run bench:instructions -- --paths edge_small,edge_small_bare --allocation-only
 *                                                   bytes allocated per run, natively (seconds)
 *
 * Method: one `node --predictable` process under callgrind loads the bench config, then for each
 * path in turn prepares it, warms it up a fixed number of times (so the JIT has compiled what it
 * will compile, for this path's inputs) and runs it N times. Callgrind dumps and resets its
 * counters at a marker call before and after the N runs (`--dump-before`), so each path's runs
 * are counted alone: start-up, loading and warm-up are not in them. (Warming every path up first
 * and counting them afterwards left code shared by several paths optimised for whichever ran
 * last, and a path could then count the JIT re-optimising it: sse_64k read below scan_64k, which
 * is part of it.) `--predictable` makes V8 single-threaded with fixed seeds,
 * so the same run executes the same instructions: `--repeat 2` runs a second process and prints
 * how far the two differ (the spread). The heap is collected before each path and the young
 * generation is large (SEMI_SPACE_MIB), so no collection runs while a path is counted.
 *
 * Exit code 1 when a path costs more than the baseline by more than --threshold percent.
 */
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { getPriority } from "node:os";
import { PerformanceObserver } from "node:perf_hooks";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { parse, stringify } from "yaml";
import { HOT_PATHS, HOT_PATH_IDS, HotPathFixture, type HotPathId } from "./hot-paths.js";
import {
  compareInstructions,
  formatCount,
  turbofanFromAnnotation,
  type InstructionResults,
} from "./instructions-compare.js";
import { runScript } from "./script.js";
import { prepareWorkdir } from "./setup.js";

const REPO = fileURLToPath(new URL(import.meta.url.endsWith(".js") ? "../../" : "../", import.meta.url));
const BASELINE_FILE = join(REPO, "bench/instructions-baseline.json");
const OUT_DIR = join(REPO, "bench/out/instructions");
const DEFAULT_THRESHOLD_PERCENT = 3;
/**
 * A young generation (MiB) larger than what any path allocates in its phase: after the collection
 * before each path, no garbage collection runs while it is counted, so a path's count is its own
 * work (allocation included), never a collection of garbage another path left or a lump that
 * lands in whichever phase crosses a threshold. What collection costs per request is the bench's
 * `gc/1k` and `gc max ms` columns.
 */
const SEMI_SPACE_MIB = 64;

function git(args: string[]): string | null {
  try {
    return execFileSync("git", args, { cwd: REPO, encoding: "utf8", stdio: "pipe" }).trim();
  } catch {
    return null;
  }
}

/**
 * Marks the boundaries between measured phases: callgrind dumps its counters (and starts again
 * from zero) each time the worker enters this libuv function, which `os.getPriority()` calls and
 * nothing else in the worker does.
 */
const MARKER = "uv_os_getpriority";

/**
 * Instructions of one callgrind dump spent in TurboFan's compiles (inclusive cost of the runtime
 * functions that run them), read with callgrind_annotate; 0 when none ran.
 */
function turbofanInstructions(file: string): number {
  const out = execFileSync("callgrind_annotate", ["--inclusive=yes", "--threshold=100", file], {
    encoding: "utf8",
    maxBuffer: 256 * 1024 * 1024,
  });
  return turbofanFromAnnotation(out);
}

/**
 * One worker process under callgrind; resolves with the instructions of each phase between
 * markers: [start-up and warm-up, first path, second path, ...] (what follows the last marker,
 * the exit, is not counted), and of each phase the part TurboFan's compiles took.
 */
function countPhases(
  nodeFlags: string[],
  workerArgs: string[],
  outFile: string,
): Promise<{ phases: number[]; compiles: number[] }> {
  for (const f of readdirSync(dirname(outFile))) {
    if (f.startsWith(basename(outFile))) rmSync(join(dirname(outFile), f));
  }
  const args = [
    "--tool=callgrind",
    // JIT code lives on the heap and is rewritten in place.
    "--smc-check=all-non-file",
    `--dump-before=${MARKER}`,
    `--callgrind-out-file=${outFile}`,
    process.execPath,
    ...nodeFlags,
    fileURLToPath(import.meta.url),
    "--worker",
    ...workerArgs,
  ];
  return new Promise((resolve, reject) => {
    const child = spawn("valgrind", args, { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr.on("data", (d: Buffer) => (output += d.toString()));
    child.on("error", reject);
    child.on("exit", (code) => {
      if (code !== 0) return reject(new Error(`valgrind exited ${code}:\n${output.slice(-3000)}`));
      const phases: number[] = [];
      const compiles: number[] = [];
      for (let i = 1; existsSync(`${outFile}.${i}`); i++) {
        const m = /^summary: (\d+)$/m.exec(readFileSync(`${outFile}.${i}`, "utf8"));
        if (!m) return reject(new Error(`no summary in ${outFile}.${i}`));
        phases.push(Number(m[1]));
        try {
          compiles.push(turbofanInstructions(`${outFile}.${i}`));
        } catch (err) {
          return reject(err as Error);
        }
      }
      resolve({ phases, compiles });
    });
  });
}

/** One worker process natively, without callgrind (--allocation-only): no phases are counted. */
function runNative(nodeFlags: string[], workerArgs: string[]): Promise<number[]> {
  const args = [...nodeFlags, fileURLToPath(import.meta.url), "--worker", ...workerArgs];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr.on("data", (d: Buffer) => (output += d.toString()));
    child.on("error", reject);
    child.on("exit", (code) =>
      code === 0 ? resolve([]) : reject(new Error(`worker exited ${code}:\n${output.slice(-3000)}`)),
    );
  });
}

/** Runs `tasks` with at most `jobs` at a time, keeping their order in the results. */
async function pooled<T>(tasks: (() => Promise<T>)[], jobs: number): Promise<T[]> {
  const out: T[] = new Array(tasks.length);
  let next = 0;
  const lane = async () => {
    while (next < tasks.length) {
      const i = next++;
      out[i] = await tasks[i]!();
    }
  };
  await Promise.all(Array.from({ length: Math.min(jobs, tasks.length) }, lane));
  return out;
}

/** What a path allocated while it was counted (bench/instructions.ts's worker). */
interface Allocation {
  /** V8 heap bytes (no collection runs in a counted phase, so heapUsed only grows). */
  heapBytes: number;
  /** Bytes of ArrayBuffers (Buffers' backing stores) allocated outside the heap, net. */
  externalBytes: number;
  /** Garbage collections during the phase: a figure with any is not the allocation. */
  collections: number;
}

async function worker(values: Record<string, string | boolean | undefined>): Promise<void> {
  const fixture = new HotPathFixture(String(values.config), String(values.token));
  const collect = (globalThis as { gc?: () => void }).gc;
  if (!collect) throw new Error("the worker needs --expose-gc");
  let collections = 0;
  const observer = new PerformanceObserver((list) => (collections += list.getEntries().length));
  observer.observe({ entryTypes: ["gc"] });
  const allocations: Record<string, Allocation> = {};
  for (const id of String(values.measure ?? "")
    .split(",")
    .filter(Boolean) as HotPathId[]) {
    if (!HOT_PATHS[id]) throw new Error(`unknown path ${id}`);
    // Warmed up right before it is counted: the JIT's state is this path's own, whichever paths
    // ran before (code shared with another path may have been optimised for other inputs).
    const op = await fixture.operation(id);
    for (let i = 0; i < HOT_PATHS[id].warmup; i++) await op();
    // Each path starts on a collected heap with the whole young generation free (SEMI_SPACE_MIB).
    const seen = collections;
    collect();
    // The observer hears of that collection a few turns later; wait for it (bounded).
    for (let i = 0; i < 1000 && collections === seen; i++) await new Promise((r) => setImmediate(r));
    const settle = HOT_PATHS[id].settle;
    if (settle) {
      await new Promise((r) => setTimeout(r, settle.idleMs));
      for (let i = 0; i < settle.runs; i++) await op();
    }
    const gcBefore = collections;
    const before = process.memoryUsage();
    getPriority();
    for (let i = 0; i < HOT_PATHS[id].iterations; i++) await op();
    getPriority();
    const after = process.memoryUsage();
    // Entries of a collection during the counted runs, if any, arrive a few turns later.
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
    allocations[id] = {
      heapBytes: after.heapUsed - before.heapUsed,
      externalBytes: after.arrayBuffers - before.arrayBuffers,
      collections: collections - gcBefore,
    };
  }
  observer.disconnect();
  await fixture.close();
  if (typeof values["alloc-out"] === "string") {
    writeFileSync(values["alloc-out"], JSON.stringify(allocations));
  }
}

async function driver(values: Record<string, string | boolean | undefined>): Promise<number> {
  const threshold = Number(values.threshold ?? DEFAULT_THRESHOLD_PERCENT);
  const baselineFile = String(values.baseline ?? BASELINE_FILE);
  const baseline = existsSync(baselineFile)
    ? (JSON.parse(readFileSync(baselineFile, "utf8")) as InstructionResults)
    : undefined;

  if (typeof values.compare === "string") {
    const current = JSON.parse(readFileSync(values.compare, "utf8")) as InstructionResults;
    const { text, failed } = compareInstructions(current, baseline, threshold);
    process.stdout.write(text + "\n");
    return failed.length ? 1 : 0;
  }

  const paths = (values.paths ? String(values.paths).split(",") : [...HOT_PATH_IDS]) as HotPathId[];
  for (const p of paths)
    if (!HOT_PATHS[p]) throw new Error(`unknown path ${p} (known: ${HOT_PATH_IDS.join(", ")})`);
  const repeat = Number(values.repeat ?? 1);
  const jobs = Number(values.jobs ?? 2);
  const nodeFlags = [
    "--predictable",
    "--expose-gc",
    `--min-semi-space-size=${SEMI_SPACE_MIB}`,
    `--max-semi-space-size=${SEMI_SPACE_MIB}`,
    ...(values.jitless ? ["--jitless"] : []),
  ];
  const allocationOnly = values["allocation-only"] === true;
  const valgrind = allocationOnly
    ? "none"
    : execFileSync("valgrind", ["--version"], { encoding: "utf8" }).trim();
  mkdirSync(OUT_DIR, { recursive: true });
  // Keys and token made here, once: key generation is random and would differ between processes.
  const work = await prepareWorkdir("http://127.0.0.1:9");
  try {
    // Under valgrind a scan runs tens of times slower: the scan time budget would refuse answers
    // (and make the count depend on the clock). Only the time limit changes; every check runs.
    const config = parse(readFileSync(work.configFile, "utf8")) as Record<string, Record<string, unknown>>;
    config.security = { ...config.security, scanBudgetMs: 86_400_000 };
    writeFileSync(work.configFile, stringify(config));
    const common = ["--config", work.configFile, "--token", work.token];
    const started = Date.now();
    // The paths that share a process, then each path that needs one of its own (HotPath.ownProcess).
    const groups = [
      paths.filter((p) => !HOT_PATHS[p].ownProcess),
      ...paths.filter((p) => HOT_PATHS[p].ownProcess).map((p) => [p]),
    ].filter((g) => g.length > 0);
    process.stderr.write(
      `${allocationOnly ? "running" : "counting"} ${paths.length} paths in ${repeat * groups.length} process(es) ` +
        `${allocationOnly ? "natively" : "under callgrind"} (node ${nodeFlags.join(" ")})...\n`,
    );
    type Counted = { phases: number[]; compiles: number[]; allocations: Record<string, Allocation> };
    const tasks = Array.from({ length: repeat }, (_, r) =>
      groups.map((group, g) => async (): Promise<Counted> => {
        const out = join(OUT_DIR, `run${r}-${g}`);
        const args = [...common, "--measure", group.join(","), "--alloc-out", `${out}.alloc.json`];
        const { phases, compiles } = allocationOnly
          ? { phases: await runNative(nodeFlags, args), compiles: [] }
          : await countPhases(nodeFlags, args, `${out}.callgrind.out`);
        process.stderr.write(
          `  repeat ${r + 1}, ${group.join(",")}: ${phases.map(formatCount).join(", ")}\n`,
        );
        // Two markers per path: after its warm-up and after its counted runs.
        if (!allocationOnly && phases.length !== 2 * group.length) {
          throw new Error(`expected ${2 * group.length} phases, callgrind dumped ${phases.length}`);
        }
        const allocations = JSON.parse(readFileSync(`${out}.alloc.json`, "utf8")) as Record<
          string,
          Allocation
        >;
        return { phases, compiles, allocations };
      }),
    ).flat();
    const counted = await pooled(tasks, jobs);
    const results: InstructionResults = {
      schema: "mcp-gateway-instructions/1",
      node: process.version,
      valgrind,
      nodeFlags,
      commit: git(["rev-parse", "--short", "HEAD"]),
      paths: {},
    };
    for (const p of paths) {
      const g = groups.findIndex((group) => group.includes(p));
      const i = groups[g]!.indexOf(p);
      const runs = Array.from({ length: repeat }, (_, r) => counted[r * groups.length + g]!);
      // Phases alternate: start-up (or the previous path's end) and warm-up, then the counted runs.
      const runsCounted = HOT_PATHS[p].iterations * (HOT_PATHS[p].exchangesPerRun ?? 1);
      const perRun = runs.map((run) => run.phases[2 * i + 1]! / runsCounted);
      const compilePerRun = runs.map((run) => (run.compiles[2 * i + 1] ?? 0) / runsCounted);
      // Allocation does not vary between repeats of a --predictable run: the first one's.
      const alloc = runs[0]!.allocations[p];
      results.paths[p] = {
        title: HOT_PATHS[p].title,
        iterations: runsCounted,
        warmup: HOT_PATHS[p].warmup,
        instructions: Math.round(perRun.reduce((a, b) => a + b, 0) / perRun.length),
        spread: Math.round(Math.max(...perRun) - Math.min(...perRun)),
        ...(allocationOnly
          ? {}
          : { turbofan: Math.round(compilePerRun.reduce((a, b) => a + b, 0) / compilePerRun.length) }),
        ...(alloc && alloc.collections === 0
          ? { allocatedBytes: Math.round((alloc.heapBytes + Math.max(0, alloc.externalBytes)) / runsCounted) }
          : {}),
      };
    }
    if (allocationOnly) {
      process.stdout.write(`bytes allocated per run of each hot path, natively (${nodeFlags.join(" ")})\n`);
      for (const [id, r] of Object.entries(results.paths)) {
        const kb =
          r.allocatedBytes === undefined ? "- (a collection ran)" : (r.allocatedBytes / 1024).toFixed(1);
        process.stdout.write(`${id.padEnd(20)} ${kb} KB\n`);
      }
      return 0;
    }
    writeFileSync(join(OUT_DIR, "results.json"), JSON.stringify(results, null, 2) + "\n");
    const { text, failed } = compareInstructions(results, baseline, threshold);
    process.stdout.write(
      `instructions per run of each hot path (node ${process.version}, ${nodeFlags.join(" ")}, ` +
        `${repeat} repeat(s); spread: max - min over repeats), ` +
        `${((Date.now() - started) / 1000).toFixed(0)} s\n${text}\n`,
    );
    if (values["write-baseline"]) {
      writeFileSync(baselineFile, JSON.stringify(results, null, 2) + "\n");
      process.stdout.write(`wrote ${baselineFile}\n`);
      return 0;
    }
    if (!baseline) process.stdout.write(`no baseline at ${baselineFile}: run with --write-baseline\n`);
    if (failed.length) {
      process.stdout.write(`regressed beyond ${threshold}%: ${failed.join(", ")}\n`);
      return 1;
    }
    return 0;
  } finally {
    work.remove();
  }
}

async function main(): Promise<number | void> {
  const { values } = parseArgs({
    options: {
      worker: { type: "boolean" },
      config: { type: "string" },
      token: { type: "string" },
      measure: { type: "string" },
      "alloc-out": { type: "string" },
      iterations: { type: "string" },
      paths: { type: "string" },
      repeat: { type: "string" },
      jobs: { type: "string" },
      jitless: { type: "boolean" },
      "allocation-only": { type: "boolean" },
      threshold: { type: "string" },
      baseline: { type: "string" },
      compare: { type: "string" },
      "write-baseline": { type: "boolean" },
    },
  });
  if (values.worker) return worker(values);
  return driver(values);
}

runScript(main);
