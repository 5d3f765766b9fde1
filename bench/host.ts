import { constants, monitorEventLoopDelay, PerformanceObserver } from "node:perf_hooks";

/**
 * Child-process entry: runs one server (reference MCP server, edge, ext-service, no-op) in a
 * process of its own, so the load generator, the gateway and the MCP server never share an event
 * loop, as in a real deployment. Started by `startHosted` (bench/hosted.ts).
 *
 * argv: <module URL> <export name> <JSON params>. The export returns
 * `{ ports: Record<string, number>, close(): Promise<void> }`. IPC: the child sends `ready`
 * once listening; the parent sends `cpu` (answered with the CPU microseconds used so far) and
 * `close` (answered with `closed`).
 */

interface Started {
  ports: Record<string, number>;
  close(): Promise<void> | void;
}

type Message =
  | { type: "ready"; ports: Record<string, number> }
  | { type: "closed" }
  | { type: "cpu"; micros: number; gc: GcTotals };

/** Pauses of one kind: how many, their total and the longest since the last ask (ms). */
interface Pauses {
  count: number;
  totalMs: number;
  maxMs: number;
}
/**
 * Garbage-collection pauses of this process so far; `maxMs` is the longest since the last ask.
 * `byKind` splits them as V8 reports them: scavenges (minor), mark-compacts (major), incremental
 * marking steps and weak callbacks. `loop` (with BENCH_LOOP_DELAY_MS set) is the event loop's delay
 * since the last ask (perf_hooks.monitorEventLoopDelay): how late a timer due then ran, so the
 * longest synchronous stretch of any cause (GC, a long task, a synchronous write).
 */
interface GcTotals extends Pauses {
  byKind: Record<"minor" | "major" | "incremental" | "weakcb", Pauses>;
  loop?: { maxMs: number; p99Ms: number; meanMs: number };
}
const pauses = (): Pauses => ({ count: 0, totalMs: 0, maxMs: 0 });
const gc: GcTotals = {
  ...pauses(),
  byKind: { minor: pauses(), major: pauses(), incremental: pauses(), weakcb: pauses() },
};
const KINDS: [number, keyof GcTotals["byKind"]][] = [
  [constants.NODE_PERFORMANCE_GC_MINOR, "minor"],
  [constants.NODE_PERFORMANCE_GC_MAJOR, "major"],
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL, "incremental"],
  [constants.NODE_PERFORMANCE_GC_WEAKCB, "weakcb"],
];
const add = (p: Pauses, ms: number) => {
  p.count++;
  p.totalMs += ms;
  if (ms > p.maxMs) p.maxMs = ms;
};
// Pauses of the main thread for garbage collection: what stalls every request in flight.
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    add(gc, entry.duration);
    const kind = (entry as { detail?: { kind?: number } }).detail?.kind;
    const name = KINDS.find(([k]) => k === kind)?.[1];
    if (name) add(gc.byKind[name], entry.duration);
  }
}).observe({ entryTypes: ["gc"] });
// Opt-in (BENCH_LOOP_DELAY_MS, the sampling interval): its timer wakes the loop that often, which
// costs CPU and changes what a CPU-per-request figure means.
const loopResolution = Number(process.env.BENCH_LOOP_DELAY_MS ?? 0);
const loopDelay = loopResolution > 0 ? monitorEventLoopDelay({ resolution: loopResolution }) : undefined;
loopDelay?.enable();

function send(message: Message): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send || !process.connected) resolve();
    else process.send(message, () => resolve());
  });
}

async function main(): Promise<void> {
  const [href, exportName, paramsJson] = process.argv.slice(2);
  if (!href || !exportName || paramsJson === undefined || !process.send) {
    throw new Error("bench host: expected <module URL> <export> <JSON params> and an IPC channel");
  }
  const mod = (await import(href)) as Record<string, unknown>;
  const start = mod[exportName];
  if (typeof start !== "function") throw new Error(`bench host: ${href} has no function '${exportName}'`);
  const started = (await (start as (p: unknown) => Promise<Started>)(JSON.parse(paramsJson))) as Started;
  let closing = false;
  const stop = async () => {
    if (closing) return;
    closing = true;
    await started.close();
    await send({ type: "closed" });
    process.exit(0);
  };
  process.on("message", (m: { type?: string } | null) => {
    if (m?.type === "close") void stop();
    if (m?.type === "cpu") {
      // CPU time of this process (all threads), so the harness can charge each side its cost.
      const used = process.cpuUsage();
      if (loopDelay) {
        gc.loop = {
          maxMs: loopDelay.max / 1e6,
          p99Ms: loopDelay.percentile(99) / 1e6,
          meanMs: loopDelay.mean / 1e6,
        };
      }
      void send({ type: "cpu", micros: used.user + used.system, gc: structuredClone(gc) });
      gc.maxMs = 0;
      for (const p of Object.values(gc.byKind)) p.maxMs = 0;
      loopDelay?.reset();
    }
  });
  // The parent went away: nothing will ever measure this server again.
  process.on("disconnect", () => process.exit(0));
  await send({ type: "ready", ports: started.ports });
}

main().catch((err: unknown) => {
  process.stderr.write(`bench host: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
