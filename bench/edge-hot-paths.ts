/**
 * The local edge's hot path for the instruction counts (bench/instructions.ts): a whole small
 * `tools/call` through the edge over loopback HTTP, against the same call through the bare proxy
 * (bench/bare-proxy.ts: node:http in, undici dispatch() out, no policy), so the edge's cost per
 * request is a ratio of instructions to the floor of its own stack (issue 16's target: at most
 * 1.5).
 *
 * Only the proxy runs in the counted process; the client and the reference server run in a child
 * process that callgrind does not follow, so the count is the proxy's work alone (HTTP in, policy,
 * undici out, and back). Each side is counted in its own worker process (bench/instructions.ts),
 * so neither side's warm-up, garbage or JIT state is in the other's count. The client sends one
 * request at a time, with the same body each time, so every run reads the same bytes.
 */
import { fork, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { Pool } from "undici";
import { compileEngine, loadEngine } from "../ext-service/src/config/compile.js";
import { startEdge, type Edge } from "../ext-service/src/edge/index.js";
import { createLogger } from "../ext-service/src/telemetry/logger.js";
import { Metrics } from "../ext-service/src/telemetry/metrics.js";
import { serveBareProxy } from "./bare-proxy.js";
import { startReferenceServer } from "./reference-server.js";
import { PROTOCOL_VERSION, WORKLOADS, checkAnswer, type WorkloadId } from "./workloads.js";

export type EdgeSideName = "edge" | "bare-proxy";

type ChildMessage = { type: "reference"; origin: string } | { type: "done"; seq: number; error?: string };
type ParentMessage = { type: "run"; seq: number; origin: string; count: number; workload: WorkloadId };

/** The upstream origin prepareWorkdir() writes into the bench registry when none is known. */
const PLACEHOLDER_ORIGIN = "http://127.0.0.1:9";

/** The proxy (in this process) and the client with the reference server (a child process). */
export class EdgeFixture {
  private seq = 0;
  private readonly waiting = new Map<number, { resolve(): void; reject(err: Error): void }>();

  private constructor(
    private readonly origin: string,
    private readonly child: ChildProcess,
    private readonly stop: () => Promise<void>,
  ) {
    child.on("message", (m: ChildMessage) => {
      if (m.type !== "done") return;
      const w = this.waiting.get(m.seq);
      this.waiting.delete(m.seq);
      if (m.error) w?.reject(new Error(m.error));
      else w?.resolve();
    });
  }

  static async start(side: EdgeSideName, configFile: string, token: string): Promise<EdgeFixture> {
    const ts = import.meta.url.endsWith(".ts");
    const child = fork(fileURLToPath(import.meta.url), ["--edge-client", token], {
      // Natively and at full speed: none of the counted process's flags (--predictable, ...).
      stdio: ["ignore", "inherit", "inherit", "ipc"],
      execArgv: ts ? ["--import", "tsx"] : [],
    });
    const reference = await new Promise<string>((resolve, reject) => {
      child.once("message", (m: ChildMessage) =>
        m.type === "reference" ? resolve(m.origin) : reject(new Error("unexpected message")),
      );
      child.once("exit", (code) => reject(new Error(`edge client exited with ${code}`)));
    });
    try {
      if (side === "bare-proxy") {
        const bare = await serveBareProxy({ origin: reference, api: "dispatch" });
        return new EdgeFixture(`http://127.0.0.1:${bare.ports.http}`, child, bare.close);
      }
      const edge = await startBenchEdge(configFile, reference);
      return new EdgeFixture(edge.url, child, () => edge.close(0));
    } catch (err) {
      child.kill();
      throw err;
    }
  }

  /** `count` calls of `workload`, one after the other; rejects on any wrong answer. */
  run(workload: WorkloadId, count: number): Promise<void> {
    const seq = ++this.seq;
    return new Promise((resolve, reject) => {
      this.waiting.set(seq, { resolve, reject });
      this.child.send({ type: "run", seq, origin: this.origin, count, workload } satisfies ParentMessage);
    });
  }

  async close(): Promise<void> {
    this.child.kill();
    await this.stop();
  }
}

/**
 * The edge as `mcp-gateway edge` runs it (every policy on, audit records serialized and written
 * at level info), on the bench config with the reference server at `referenceOrigin`. The log
 * lines go to a sink that drops them: the edge's work is counted, not the kernel's.
 */
async function startBenchEdge(configFile: string, referenceOrigin: string): Promise<Edge> {
  const { loaded } = loadEngine(configFile);
  const engine = compileEngine({
    ...loaded,
    registry: {
      ...loaded.registry,
      servers: loaded.registry.servers.map((s) => ({
        ...s,
        upstreams: s.upstreams.map((u) => u.replace(PLACEHOLDER_ORIGIN, referenceOrigin)),
      })),
    },
  });
  const logger = createLogger("info", { write: (_line: string) => true });
  return startEdge({ engine, logger, metrics: new Metrics(), host: "127.0.0.1", port: 0 });
}

/** The child process: the reference server, and a client that calls the proxy on request. */
async function clientMain(token: string): Promise<void> {
  const reference = await startReferenceServer();
  const pools = new Map<string, Pool>();
  const headers = {
    "content-type": "application/json",
    accept: "application/json, text/event-stream",
    authorization: `Bearer ${token}`,
    "mcp-protocol-version": PROTOCOL_VERSION,
  };
  const id = 1_000_000;
  const runOne = async (origin: string, workloadId: WorkloadId) => {
    let pool = pools.get(origin);
    if (!pool) pools.set(origin, (pool = new Pool(origin, { connections: 1, pipelining: 1 })));
    const workload = WORKLOADS[workloadId];
    const res = await pool.request({
      path: `/mcp/${workload.server}`,
      method: "POST",
      headers,
      body: workload.requestBody(id),
    });
    const text = await res.body.text();
    const type = res.headers["content-type"];
    const problem = checkAnswer(workload, id, res.statusCode, Array.isArray(type) ? type[0] : type, text);
    if (problem) throw new Error(`${origin} ${workloadId}: ${problem}`);
  };
  process.on("message", (m: ParentMessage) => {
    void (async () => {
      try {
        for (let i = 0; i < m.count; i++) await runOne(m.origin, m.workload);
        process.send!({ type: "done", seq: m.seq } satisfies ChildMessage);
      } catch (err) {
        process.send!({ type: "done", seq: m.seq, error: String(err) } satisfies ChildMessage);
      }
    })();
  });
  process.on("disconnect", () => {
    for (const p of pools.values()) void p.destroy();
    void reference.close();
    process.exit(0);
  });
  process.send!({ type: "reference", origin: `http://127.0.0.1:${reference.port}` } satisfies ChildMessage);
}

if (process.argv[2] === "--edge-client") {
  void clientMain(process.argv[3]!);
}
