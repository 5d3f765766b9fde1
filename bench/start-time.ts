/**
 * Start-up CPU of the CLI's edge against a baseline build's, alternated over several runs: each
 * run starts `node <cli.js> edge --config <bench gateway.yaml> --port 0 --admin-port 0`, waits for
 * its "edge listening" line, reads the process's CPU (user + system, all threads) from
 * /proc/<pid>/stat at that moment, and stops it. Module loading, config compilation and the
 * listeners are in the figure; what the process does after it is ready is not. Linux only.
 *
 *   npm run build && cp -r dist bench/out/dist-before      # the build before a change
 *   # ... change, then:
 *   npm run build && node dist/bench/start-time.js --baseline bench/out/dist-before/ext-service/src/cli.js --runs 10
 *
 * The baseline's cli.js must sit inside this tree (its node_modules are resolved from its
 * path). Prints each run, then per build the median and spread (± half of max - min) of CPU
 * and of the wall time to ready, and the difference, or `not distinguishable` when it is smaller
 * than either build's max - min.
 */
import { execFileSync, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { runScript } from "./script.js";
import { prepareWorkdir } from "./setup.js";
import { median } from "./stats.js";

const TICKS = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
const THIS_CLI = fileURLToPath(
  new URL(
    import.meta.url.endsWith(".ts") ? "../ext-service/src/cli.ts" : "../ext-service/src/cli.js",
    import.meta.url,
  ),
);
const READY_TIMEOUT_MS = 120_000;

interface StartSample {
  /** CPU (user + system, every thread) when the edge said it listens, ms. */
  cpuMs: number;
  /** Wall time from spawn to that line, ms. */
  wallMs: number;
}

/** CPU of a running process from /proc, in ms (clock-tick resolution). */
export function processCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS;
}

/** One start of `cli` (a cli.js) as the edge on `configFile`, measured when it is ready. */
export function measureStart(cli: string, configFile: string): Promise<StartSample> {
  const started = performance.now();
  const child = spawn(
    process.execPath,
    [cli, "edge", "--config", configFile, "--port", "0", "--admin-port", "0"],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  return new Promise<StartSample>((resolveSample, reject) => {
    let output = "";
    let sample: StartSample | undefined;
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${cli}: not listening after ${READY_TIMEOUT_MS} ms\n${output.slice(-2000)}`));
    }, READY_TIMEOUT_MS);
    const onData = (chunk: Buffer) => {
      if (sample) return;
      output += chunk.toString();
      if (!output.includes('"edge listening"')) return;
      sample = { cpuMs: processCpuMs(child.pid!), wallMs: performance.now() - started };
      child.kill("SIGTERM");
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      if (sample) resolveSample(sample);
      else reject(new Error(`${cli}: exited (${signal ?? code}) before listening\n${output.slice(-2000)}`));
    });
  });
}

interface Summary {
  median: number;
  spread: number;
}

function summary(values: number[]): Summary {
  return { median: median(values) ?? NaN, spread: Math.max(...values) - Math.min(...values) };
}

function show(s: Summary): string {
  return `${s.median.toFixed(0)} ± ${(s.spread / 2).toFixed(0)}`;
}

/** The difference of the medians, or "not distinguishable" when either side's rounds differ more. */
export function difference(side: Summary, baseline: Summary): string {
  const diff = side.median - baseline.median;
  if (Math.abs(diff) <= Math.max(side.spread, baseline.spread)) return "not distinguishable";
  return `${diff > 0 ? "+" : ""}${diff.toFixed(0)} ms (${((diff / baseline.median) * 100).toFixed(1)}%)`;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      baseline: { type: "string" },
      cli: { type: "string" },
      runs: { type: "string", default: "5" },
    },
  });
  if (typeof values.baseline !== "string")
    throw new Error("--baseline <cli.js of the earlier build> is required");
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1)
    throw new Error(`--runs ${values.runs}: expected a positive integer`);
  const builds = [
    { name: "baseline", cli: resolve(values.baseline) },
    { name: "this", cli: resolve(values.cli ?? THIS_CLI) },
  ];
  for (const b of builds) if (!existsSync(b.cli)) throw new Error(`${b.cli}: no such file`);
  // The upstream is never contacted: the edge starts without asking its servers anything.
  const work = await prepareWorkdir("http://127.0.0.1:9");
  try {
    const samples = new Map<string, StartSample[]>(builds.map((b) => [b.name, []]));
    for (let run = 0; run < runs; run++) {
      // Alternate which build starts first, so drift in the machine's load hits both alike.
      const order = run % 2 === 0 ? builds : [...builds].reverse();
      for (const b of order) {
        const s = await measureStart(b.cli, work.configFile);
        samples.get(b.name)!.push(s);
        process.stdout.write(
          `run ${run + 1} ${b.name.padEnd(8)} cpu ${s.cpuMs.toFixed(0)} ms, ready after ${s.wallMs.toFixed(0)} ms\n`,
        );
      }
    }
    const cpu = builds.map((b) => summary(samples.get(b.name)!.map((s) => s.cpuMs)));
    const wall = builds.map((b) => summary(samples.get(b.name)!.map((s) => s.wallMs)));
    process.stdout.write(
      `\nstart of the edge to "edge listening", ${runs} run(s) each (median ± half of max - min)\n` +
        `build     cpu ms        ready ms\n` +
        builds
          .map((b, i) => `${b.name.padEnd(9)} ${show(cpu[i]!).padEnd(13)} ${show(wall[i]!)}  ${b.cli}`)
          .join("\n") +
        `\nthis - baseline: cpu ${difference(cpu[1]!, cpu[0]!)}, ready ${difference(wall[1]!, wall[0]!)}\n`,
    );
    return 0;
  } finally {
    work.remove();
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) runScript(main);
