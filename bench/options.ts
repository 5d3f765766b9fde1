import { parseArgs } from "node:util";
import { DEFAULT_WORKLOAD_IDS, WORKLOAD_IDS, type WorkloadId } from "./workloads.js";

/** Everything that shapes a run; recorded in results.json. */
export interface BenchSettings {
  quick: boolean;
  /** Open-loop request rates (per second) for the latency phase. */
  rates: number[];
  /**
   * Latency phases at these fractions of the measured capacity (of the slowest side compared, in
   * the same round), so that no row measures a backlog.
   */
  loadFractions: number[];
  latencySeconds: number;
  throughputSeconds: number;
  warmupSeconds: number;
  /** Closed-loop workers (concurrent connections) for the throughput phase. */
  connections: number;
  rounds: number;
  targets: string[];
  workloads: WorkloadId[];
  /** Directory for results.json and results.svg. */
  out: string;
}

export const USAGE = `Usage: npm run bench -- [options]

Measures the gateway against a direct connection to a reference MCP server, in rounds that
alternate the sides. Writes a table to stdout, results.json and results.svg to --out.

Options (environment variable in brackets; a flag wins over its variable):
  --quick                   seconds-long smoke run; writes to bench/out/quick  [BENCH_QUICK=1]
  --rates 500               open-loop request rates per second (a side whose    [BENCH_RATES]
                            capacity this is over 80% of skips the rate)
  --load-fractions 0.25,0.5 open-loop rates as fractions of the capacity        [BENCH_LOAD_FRACTIONS]
                            measured in the same round
  --latency-seconds 3       length of each open-loop (latency) phase           [BENCH_LATENCY_SECONDS]
  --throughput-seconds 2    length of each closed-loop (throughput) phase      [BENCH_THROUGHPUT_SECONDS]
  --warmup-seconds 0.5      warm-up per side and workload before round 1       [BENCH_WARMUP_SECONDS]
  --connections 8           concurrent connections at saturation               [BENCH_CONNECTIONS]
  --rounds 3                rounds (spread = max - min over them); each round  [BENCH_ROUNDS]
                            rotates the order of the sides
  --targets direct,edge,ext-service,bare-proxy,broker,broker-uncached         [BENCH_TARGETS]
                            bare-proxy: node:http + undici with no policy, the
                            edge's CPU baseline; broker, broker-uncached: the
                            same workloads through the aggregated endpoint
                            (lists kept, lists not kept), compared with edge
  --workloads ${DEFAULT_WORKLOAD_IDS.join(",")}
                                                                               [BENCH_WORKLOADS]
                            also call_uncached,call_cached (not run by default):
                            a read-only call without and with the result cache
  --out bench               where results.json and results.svg go              [BENCH_OUT]
  --help
`;

export class UsageError extends Error {}

/**
 * A fixed rate above this fraction of a side's capacity, or of the slowest side it is compared
 * with (in the same round), is not measured.
 */
export const MAX_LOAD = 0.8;

const DEFAULTS = {
  rates: [500],
  loadFractions: [0.25, 0.5],
  latencySeconds: 3,
  throughputSeconds: 2,
  warmupSeconds: 0.5,
  connections: 8,
  rounds: 3,
};
const QUICK = {
  rates: [100],
  loadFractions: [0.25, 0.5],
  latencySeconds: 0.2,
  throughputSeconds: 0.2,
  warmupSeconds: 0.1,
  connections: 4,
  rounds: 2,
};

function positive(name: string, text: string, integer: boolean): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) {
    throw new UsageError(`${name} '${text}' is not a positive ${integer ? "integer" : "number"}`);
  }
  return n;
}

function list(text: string): string[] {
  return text
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
}

/**
 * Flags, then environment, then defaults. `repoBench` is the committed bench/ directory (the
 * default output of a full run); quick runs default to bench/out/quick so they never overwrite
 * the committed results.
 */
export function parseSettings(
  argv: string[],
  env: NodeJS.ProcessEnv,
  knownTargets: readonly string[],
  repoBench: string,
  /** Targets run when none are named; the others run only on request. */
  defaultTargets: readonly string[] = knownTargets,
): BenchSettings | "help" {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      quick: { type: "boolean" },
      rates: { type: "string" },
      "load-fractions": { type: "string" },
      "latency-seconds": { type: "string" },
      "throughput-seconds": { type: "string" },
      "warmup-seconds": { type: "string" },
      connections: { type: "string" },
      rounds: { type: "string" },
      targets: { type: "string" },
      workloads: { type: "string" },
      out: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) return "help";
  const quick = values.quick ?? (env.BENCH_QUICK === "1" || env.BENCH_QUICK === "true");
  const base = quick ? QUICK : DEFAULTS;
  const pick = (flag: string | undefined, variable: string) => flag ?? env[variable];

  const ratesText = pick(values.rates, "BENCH_RATES");
  const rates = ratesText ? list(ratesText).map((r) => positive("rate", r, false)) : base.rates;
  const fractionsText = pick(values["load-fractions"], "BENCH_LOAD_FRACTIONS");
  const loadFractions = fractionsText
    ? list(fractionsText).map((f) => {
        const n = positive("load fraction", f, false);
        if (n >= 1) throw new UsageError(`load fraction '${f}' is not below 1`);
        return n;
      })
    : base.loadFractions;
  const num = (flag: string | undefined, variable: string, fallback: number, integer = false) => {
    const text = pick(flag, variable);
    return text === undefined ? fallback : positive(variable, text, integer);
  };

  const targetsText = pick(values.targets, "BENCH_TARGETS");
  const targets = targetsText ? list(targetsText) : [...defaultTargets];
  for (const t of targets) {
    if (!knownTargets.includes(t)) {
      throw new UsageError(`unknown target '${t}' (known: ${knownTargets.join(", ")})`);
    }
  }
  const workloadsText = pick(values.workloads, "BENCH_WORKLOADS");
  const workloads = (workloadsText ? list(workloadsText) : [...DEFAULT_WORKLOAD_IDS]) as WorkloadId[];
  for (const w of workloads) {
    if (!(WORKLOAD_IDS as readonly string[]).includes(w)) {
      throw new UsageError(`unknown workload '${w}' (known: ${WORKLOAD_IDS.join(", ")})`);
    }
  }
  if (rates.length === 0 || targets.length === 0 || workloads.length === 0) {
    throw new UsageError("rates, targets and workloads must not be empty");
  }

  return {
    quick,
    rates,
    loadFractions,
    latencySeconds: num(values["latency-seconds"], "BENCH_LATENCY_SECONDS", base.latencySeconds),
    throughputSeconds: num(values["throughput-seconds"], "BENCH_THROUGHPUT_SECONDS", base.throughputSeconds),
    warmupSeconds: num(values["warmup-seconds"], "BENCH_WARMUP_SECONDS", base.warmupSeconds),
    connections: num(values.connections, "BENCH_CONNECTIONS", base.connections, true),
    rounds: num(values.rounds, "BENCH_ROUNDS", base.rounds, true),
    targets,
    workloads,
    out: pick(values.out, "BENCH_OUT") ?? (quick ? `${repoBench}/out/quick` : repoBench),
  };
}

/** Seconds of measurement (excluding start-up and drains) for `sides` sides. */
export function estimateSeconds(s: BenchSettings, sides: number): number {
  const perSideWorkload =
    s.rounds * ((s.rates.length + s.loadFractions.length) * s.latencySeconds + s.throughputSeconds) +
    s.warmupSeconds;
  return perSideWorkload * sides * s.workloads.length;
}
