import { z } from "zod";
import { median, spectrum, summarize, type Samples } from "./stats.js";

/** The shape of bench/results.json. Checked by the tests; bump `schema` on incompatible change. */

const Ms = z.number().nullable();
const SummarySchema = z
  .object({ count: z.number().int(), min: Ms, p50: Ms, p90: Ms, p99: Ms, p999: Ms, max: Ms, mean: Ms })
  .strict();
const Percentiles = z.object({ p50: Ms, p90: Ms, p99: Ms }).strict();

/** Per-round values of one figure; spread = max - min. */
const RoundFigure = z
  .object({ median: z.number().nullable(), spread: z.number().nullable(), rounds: z.array(z.number()) })
  .strict();

/** A figure against its baseline: distinguishable only when the difference exceeds both spreads. */
const VersusBaseline = z
  .object({
    side: z.number().nullable(),
    baseline: z.number().nullable(),
    difference: z.number().nullable(),
    ratio: z.number().nullable(),
    spread: z.number().nullable(),
    distinguishable: z.boolean().nullable(),
  })
  .strict();

export const ResultsSchema = z
  .object({
    // Version 1 had no rounds' spread, load fractions or CPU comparisons (fields optional below).
    schema: z.enum(["mcp-gateway-bench/1", "mcp-gateway-bench/2"]),
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
        loadFractions: z.array(z.number().positive()).optional(),
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
          cpuBaseline: z.string().nullable().optional(),
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
          /** "500/s" for a fixed rate, "25%" for a fraction of the round's capacity. */
          load: z.string().optional(),
          fraction: z.number().nullable().optional(),
          /** The rate (median over rounds, which differ for fractions of a measured capacity). */
          rate: z.number().positive(),
          /** Rounds in which the rate was over 80% of the side's capacity, so not measured. */
          skippedRounds: z.number().int().nonnegative().optional(),
          perRound: z
            .object({ rate: RoundFigure, p50: RoundFigure, p99: RoundFigure, cpuUs: RoundFigure })
            .strict()
            .optional(),
          /**
           * The measured server's garbage-collection pauses during the phases: how many per 1,000
           * answered requests, their total per answered request, and the longest (a pause holds
           * every request in flight, so the longest ones show in the tail).
           */
          gc: z
            .object({
              perThousand: z.number().nullable(),
              usPerRequest: z.number().nullable(),
              maxMs: z.number(),
            })
            .strict()
            .optional(),
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
          perSecondRounds: RoundFigure.optional(),
          serverCpuUsPerRequest: z.number().nullable(),
          /** CPU microseconds per request of the measured server process, round by round. */
          cpuUsRounds: RoundFigure.optional(),
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
          latency: z.array(
            z
              .object({
                rate: z.number(),
                load: z.string().optional(),
                addedMs: Percentiles,
                ratio: Percentiles,
                p50: VersusBaseline.optional(),
                p99: VersusBaseline.optional(),
              })
              .strict(),
          ),
          throughputRatio: z.number().nullable(),
        })
        .strict(),
    ),
    /** CPU per request at saturation against each side's CPU baseline. */
    cpuComparisons: z
      .array(
        z
          .object({ side: z.string(), baseline: z.string(), workload: z.string(), cpuUs: VersusBaseline })
          .strict(),
      )
      .optional(),
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
          /** Which issue set the target. */
          issue: z.number().int().optional(),
          /** Set when the figure is within the rounds' spread of its baseline. */
          note: z.string().nullable().optional(),
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
  /** "500/s" or "25%". */
  load: string;
  fraction: number | null;
  /** The rate of each round in which the side was measured, and its p50, p99 and CPU then. */
  roundRates: number[];
  roundP50: number[];
  roundP99: number[];
  roundCpuUs: number[];
  skippedRounds: number;
  /** Garbage-collection pauses of the measured server process during the phases. */
  gcCount: number;
  gcMs: number;
  gcMaxMs: number;
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
  /** CPU microseconds per request of the measured server process in each round. */
  cpuUsRounds: number[];
  latency: Samples;
  firstError: string | undefined;
}

const round3 = (n: number) => Math.round(n * 1000) / 1000;

export type RoundFigure = NonNullable<ThroughputResult["cpuUsRounds"]>;
export type VersusBaseline = NonNullable<NonNullable<Comparison["latency"][number]["p50"]>>;

/** Median and spread (max - min) of one figure over rounds. */
export function roundFigure(values: readonly number[], digits = 3): RoundFigure {
  const f = 10 ** digits;
  const r = (n: number) => Math.round(n * f) / f;
  const m = median(values);
  return {
    median: m === null ? null : r(m),
    spread: values.length ? r(Math.max(...values) - Math.min(...values)) : null,
    rounds: values.map(r),
  };
}

/**
 * A figure against its baseline's. The difference is distinguishable only when it exceeds the
 * spread over rounds of both figures: otherwise the rounds of one side alone differ by as much.
 */
export function versus(
  side: number | null,
  baseline: number | null,
  sideSpread: number | null,
  baselineSpread: number | null,
): VersusBaseline {
  const difference = diff(side, baseline);
  const spread =
    sideSpread === null || baselineSpread === null ? null : round3(Math.max(sideSpread, baselineSpread));
  return {
    side,
    baseline,
    difference,
    ratio: ratio(side, baseline),
    spread,
    distinguishable: difference === null || spread === null ? null : Math.abs(difference) > spread,
  };
}

export function latencyResult(cell: LatencyCell): LatencyResult {
  const sorted = cell.latency.sorted();
  const rates = roundFigure(cell.roundRates, 0);
  return {
    side: cell.side,
    workload: cell.workload,
    load: cell.load,
    fraction: cell.fraction,
    rate: rates.median ?? 1,
    skippedRounds: cell.skippedRounds,
    perRound: {
      rate: rates,
      p50: roundFigure(cell.roundP50),
      p99: roundFigure(cell.roundP99),
      cpuUs: roundFigure(cell.roundCpuUs, 1),
    },
    gc: {
      perThousand: cell.ok > 0 ? Math.round((cell.gcCount * 10_000) / cell.ok) / 10 : null,
      usPerRequest: cell.ok > 0 ? Math.round((cell.gcMs * 10_000) / cell.ok) / 10 : null,
      maxMs: round3(cell.gcMaxMs),
    },
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
    perSecondRounds: roundFigure(cell.perRound, 0),
    serverCpuUsPerRequest: cell.ok > 0 ? Math.round((cell.serverCpuMs * 10_000) / cell.ok) / 10 : null,
    cpuUsRounds: roundFigure(cell.cpuUsRounds, 1),
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
      const loadOf = (l: LatencyResult) => l.load ?? `${l.rate}/s`;
      const lat = rows.flatMap((row) => {
        const base = latency.find(
          (l) => l.side === baseline.name && l.workload === workload && loadOf(l) === loadOf(row),
        );
        if (!base || row.latencyMs.count === 0 || base.latencyMs.count === 0) return [];
        const a = row.latencyMs;
        const b = base.latencyMs;
        const spreads = (pick: "p50" | "p99") =>
          [row.perRound?.[pick].spread ?? null, base.perRound?.[pick].spread ?? null] as const;
        return [
          {
            rate: row.rate,
            load: loadOf(row),
            addedMs: { p50: diff(a.p50, b.p50), p90: diff(a.p90, b.p90), p99: diff(a.p99, b.p99) },
            ratio: { p50: ratio(a.p50, b.p50), p90: ratio(a.p90, b.p90), p99: ratio(a.p99, b.p99) },
            p50: versus(a.p50, b.p50, ...spreads("p50")),
            p99: versus(a.p99, b.p99, ...spreads("p99")),
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

/** Each measured side's CPU per request at saturation against its CPU baseline's, per workload. */
export function compareCpu(
  sides: readonly SideInfo[],
  throughput: readonly ThroughputResult[],
): NonNullable<BenchResults["cpuComparisons"]> {
  const out: NonNullable<BenchResults["cpuComparisons"]> = [];
  for (const side of sides) {
    const baselineName = side.cpuBaseline ?? side.baseline;
    if (side.status !== "measured" || !baselineName) continue;
    if (sides.find((s) => s.name === baselineName)?.status !== "measured") continue;
    for (const t of throughput.filter((x) => x.side === side.name)) {
      const b = throughput.find((x) => x.side === baselineName && x.workload === t.workload);
      if (!b?.cpuUsRounds || !t.cpuUsRounds) continue;
      const v = versus(
        t.cpuUsRounds.median,
        b.cpuUsRounds.median,
        t.cpuUsRounds.spread,
        b.cpuUsRounds.spread,
      );
      out.push({ side: side.name, baseline: baselineName, workload: t.workload, cpuUs: v });
    }
  }
  return out;
}

/** The budgets: issue 6's on the small tools/call, and issue 16's (CPU, tail, 64 KB paths). */
export function checkTargets(
  rates: readonly number[],
  comparisons: readonly Comparison[],
  throughput: readonly ThroughputResult[],
  cpuComparisons: NonNullable<BenchResults["cpuComparisons"]> = [],
): TargetCheck[] {
  const rate = rates.includes(200) ? 200 : rates[0]!;
  const fastRate = rates.includes(500) ? 500 : rates[rates.length - 1]!;
  const small = "call_small";
  const cmp = (side: string, workload = small) =>
    comparisons.find((c) => c.side === side && c.workload === workload);
  const atLoad = (side: string, load: string) =>
    cmp(side)?.latency.find((l) => (l.load ?? `${l.rate}/s`) === load);
  const cpu = (side: string, workload: string) =>
    cpuComparisons.find((c) => c.side === side && c.workload === workload)?.cpuUs;
  const indistinct = (v: VersusBaseline | undefined) =>
    v?.distinguishable === false ? "not distinguishable from the baseline (within the rounds' spread)" : null;
  const check = (
    issue: number,
    id: string,
    description: string,
    side: string,
    workload: string,
    atRate: number | null,
    limit: string,
    value: number | null | undefined,
    ok: (v: number) => boolean,
    note: string | null = null,
  ): TargetCheck => ({
    id,
    description,
    side,
    workload,
    rate: atRate,
    limit,
    value: value ?? null,
    status: value === null || value === undefined ? "pending" : ok(value) ? "pass" : "fail",
    issue,
    note,
  });
  const extTput = throughput.find((t) => t.side === "ext-service" && t.workload === small)?.perCpuSecond;
  const fast = atLoad("edge", `${fastRate}/s`);
  const half = atLoad("ext-service", "50%");
  const checks: TargetCheck[] = [
    check(
      6,
      "edge_added_p50",
      "edge: added median latency vs direct",
      "edge",
      small,
      rate,
      "< 1 ms",
      atLoad("edge", `${rate}/s`)?.addedMs.p50,
      (v) => v < 1,
    ),
    check(
      6,
      "edge_added_p99",
      "edge: added p99 latency vs direct",
      "edge",
      small,
      rate,
      "< 5 ms",
      atLoad("edge", `${rate}/s`)?.addedMs.p99,
      (v) => v < 5,
    ),
    check(
      6,
      "edge_throughput_ratio",
      "edge: throughput at saturation / direct",
      "edge",
      small,
      null,
      ">= 0.6",
      cmp("edge")?.throughputRatio,
      (v) => v >= 0.6,
    ),
    check(
      6,
      "ext_service_latency_ratio",
      "ext-service: median latency / do-nothing server",
      "ext-service",
      small,
      rate,
      "<= 1.5",
      atLoad("ext-service", `${rate}/s`)?.ratio.p50,
      (v) => v <= 1.5,
    ),
    check(
      6,
      "ext_service_decisions_per_second",
      "ext-service: tools/call decisions per CPU-second (one core)",
      "ext-service",
      small,
      null,
      ">= 3000",
      extTput,
      (v) => v >= 3000,
    ),
    check(
      16,
      "edge_cpu_ratio",
      "edge: CPU per request / bare proxy's",
      "edge",
      small,
      null,
      "<= 1.5",
      cpu("edge", small)?.ratio,
      (v) => v <= 1.5,
      indistinct(cpu("edge", small)),
    ),
    check(
      16,
      "edge_added_p50_fast",
      "edge: added median latency vs direct",
      "edge",
      small,
      fastRate,
      "<= 0.5 ms",
      fast?.addedMs.p50,
      (v) => v <= 0.5,
      indistinct(fast?.p50),
    ),
    check(
      16,
      "edge_added_p99_fast",
      "edge: added p99 latency vs direct",
      "edge",
      small,
      fastRate,
      "<= 2 ms",
      fast?.addedMs.p99,
      (v) => v <= 2,
      indistinct(fast?.p99),
    ),
    check(
      16,
      "ext_service_cpu_ratio",
      "ext-service: CPU per exchange / do-nothing server's",
      "ext-service",
      small,
      null,
      "<= 1.3",
      cpu("ext-service", small)?.ratio,
      (v) => v <= 1.3,
      indistinct(cpu("ext-service", small)),
    ),
    check(
      16,
      "ext_service_latency_ratio_half",
      "ext-service: median latency / do-nothing at 50% of capacity",
      "ext-service",
      small,
      half?.rate ?? null,
      "<= 1.3",
      half?.ratio.p50,
      (v) => v <= 1.3,
      indistinct(half?.p50),
    ),
  ];
  // CPU the gateway adds to a 64 KB result over its baseline: response path and scan together
  // (the scan's share is in `npm run bench:instructions`: scan_64k against json_64k and sse_64k).
  for (const [side, label] of [
    ["edge", "edge"],
    ["ext-service", "ext-service"],
  ] as const) {
    for (const workload of ["call_64k_json", "call_64k_sse"]) {
      const v = cpu(side, workload);
      checks.push(
        check(
          16,
          `${side.replace("-", "_")}_${workload.slice(5)}_added_cpu`,
          `${label}: CPU added per 64 KB result (${workload.endsWith("sse") ? "SSE" : "JSON"}), scan included`,
          side,
          workload,
          null,
          "< 1500 us",
          v?.difference,
          (x) => x < 1500,
          indistinct(v),
        ),
      );
    }
  }
  return checks;
}
