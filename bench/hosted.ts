import { fork, type ChildProcess } from "node:child_process";

export interface Pauses {
  count: number;
  totalMs: number;
  maxMs: number;
}

/**
 * A hosted process's garbage-collection pauses so far, in all and by V8's kind (`maxMs`: the
 * longest since the previous ask), and its event loop's delay since the previous ask (sampled
 * every millisecond; bench/host.ts).
 */
export interface GcTotals extends Pauses {
  byKind?: Record<"minor" | "major" | "incremental" | "weakcb", Pauses>;
  loop?: { maxMs: number; p99Ms: number; meanMs: number };
}

/** A server running in its own process (see bench/host.ts). */
export interface Hosted {
  readonly label: string;
  readonly pid: number;
  readonly ports: Readonly<Record<string, number>>;
  /** CPU time (user + system, microseconds) the process has used so far. */
  cpuMicros(): Promise<number>;
  /** Its garbage-collection pauses so far (maxMs: the longest since the previous call). */
  gc(): Promise<GcTotals>;
  close(): Promise<void>;
}

const START_TIMEOUT_MS = 30_000;
const CLOSE_TIMEOUT_MS = 5_000;
const children = new Set<ChildProcess>();

// However the run ends, no server is left behind.
process.on("exit", () => {
  for (const child of children) child.kill("SIGKILL");
});

/** `.ts` when running from source under tsx, `.js` when compiled. */
const EXT = import.meta.url.endsWith(".ts") ? ".ts" : ".js";
const HOST = new URL(`./host${EXT}`, import.meta.url);
/**
 * Children inherit execArgv (tsx loader, --cpu-prof). From TypeScript sources without tsx in
 * execArgv (a test runner with its own loader), the child gets tsx.
 */
const EXEC_ARGV =
  EXT === ".ts" && !process.execArgv.some((a) => a.includes("tsx")) ? ["--import", "tsx"] : process.execArgv;

/**
 * Forks bench/host with the export `exportName` of `module`, and resolves once it listens.
 * Profiling the bench (`node --cpu-prof`) profiles every server too. `nodeFlags` go to this
 * child only (after the inherited ones), e.g. a young-generation size for one side.
 */
export function startHosted(
  module: URL,
  exportName: string,
  params: unknown,
  label: string,
  nodeFlags: readonly string[] = [],
): Promise<Hosted> {
  const child = fork(HOST, [module.href, exportName, JSON.stringify(params)], {
    stdio: ["ignore", "inherit", "inherit", "ipc"],
    execArgv: [...EXEC_ARGV, ...nodeFlags],
  });
  children.add(child);
  child.once("exit", () => children.delete(child));

  const close = () =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      const timer = setTimeout(() => child.kill("SIGKILL"), CLOSE_TIMEOUT_MS);
      child.once("exit", () => {
        clearTimeout(timer);
        resolve();
      });
      if (child.connected) child.send({ type: "close" });
      else child.kill("SIGTERM");
    });

  // Answers come back in order, one per request.
  const cpuWaiters: ((m: { micros: number; gc: GcTotals }) => void)[] = [];
  child.on("message", (m: { type?: string; micros?: number; gc?: GcTotals }) => {
    if (m.type === "cpu" && typeof m.micros === "number" && m.gc) {
      cpuWaiters.shift()?.({ micros: m.micros, gc: m.gc });
    }
  });
  const sample = () =>
    new Promise<{ micros: number; gc: GcTotals }>((resolve, reject) => {
      if (!child.connected) return reject(new Error(`${label} is not running`));
      cpuWaiters.push(resolve);
      child.send({ type: "cpu" });
    });
  const cpuMicros = () => sample().then((s) => s.micros);
  const gc = () => sample().then((s) => s.gc);

  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${label}: not listening after ${START_TIMEOUT_MS / 1000} s`));
    }, START_TIMEOUT_MS);
    const onExit = (code: number | null, signal: NodeJS.Signals | null) => {
      clearTimeout(timer);
      reject(new Error(`${label}: exited before listening (${signal ?? `code ${code}`}), see stderr above`));
    };
    child.once("exit", onExit);
    child.on("message", (m: { type?: string; ports?: Record<string, number> }) => {
      if (m.type !== "ready" || !m.ports) return;
      clearTimeout(timer);
      child.off("exit", onExit);
      resolve({ label, pid: child.pid ?? -1, ports: Object.freeze({ ...m.ports }), cpuMicros, gc, close });
    });
  });
}
