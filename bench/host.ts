import { PerformanceObserver } from "node:perf_hooks";

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

/** Garbage-collection pauses of this process so far; `maxMs` is the longest since the last ask. */
interface GcTotals {
  count: number;
  totalMs: number;
  maxMs: number;
}
const gc: GcTotals = { count: 0, totalMs: 0, maxMs: 0 };
// Pauses of the main thread for garbage collection: what stalls every request in flight.
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    gc.count++;
    gc.totalMs += entry.duration;
    if (entry.duration > gc.maxMs) gc.maxMs = entry.duration;
  }
}).observe({ entryTypes: ["gc"] });

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
      void send({ type: "cpu", micros: used.user + used.system, gc: { ...gc } });
      gc.maxMs = 0;
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
