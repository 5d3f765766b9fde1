import type { GcTotals } from "../hosted.js";
import type { Operation } from "../load.js";
import type { Workload } from "../workloads.js";

/**
 * A measured side (its `baseline` is the side it is compared with: direct for the edge, noop for
 * the ext-service): something that turns a workload into an operation (one request, or one Envoy
 * decision) the load generator can repeat.
 */
export interface Side extends SideDeclaration {
  /** Concurrent requests at saturation, when the side needs more than the run's connections. */
  readonly concurrency?: number;
  /** CPU microseconds used so far by the process(es) this side measures. */
  serverCpuMicros(): Promise<number>;
  /** Garbage-collection pauses of that process so far (maxMs: longest since the last call). */
  serverGc?(): Promise<GcTotals>;
  /** Checks one complete answer for the workload, then returns the repeatable operation. */
  prepare(workload: Workload): Promise<Operation>;
  close(): Promise<void>;
}

export interface BenchContext {
  /** Temp dir with keys, gateway.yaml and registry.yaml. */
  readonly workdir: string;
  readonly configFile: string;
  /** Signed JWT of the bench agent. */
  readonly token: string;
  /** http://127.0.0.1:<port> of the reference MCP server. */
  readonly referenceOrigin: string;
  /** CPU microseconds used so far by the reference server's process. */
  referenceCpuMicros(): Promise<number>;
  referenceGc?(): Promise<GcTotals>;
  /** Upper bound of concurrent requests per side (closed-loop workers). */
  readonly connections: number;
}

/** What a side is, known before it starts (so a skipped side can still be listed). */
export interface SideDeclaration {
  readonly name: string;
  /** The side its latency is compared with (what a client would reach without it). */
  readonly baseline: string | undefined;
  /**
   * The side its CPU per request is compared with, when not `baseline`: the edge's is the bare
   * proxy (the cost of any Node proxy), not the MCP server behind it.
   */
  readonly cpuBaseline?: string;
  readonly description: string;
}

/** A target contributes one or more sides; it is skipped when its modules are not in the tree. */
export interface Target {
  readonly name: string;
  readonly sides: readonly SideDeclaration[];
  /** Why the target cannot run in this tree (a missing module), or undefined. */
  unavailable(): string | undefined;
  start(ctx: BenchContext): Promise<Side[]>;
}
