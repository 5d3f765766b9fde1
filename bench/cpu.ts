/**
 * CPU cost per request of one side, split into user and kernel time, for performance work.
 * Starts the reference server and one side (each in its own process, as `npm run bench` does),
 * warms up, then runs a closed loop and reads the side's server process CPU from /proc
 * (Linux only) around the measured window.
 *
 *   npm run build && node dist/bench/cpu.js --side edge --workload call_small --seconds 5
 *   node dist/bench/cpu.js --side ext-service --rate 200        (open loop: CPU per request at low load)
 *   node --cpu-prof --cpu-prof-dir=DIR dist/bench/cpu.js --side ext-service ...
 *
 * With --cpu-prof every process writes a profile; the line `window` gives the measured window
 * in the profiles' clock (microseconds, CLOCK_MONOTONIC), to cut start-up and warm-up out.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { startHosted } from "./hosted.js";
import { closedLoop, openLoop } from "./load.js";
import { prepareWorkdir } from "./setup.js";
import { percentile } from "./stats.js";
import { BARE_PROXY, BARE_PROXY_REQUEST, startBareProxy } from "./targets/bare-proxy.js";
import { TARGETS, type BenchContext, type Side } from "./targets/index.js";
import { runScript } from "./script.js";
import { WORKLOADS, type WorkloadId } from "./workloads.js";

const EXT = import.meta.url.endsWith(".ts") ? ".ts" : ".js";
const REFERENCE_MODULE = new URL(`./reference-server${EXT}`, import.meta.url);
/** Which export each side's server process runs (to find its pid). */
const SERVER_EXPORT: Record<string, string> = {
  direct: "serveReference",
  edge: "serveEdge",
  "ext-service": "serveExtService",
  noop: "serveNoop",
  "bare-proxy": "serveBareProxy",
  "bare-proxy-request": "serveBareProxy",
};
const TICKS = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;

function childPid(exportName: string): number {
  const out = execFileSync("ps", ["-o", "pid=,args=", "--ppid", String(process.pid)], { encoding: "utf8" });
  const line = out.split("\n").find((l) => l.includes(` ${exportName} `));
  if (!line) throw new Error(`no child process runs ${exportName}`);
  return Number(line.trim().split(/\s+/)[0]);
}

/** utime and stime of a process (or of one thread: `/proc/<pid>/task/<tid>`), in microseconds. */
function cpuOf(pid: number, tid?: number): { user: number; system: number } {
  const stat = readFileSync(
    tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`,
    "utf8",
  );
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return { user: (Number(fields[11]) * 1e6) / TICKS, system: (Number(fields[12]) * 1e6) / TICKS };
}

const monotonicMicros = () => Number(process.hrtime.bigint() / 1000n);

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      side: { type: "string", default: "edge" },
      workload: { type: "string", default: "call_small" },
      seconds: { type: "string", default: "5" },
      warmup: { type: "string", default: "2" },
      concurrency: { type: "string" },
      repeat: { type: "string", default: "1" },
      /** Open loop at this many requests per second instead of the closed loop (saturation). */
      rate: { type: "string" },
    },
  });
  const sideName = values.side!;
  const workload = WORKLOADS[values.workload as WorkloadId];
  if (!workload) throw new Error(`unknown workload ${values.workload}`);
  const bare = [BARE_PROXY, BARE_PROXY_REQUEST].find((s) => s.name === sideName);
  const target = bare ? undefined : TARGETS.find((t) => t.sides.some((s) => s.name === sideName));
  if (!target && !bare) throw new Error(`unknown side ${sideName}`);

  const reference = await startHosted(REFERENCE_MODULE, "serveReference", {}, "reference server");
  const referenceOrigin = `http://127.0.0.1:${reference.ports.http}`;
  const work = await prepareWorkdir(referenceOrigin);
  let sides: Side[] = [];
  try {
    const ctx: BenchContext = {
      workdir: work.dir,
      configFile: work.configFile,
      token: work.token,
      referenceOrigin,
      referenceCpuMicros: reference.cpuMicros,
      connections: 8,
    };
    // One bare proxy, not both of its target's sides: the other would only take CPU.
    sides = bare ? [await startBareProxy(ctx, bare)] : await target!.start(ctx);
    const side = sides.find((s) => s.name === sideName)!;
    const pid = childPid(SERVER_EXPORT[sideName]!);
    const op = await side.prepare(workload);
    const concurrency = Number(values.concurrency ?? side.concurrency ?? 8);
    await closedLoop(op, { concurrency, durationMs: Number(values.warmup) * 1000, drainMs: 5000 });
    for (let i = 0; i < Number(values.repeat); i++) {
      const t0 = monotonicMicros();
      const c0 = cpuOf(pid);
      const m0 = cpuOf(pid, pid);
      const g0 = process.cpuUsage();
      const durationMs = Number(values.seconds) * 1000;
      const r = values.rate
        ? await openLoop(op, { ratePerSecond: Number(values.rate), durationMs, drainMs: 5000 }).then((o) => ({
            ok: o.ok,
            errors: o.errors,
            perSecond: (o.ok * 1000) / durationMs,
            latency: o.latency,
          }))
        : await closedLoop(op, { concurrency, durationMs, drainMs: 5000 });
      const median = percentile(r.latency.sorted(), 50) ?? NaN;
      const c1 = cpuOf(pid);
      const m1 = cpuOf(pid, pid);
      const main = (m1.user + m1.system - m0.user - m0.system) / r.ok;
      const g = process.cpuUsage(g0);
      const generator = (g.user + g.system) / r.ok;
      const t1 = monotonicMicros();
      const user = (c1.user - c0.user) / r.ok;
      const system = (c1.system - c0.system) / r.ok;
      process.stdout.write(
        `${sideName} ${workload.id} ${values.rate ? `rate=${values.rate}` : `c=${concurrency}`}: ` +
          `${Math.round(r.perSecond)} req/s, median ${median.toFixed(3)} ms, errors ${r.errors}, ` +
          `server pid ${pid}: ${(user + system).toFixed(1)} us/req (user ${user.toFixed(1)}, kernel ${system.toFixed(1)}; main thread ${main.toFixed(1)}), ` +
          `${Math.round(1e6 / (user + system))} req/cpu-s, load generator ${generator.toFixed(1)} us/req, ${(((c1.user + c1.system - c0.user - c0.system) / (t1 - t0)) * 1).toFixed(2)} cores\n` +
          `window ${t0} ${t1}\n`,
      );
    }
  } finally {
    for (const s of sides) await s.close().catch(() => undefined);
    await reference.close();
    work.remove();
  }
}

runScript(main);
