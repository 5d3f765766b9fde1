/**
 * The edge's CPU per request against the bare proxy's (bench/bare-proxy.ts), in the same run,
 * interleaved, several rounds: on a machine other jobs share, only a ratio taken within one
 * round is worth reading. Each variant runs in its own process in front of one reference
 * server; per round, each variant in turn (the order rotates) gets the same load, and its
 * process's CPU is read from /proc around it: user and kernel time, the main thread apart from
 * the rest (V8's GC helper threads, libuv's pool), context switches, and its garbage-collection
 * pauses (count, total, longest; and by V8's kind: scavenges, mark-compacts, incremental marking),
 * and with `--loop-delay <ms>` its event loop's delay (longest, 99th percentile), sampled that often
 * (perf_hooks.monitorEventLoopDelay; off by default: the sampling timer costs CPU).
 *
 *   npm run build && node dist/bench/edge-vs-bare.js --variants bare,edge,edge+noaudit,edge+semi32 \
 *     --rounds 5 --seconds 4 [--rate 500 | --concurrency 8] [--workload call_small] [--base-port P] \
 *     [--loop-delay 1]
 *
 * A variant is `bare` or `edge`, with modifiers: `+noaudit` (edge at log level warn: the audit
 * record is built, kept and counted, but no line is written), `+unbatched` (edge writing each log
 * line on its own, as before telemetry/logger.ts's LOG_FLUSH_DELAY_MS), `+semi<N>` (that process runs with
 * `--max-semi-space-size=N`, in MiB), `+flag=<node flag>` (any other flag, e.g. `+flag=--trace-gc`),
 * `+dist=<dir>` (edge only: the edge of another build, `<dir>` being a copy of an earlier `dist/`
 * inside this tree, e.g. `bench/out/dist-before`, so a change is measured against the code before
 * it in the same run: `--variants bare,edge+dist=bench/out/dist-before,edge`).
 * Prints one line per variant and round, then per variant the median over rounds and its ratio
 * to the first variant's figure in the same round (median, and half of max - min).
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { startHosted, type GcTotals, type Hosted } from "./hosted.js";
import { closedLoop, openLoop, type Operation } from "./load.js";
import { prepareWorkdir } from "./setup.js";
import { median, percentile } from "./stats.js";
import { httpSide } from "./http-side.js";
import { runScript } from "./script.js";
import { WORKLOADS, type WorkloadId } from "./workloads.js";

const EXT = import.meta.url.endsWith(".ts") ? ".ts" : ".js";
const TICKS = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;

interface Variant {
  name: string;
  kind: "edge" | "bare";
  logLevel: "info" | "warn";
  unbatchedLog: boolean;
  nodeFlags: string[];
  /** The build the edge is loaded from; undefined: this one. */
  dist?: string;
}

function parseVariant(spec: string): Variant {
  const [kind, ...mods] = spec.split("+");
  if (kind !== "edge" && kind !== "bare") throw new Error(`variant ${spec}: expected edge or bare`);
  const v: Variant = { name: spec, kind, logLevel: "info", unbatchedLog: false, nodeFlags: [] };
  for (const mod of mods) {
    if (mod === "noaudit" && kind === "edge") v.logLevel = "warn";
    else if (mod === "unbatched" && kind === "edge") v.unbatchedLog = true;
    else if (/^semi\d+$/.test(mod)) v.nodeFlags.push(`--max-semi-space-size=${mod.slice(4)}`);
    else if (mod.startsWith("flag=")) v.nodeFlags.push(mod.slice(5));
    else if (mod.startsWith("dist=") && kind === "edge") v.dist = mod.slice(5);
    else throw new Error(`variant ${spec}: unknown modifier ${mod}`);
  }
  return v;
}

/** Process counters from /proc: CPU in microseconds, context switches. */
interface Counters {
  user: number;
  system: number;
  mainThread: number;
  voluntary: number;
  involuntary: number;
}

function statTimes(path: string): { user: number; system: number } {
  const stat = readFileSync(path, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return { user: (Number(fields[11]) * 1e6) / TICKS, system: (Number(fields[12]) * 1e6) / TICKS };
}

function counters(pid: number): Counters {
  const all = statTimes(`/proc/${pid}/stat`);
  const main = statTimes(`/proc/${pid}/task/${pid}/stat`);
  // Context switches of every thread: /proc/<pid>/status counts the main thread's only.
  let voluntary = 0;
  let involuntary = 0;
  for (const tid of execFileSync("ls", [`/proc/${pid}/task`], { encoding: "utf8" }).split("\n")) {
    if (!tid) continue;
    try {
      const status = readFileSync(`/proc/${pid}/task/${tid}/status`, "utf8");
      voluntary += Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(status)?.[1] ?? 0);
      involuntary += Number(/nonvoluntary_ctxt_switches:\s+(\d+)/.exec(status)?.[1] ?? 0);
    } catch {
      // the thread ended meanwhile
    }
  }
  return { user: all.user, system: all.system, mainThread: main.user + main.system, voluntary, involuntary };
}

interface Row {
  round: number;
  variant: string;
  ok: number;
  perSecond: number;
  cpu: number;
  user: number;
  system: number;
  mainThread: number;
  otherThreads: number;
  switchesPerReq: number;
  gcPer1000: number;
  gcMsPer1000: number;
  gcMaxMs: number;
  /** By V8's kind: scavenges, mark-compacts (major), incremental marking steps (per 1,000, longest). */
  scavPer1000: number;
  scavMaxMs: number;
  majorPer1000: number;
  majorMaxMs: number;
  incrPer1000: number;
  incrMaxMs: number;
  /** The event loop's delay (with --loop-delay): longest and 99th percentile, ms. */
  loopMaxMs: number;
  loopP99Ms: number;
  p50: number;
  p99: number;
}

const NONE = { count: 0, totalMs: 0, maxMs: 0 };
const kind = (g: GcTotals, k: keyof NonNullable<GcTotals["byKind"]>) => g.byKind?.[k] ?? NONE;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      variants: { type: "string", default: "bare,edge" },
      workload: { type: "string", default: "call_small" },
      rounds: { type: "string", default: "5" },
      seconds: { type: "string", default: "4" },
      warmup: { type: "string", default: "3" },
      rate: { type: "string" },
      concurrency: { type: "string", default: "8" },
      /** Sample each variant's event-loop delay every this many ms (0: off; the timer costs CPU). */
      "loop-delay": { type: "string", default: "0" },
      /** The reference server listens here, the variants on the next ports (0: any free ones). */
      "base-port": { type: "string", default: "0" },
    },
  });
  const variants = values.variants!.split(",").map(parseVariant);
  const workload = WORKLOADS[values.workload as WorkloadId];
  if (!workload) throw new Error(`unknown workload ${values.workload}`);
  const durationMs = Number(values.seconds) * 1000;
  const rate = values.rate === undefined ? undefined : Number(values.rate);
  const concurrency = Number(values.concurrency);
  const basePort = Number(values["base-port"]);
  const portOf = (i: number) => (basePort > 0 ? basePort + i : 0);

  const reference = await startHosted(
    new URL(`./reference-server${EXT}`, import.meta.url),
    "serveReference",
    { port: portOf(0) },
    "reference server",
  );
  const referenceOrigin = `http://127.0.0.1:${reference.ports.http}`;
  // The variants' processes (not the reference server) sample their loop's delay (bench/host.ts).
  if (Number(values["loop-delay"]) > 0) process.env.BENCH_LOOP_DELAY_MS = values["loop-delay"];
  const work = await prepareWorkdir(referenceOrigin);
  const started: { variant: Variant; hosted: Hosted; op: Operation; close(): Promise<void> }[] = [];
  try {
    for (const [i, variant] of variants.entries()) {
      const port = portOf(i + 1);
      const hosted =
        variant.kind === "bare"
          ? await startHosted(
              new URL(`./bare-proxy${EXT}`, import.meta.url),
              "serveBareProxy",
              { origin: referenceOrigin, api: "dispatch", port },
              variant.name,
              variant.nodeFlags,
            )
          : await startHosted(
              variant.dist === undefined
                ? new URL(`./targets/edge${EXT}`, import.meta.url)
                : new URL("bench/targets/edge.js", pathToFileURL(`${resolve(variant.dist)}/`)),
              "serveEdge",
              {
                configFile: work.configFile,
                logLevel: variant.logLevel,
                unbatchedLog: variant.unbatchedLog,
                port,
              },
              variant.name,
              variant.nodeFlags,
            );
      const side = httpSide({
        name: variant.name,
        baseline: undefined,
        description: variant.name,
        origin: `http://127.0.0.1:${hosted.ports.http}`,
        pathFor: (w) => `/mcp/${w.server}`,
        token: work.token,
        connections: concurrency,
        serverCpuMicros: hosted.cpuMicros,
        onClose: hosted.close,
      });
      const op = await side.prepare(workload);
      started.push({ variant, hosted, op, close: () => side.close() });
    }
    const load = (op: Operation, ms: number) =>
      rate !== undefined
        ? openLoop(op, { ratePerSecond: rate, durationMs: ms, drainMs: 5000 }).then((r) => ({
            ok: r.ok,
            errors: r.errors,
            perSecond: (r.ok * 1000) / ms,
            latency: r.latency,
          }))
        : closedLoop(op, { concurrency, durationMs: ms, drainMs: 5000 });
    for (const s of started) await load(s.op, Number(values.warmup) * 1000);

    const rows: Row[] = [];
    const rounds = Number(values.rounds);
    process.stdout.write(
      `${workload.id}, ${rate !== undefined ? `open loop ${rate}/s` : `closed loop c=${concurrency}`}, ` +
        `${values.seconds} s per variant and round, ${rounds} rounds, Node ${process.version}\n` +
        `round variant            req/s  cpu us/req  user   kernel  main  other  ctxsw/req  gc/1000  gc ms/1000  gc max ms  ` +
        `scav/1000  scav max  mc/1000  mc max  incr/1000  incr max  loop max  loop p99  p50 ms  p99 ms\n`,
    );
    for (let round = 0; round < rounds; round++) {
      const order = started.map((_, i) => started[(i + round) % started.length]!);
      for (const s of order) {
        await s.hosted.gc(); // resets the longest pause
        const gc0 = await s.hosted.gc();
        const c0 = counters(s.hosted.pid);
        const r = await load(s.op, durationMs);
        const c1 = counters(s.hosted.pid);
        const gc1 = await s.hosted.gc();
        if (r.errors > 0) throw new Error(`${s.variant.name}: ${r.errors} errors`);
        const sorted = r.latency.sorted();
        const per = (x: number) => x / r.ok;
        const row: Row = {
          round,
          variant: s.variant.name,
          ok: r.ok,
          perSecond: r.perSecond,
          cpu: per(c1.user + c1.system - c0.user - c0.system),
          user: per(c1.user - c0.user),
          system: per(c1.system - c0.system),
          mainThread: per(c1.mainThread - c0.mainThread),
          otherThreads: per(c1.user + c1.system - c0.user - c0.system - (c1.mainThread - c0.mainThread)),
          switchesPerReq: per(c1.voluntary + c1.involuntary - c0.voluntary - c0.involuntary),
          gcPer1000: per(gc1.count - gc0.count) * 1000,
          gcMsPer1000: per(gc1.totalMs - gc0.totalMs) * 1000,
          gcMaxMs: gc1.maxMs,
          scavPer1000: per(kind(gc1, "minor").count - kind(gc0, "minor").count) * 1000,
          scavMaxMs: kind(gc1, "minor").maxMs,
          majorPer1000: per(kind(gc1, "major").count - kind(gc0, "major").count) * 1000,
          majorMaxMs: kind(gc1, "major").maxMs,
          incrPer1000: per(kind(gc1, "incremental").count - kind(gc0, "incremental").count) * 1000,
          incrMaxMs: kind(gc1, "incremental").maxMs,
          loopMaxMs: gc1.loop?.maxMs ?? NaN,
          loopP99Ms: gc1.loop?.p99Ms ?? NaN,
          p50: percentile(sorted, 50) ?? NaN,
          p99: percentile(sorted, 99) ?? NaN,
        };
        rows.push(row);
        const f = (n: number, w: number, d = 1) => n.toFixed(d).padStart(w);
        process.stdout.write(
          `${f(round, 5, 0)} ${row.variant.padEnd(16)} ${f(row.perSecond, 7, 0)} ${f(row.cpu, 11)} ${f(row.user, 6)} ${f(row.system, 7)} ${f(row.mainThread, 6)} ${f(row.otherThreads, 6)} ${f(row.switchesPerReq, 10, 2)} ${f(row.gcPer1000, 8, 2)} ${f(row.gcMsPer1000, 11, 2)} ${f(row.gcMaxMs, 10, 2)} ${f(row.scavPer1000, 10, 2)} ${f(row.scavMaxMs, 9, 2)} ${f(row.majorPer1000, 8, 2)} ${f(row.majorMaxMs, 7, 2)} ${f(row.incrPer1000, 10, 2)} ${f(row.incrMaxMs, 9, 2)} ${f(row.loopMaxMs, 9, 2)} ${f(row.loopP99Ms, 9, 2)} ${f(row.p50, 7, 3)} ${f(row.p99, 7, 3)}\n`,
        );
      }
    }

    const first = variants[0]!.name;
    const stat = (xs: number[]) => {
      const m = median(xs) ?? NaN;
      const half = (Math.max(...xs) - Math.min(...xs)) / 2;
      return `${m.toFixed(2)} ± ${half.toFixed(2)}`;
    };
    process.stdout.write(
      `\nmedian over rounds ± half the spread; "x ${first}" is the ratio within each round\n`,
    );
    const fields: (keyof Row)[] = [
      "cpu",
      "user",
      "system",
      "mainThread",
      "otherThreads",
      "switchesPerReq",
      "gcPer1000",
      "gcMsPer1000",
      "gcMaxMs",
      "scavPer1000",
      "scavMaxMs",
      "majorPer1000",
      "majorMaxMs",
      "incrPer1000",
      "incrMaxMs",
      "loopMaxMs",
      "loopP99Ms",
      "p50",
      "p99",
    ];
    for (const v of variants) {
      const mine = rows.filter((r) => r.variant === v.name);
      process.stdout.write(`${v.name}${v.nodeFlags.length ? ` (${v.nodeFlags.join(" ")})` : ""}\n`);
      for (const field of fields) {
        const xs = mine.map((r) => r[field] as number);
        let ratio = "";
        if (v.name !== first) {
          const ratios = mine.map((r) => {
            const base = rows.find((b) => b.round === r.round && b.variant === first)![field] as number;
            return (r[field] as number) / base;
          });
          if (ratios.every(Number.isFinite)) ratio = `   x ${first}: ${stat(ratios)}`;
        }
        process.stdout.write(`  ${String(field).padEnd(15)} ${stat(xs)}${ratio}\n`);
      }
    }
  } finally {
    for (const s of started) await s.close().catch(() => undefined);
    await reference.close();
    work.remove();
  }
}

runScript(main);
