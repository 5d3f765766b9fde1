import { z } from "zod";
import { median, spectrum, summarize, type Samples } from "./stats.js";

/** The shape of bench/results.json. Checked by the tests; bump `schema` on incompatible change. */

const Ms = z.number().nullable();
const SummarySchema = z
  .object({ count: z.number().int(), min: Ms, p50: Ms, p90: Ms, p99: Ms, p999: Ms, max: Ms, mean: Ms })
  .strict();
const Percentiles = z.object({ p50: Ms, p90: Ms, p99: Ms }).strict();

export const ResultsSchema = z
  .object({
    schema: z.literal("mcp-gateway-bench/1"),
    startedAt: z.iso.datetime(),
    finishedAt: z.iso.datetime(),
    durationSeconds: z.number().nonnegative(),
    command: z.string(),
    machine: z
      .object({
        cpus: z.number().int().positive(),
        cpuModel: z.string(),
        memoryMiB: z.number().int().positive(),
        platform: z.string(),
        arch: z.string(),
        node: z.string(),
        loadAverageAtStart: z.array(z.number()).length(3),
      })
      .strict(),
    git: z.object({ commit: z.string().nullable(), dirty: z.boolean().nullable() }).strict(),
    settings: z
      .object({
        quick: z.boolean(),
        rates: z.array(z.number().positive()).min(1),
        latencySeconds: z.number().positive(),
        throughputSeconds: z.number().positive(),
        warmupSeconds: z.number().positive(),
        connections: z.number().int().positive(),
        rounds: z.number().int().positive(),
        targets: z.array(z.string()).min(1),
        workloads: z.array(z.string()).min(1),
      })
      .strict(),
    sides: z.array(
      z
        .object({
          name: z.string(),
          target: z.string(),
          baseline: z.string().nullable(),
          description: z.string(),
          status: z.enum(["measured", "skipped", "failed"]),
          reason: z.string().nullable(),
        })
        .strict(),
    ),
    workloads: z.array(
      z
        .object({
          id: z.string(),
          title: z.string(),
          requestBytes: z.number().int().positive(),
          responseBytes: z.number().int().positive(),
          responseType: z.string(),
        })
        .strict(),
    ),
    latency: z.array(
      z
        .object({
          side: z.string(),
          workload: z.string(),
          rate: z.number().positive(),
          scheduled: z.number().int().nonnegative(),
          sent: z.number().int().nonnegative(),
          ok: z.number().int().nonnegative(),
          errors: z.number().int().nonnegative(),
          timedOut: z.number().int().nonnegative(),
          sendLagMs: SummarySchema,
          latencyMs: SummarySchema,
          serviceMs: SummarySchema,
          /** CPU time of the measured server process per answered request (microseconds). */
          serverCpuUsPerRequest: z.number().nullable(),
          spectrum: z.array(z.tuple([z.number(), z.number()])),
          firstError: z.string().nullable(),
        })
        .strict(),
    ),
    throughput: z.array(
      z
        .object({
          side: z.string(),
          workload: z.string(),
          connections: z.number().int().positive(),
          seconds: z.number().nonnegative(),
          ok: z.number().int().nonnegative(),
          errors: z.number().int().nonnegative(),
          stuck: z.number().int().nonnegative(),
          /** Median over rounds. */
          perSecond: z.number().nullable(),
          rounds: z.array(z.number()),
          serverCpuUsPerRequest: z.number().nullable(),
          /** Average CPU cores the measured server process used during the phase. */
          serverCores: z.number().nullable(),
          /** Requests per CPU-second of the measured server process: its capacity on one core. */
          perCpuSecond: z.number().nullable(),
          /** Average CPU cores the load generator used; near 1 means it, not the server, was the limit. */
          clientCores: z.number().nullable(),
          latencyMs: SummarySchema,
          firstError: z.string().nullable(),
        })
        .strict(),
    ),
    comparisons: z.array(
      z
        .object({
          side: z.string(),
          baseline: z.string(),
          workload: z.string(),
          latency: z.array(z.object({ rate: z.number(), addedMs: Percentiles, ratio: Percentiles }).strict()),
          throughputRatio: z.number().nullable(),
        })
        .strict(),
    ),
    targets: z.array(
      z
        .object({
          id: z.string(),
          description: z.string(),
          side: z.string(),
          workload: z.string(),
          rate: z.number().nullable(),
          limit: z.string(),
          value: z.number().nullable(),
          status: z.enum(["pass", "fail", "pending"]),
        })
        .strict(),
    ),
  })
  .strict();

export type BenchResults = z.infer<typeof ResultsSchema>;
export type LatencyResult = BenchResults["latency"][number];
export type ThroughputResult = BenchResults["throughput"][number];
export type Comparison = BenchResults["comparisons"][number];
export type TargetCheck = BenchResults["targets"][number];
export type SideInfo = BenchResults["sides"][number];

/** Raw measurements of one side, workload and rate, accumulated over rounds. */
export interface LatencyCell {
  side: string;
  workload: string;
  rate: number;
  scheduled: number;
  sent: number;
  ok: number;
  errors: number;
  timedOut: number;
  sendLag: Samples;
  latency: Samples;
  service: Samples;
  /** CPU milliseconds used by the measured server process during the phases. */
  serverCpuMs: number;
  firstError: string | undefined;
}

export interface ThroughputCell {
  side: string;
  workload: string;
  connections: number;
  elapsedMs: number;
  serverCpuMs: number;
  clientCpuMs: number;
  ok: number;
  errors: number;
  stuck: number;
  perRound: number[];
  latency: Samples;
  firstError: string | undefined;
}

const round3 = (n: number) => Math.round(n * 1000) / 1000;

export function latencyResult(cell: LatencyCell): LatencyResult {
  const sorted = cell.latency.sorted();
  return {
    side: cell.side,
    workload: cell.workload,
    rate: cell.rate,
    scheduled: cell.scheduled,
    sent: cell.sent,
    ok: cell.ok,
    errors: cell.errors,
    timedOut: cell.timedOut,
    sendLagMs: summarize(cell.sendLag.sorted()),
    latencyMs: summarize(sorted),
    serviceMs: summarize(cell.service.sorted()),
    serverCpuUsPerRequest: cell.ok > 0 ? Math.round((cell.serverCpuMs * 10_000) / cell.ok) / 10 : null,
    spectrum: spectrum(sorted),
    firstError: cell.firstError ?? null,
  };
}

export function throughputResult(cell: ThroughputCell): ThroughputResult {
  const perSecond = median(cell.perRound);
  return {
    side: cell.side,
    workload: cell.workload,
    connections: cell.connections,
    seconds: round3(cell.elapsedMs / 1000),
    ok: cell.ok,
    errors: cell.errors,
    stuck: cell.stuck,
    perSecond: perSecond === null ? null : Math.round(perSecond),
    rounds: cell.perRound.map((r) => Math.round(r)),
    serverCpuUsPerRequest: cell.ok > 0 ? Math.round((cell.serverCpuMs * 10_000) / cell.ok) / 10 : null,
    serverCores: cell.elapsedMs > 0 ? Math.round((cell.serverCpuMs / cell.elapsedMs) * 100) / 100 : null,
    perCpuSecond: cell.serverCpuMs > 0 ? Math.round((cell.ok * 1000) / cell.serverCpuMs) : null,
    clientCores: cell.elapsedMs > 0 ? Math.round((cell.clientCpuMs / cell.elapsedMs) * 100) / 100 : null,
    latencyMs: summarize(cell.latency.sorted()),
    firstError: cell.firstError ?? null,
  };
}

function diff(a: number | null, b: number | null): number | null {
  return a === null || b === null ? null : round3(a - b);
}

function ratio(a: number | null, b: number | null): number | null {
  return a === null || b === null || b === 0 ? null : Math.round((a / b) * 100) / 100;
}

/**
 * Throughput ratio as the median of per-round ratios: a side and its baseline run minutes apart
 * at most within one round, so background load that changes between rounds cancels out.
 */
export function roundRatio(side: readonly number[], baseline: readonly number[]): number | null {
  const ratios = side.flatMap((v, i) => {
    const b = baseline[i];
    return b === undefined || b === 0 ? [] : [v / b];
  });
  const m = median(ratios);
  return m === null ? null : Math.round(m * 100) / 100;
}

/** Each measured side with a baseline, against that baseline, per workload. */
export function compare(
  sides: readonly SideInfo[],
  latency: readonly LatencyResult[],
  throughput: readonly ThroughputResult[],
): Comparison[] {
  const out: Comparison[] = [];
  for (const side of sides) {
    if (side.status !== "measured" || side.baseline === null) continue;
    const baseline = sides.find((s) => s.name === side.baseline);
    if (baseline?.status !== "measured") continue;
    const workloads = [...new Set(latency.filter((l) => l.side === side.name).map((l) => l.workload))];
    for (const workload of workloads) {
      const rows = latency.filter((l) => l.side === side.name && l.workload === workload);
      const lat = rows.flatMap((row) => {
        const base = latency.find(
          (l) => l.side === baseline.name && l.workload === workload && l.rate === row.rate,
        );
        if (!base) return [];
        const a = row.latencyMs;
        const b = base.latencyMs;
        return [
          {
            rate: row.rate,
            addedMs: { p50: diff(a.p50, b.p50), p90: diff(a.p90, b.p90), p99: diff(a.p99, b.p99) },
            ratio: { p50: ratio(a.p50, b.p50), p90: ratio(a.p90, b.p90), p99: ratio(a.p99, b.p99) },
          },
        ];
      });
      const t = throughput.find((x) => x.side === side.name && x.workload === workload);
      const tb = throughput.find((x) => x.side === baseline.name && x.workload === workload);
      out.push({
        side: side.name,
        baseline: baseline.name,
        workload,
        latency: lat,
        throughputRatio: t && tb ? roundRatio(t.rounds, tb.rounds) : null,
      });
    }
  }
  return out;
}

/** The budget from issue 6, evaluated on the small tools/call workload. */
export function checkTargets(
  rates: readonly number[],
  comparisons: readonly Comparison[],
  throughput: readonly ThroughputResult[],
): TargetCheck[] {
  const rate = rates.includes(200) ? 200 : rates[0]!;
  const workload = "call_small";
  const cmp = (side: string) => comparisons.find((c) => c.side === side && c.workload === workload);
  const atRate = (side: string) => cmp(side)?.latency.find((l) => l.rate === rate);
  const check = (
    id: string,
    description: string,
    side: string,
    withRate: boolean,
    limit: string,
    value: number | null | undefined,
    ok: (v: number) => boolean,
  ): TargetCheck => ({
    id,
    description,
    side,
    workload,
    rate: withRate ? rate : null,
    limit,
    value: value ?? null,
    status: value === null || value === undefined ? "pending" : ok(value) ? "pass" : "fail",
  });
  const extTput = throughput.find((t) => t.side === "ext-service" && t.workload === workload)?.perCpuSecond;
  return [
    check(
      "edge_added_p50",
      "edge: added median latency vs direct",
      "edge",
      true,
      "< 1 ms",
      atRate("edge")?.addedMs.p50,
      (v) => v < 1,
    ),
    check(
      "edge_added_p99",
      "edge: added p99 latency vs direct",
      "edge",
      true,
      "< 5 ms",
      atRate("edge")?.addedMs.p99,
      (v) => v < 5,
    ),
    check(
      "edge_throughput_ratio",
      "edge: throughput at saturation / direct",
      "edge",
      false,
      ">= 0.6",
      cmp("edge")?.throughputRatio,
      (v) => v >= 0.6,
    ),
    check(
      "ext_service_latency_ratio",
      "ext-service: median latency / do-nothing server",
      "ext-service",
      true,
      "<= 1.5",
      atRate("ext-service")?.ratio.p50,
      (v) => v <= 1.5,
    ),
    check(
      "ext_service_decisions_per_second",
      "ext-service: tools/call decisions per CPU-second (one core)",
      "ext-service",
      false,
      ">= 3000",
      extTput,
      (v) => v >= 3000,
    ),
  ];
}
