import { MAX_LOAD } from "./options.js";
import type { BenchResults, RoundFigure, VersusBaseline } from "./results.js";

/** The stdout summary: latency, throughput, comparisons and the budget. */

function fmt(n: number | null | undefined, digits = 3): string {
  if (n === null || n === undefined) return "-";
  return n.toFixed(digits);
}

function signed(n: number | null | undefined, digits = 3): string {
  if (n === null || n === undefined) return "-";
  return (n >= 0 ? "+" : "") + n.toFixed(digits);
}

/** Printed instead of a difference that the spread over rounds covers. */
export const NOT_DISTINGUISHABLE = "not distinguishable";

/** Why a latency row has no figure: its rate was over the side's capacity, or too low to send anything. */
function skippedBecause(l: BenchResults["latency"][number]): string {
  if (l.errors + l.timedOut > 0) return "no answer";
  // An over-capacity round is skipped before a rate is chosen; a too-low one ran and sent nothing.
  if ((l.perRound?.rate.rounds.length ?? 0) > 0) return "skipped: rate too low for the round's length";
  return `skipped: over ${Math.round(MAX_LOAD * 100)}% of capacity (its own or a compared side's)`;
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join("  ")
      .trimEnd();
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}

export function renderReport(r: BenchResults): string {
  const out: string[] = [];
  const m = r.machine;
  out.push(
    `mcp-gateway bench ${r.finishedAt} (${r.durationSeconds.toFixed(0)} s): ${m.cpus} x ${m.cpuModel}, Node ${m.node}` +
      `${r.settings.quick ? ", QUICK smoke run: numbers are not meaningful" : ""}`,
  );
  for (const s of r.sides) {
    if (s.status !== "measured") out.push(`  ${s.name}: ${s.status}: ${s.reason ?? ""}`);
  }

  const cmpFor = (side: string, workload: string) =>
    r.comparisons.find((c) => c.side === side && c.workload === workload);
  const rounds = r.settings.rounds;
  /** A difference from the baseline, or the words when the rounds' spread covers it. */
  const against = (v: VersusBaseline | undefined, text: string) =>
    v?.distinguishable === false ? NOT_DISTINGUISHABLE : text;
  const spread = (f: RoundFigure | undefined, digits: number) =>
    f?.spread === null || f?.spread === undefined ? "-" : `±${fmt(f.spread / 2, digits)}`;

  out.push(
    "",
    `CPU per request of the measured server process at saturation (us; median of ${rounds} round(s), ` +
      "± half the spread: max - min over rounds). vs: the side it is compared with " +
      "(the edge: the bare proxy; the ext-service: the do-nothing server; the broker sides: the edge)",
    table(
      ["workload", "side", "cpu us/req", "spread", "vs", "vs us/req", "added us", "x vs"],
      r.throughput.map((t) => {
        const c = r.cpuComparisons?.find((x) => x.side === t.side && x.workload === t.workload);
        return [
          t.workload,
          t.side,
          fmt(t.cpuUsRounds?.median ?? t.serverCpuUsPerRequest, 1),
          spread(t.cpuUsRounds, 1),
          c?.baseline ?? "",
          c ? fmt(c.cpuUs.baseline, 1) : "",
          c ? against(c.cpuUs, signed(c.cpuUs.difference, 1)) : "",
          c ? against(c.cpuUs, fmt(c.cpuUs.ratio, 2)) : "",
        ];
      }),
    ),
    "",
    `Capacity at saturation (closed loop, conc concurrent requests; median of ${rounds} round(s)); ` +
      "cores and req/cpu-s: the measured server process; gen cores: the load generator (near 1.00: it was the limit)",
    table(
      ["workload", "side", "conc", "req/s", "spread", "err", "x baseline", "cores", "req/cpu-s", "gen cores"],
      r.throughput.map((t) => [
        t.workload,
        t.side,
        String(t.connections),
        t.perSecond === null ? "-" : String(t.perSecond),
        spread(t.perSecondRounds, 0),
        String(t.errors + t.stuck),
        fmt(cmpFor(t.side, t.workload)?.throughputRatio, 2),
        fmt(t.serverCores, 2),
        t.perCpuSecond === null ? "-" : String(t.perCpuSecond),
        fmt(t.clientCores, 2),
      ]),
    ),
    "",
    "Latency in ms (open loop, from the scheduled send time) at fixed rates and at fractions of the capacity " +
      "of the slowest side compared (its baseline runs at the same rate); p50 and p99 over all rounds' samples, " +
      "± half their spread over rounds; added: against the baseline (the edge: direct; the ext-service: the do-nothing server; " +
      "the broker sides: the edge's /mcp/<server>); " +
      "gc/1k: the server's garbage-collection pauses per 1,000 requests, gc max ms: the longest",
    table(
      [
        "workload",
        "side",
        "load",
        "rate/s",
        "ok",
        "err",
        "p50",
        "±",
        "p99",
        "±",
        "max",
        "+p50",
        "+p99",
        "x p50",
        "cpu us/req",
        "gc/1k",
        "gc max ms",
      ],
      r.latency.map((l) => {
        const load = l.load ?? `${l.rate}/s`;
        const c = cmpFor(l.side, l.workload)?.latency.find((x) => (x.load ?? `${x.rate}/s`) === load);
        const measured = l.latencyMs.count > 0;
        return [
          l.workload,
          l.side,
          load,
          measured ? String(l.rate) : "-",
          measured ? String(l.ok) : skippedBecause(l),
          measured ? String(l.errors + l.timedOut) : "",
          fmt(l.latencyMs.p50),
          spread(l.perRound?.p50, 3),
          fmt(l.latencyMs.p99),
          spread(l.perRound?.p99, 3),
          fmt(l.latencyMs.max),
          c ? against(c.p50, signed(c.addedMs.p50)) : "",
          c ? against(c.p99, signed(c.addedMs.p99)) : "",
          c ? against(c.p50, fmt(c.ratio.p50, 2)) : "",
          fmt(l.perRound?.cpuUs.median ?? l.serverCpuUsPerRequest, 0),
          measured ? fmt(l.gc?.perThousand, 1) : "",
          measured ? fmt(l.gc?.maxMs, 2) : "",
        ];
      }),
    ),
    (() => {
      const lags = r.latency.filter((l) => l.sendLagMs.p50 !== null);
      if (lags.length === 0) return "";
      const p50 = Math.max(...lags.map((l) => l.sendLagMs.p50!));
      const p99 = Math.max(...lags.map((l) => l.sendLagMs.p99!));
      return `(includes the load generator's own send lag, the same for every side: p50 up to ${fmt(p50)} ms, p99 up to ${fmt(p99)} ms)`;
    })(),
  );
  for (const issue of [16, 6]) {
    const rows = r.targets.filter((t) => (t.issue ?? 6) === issue);
    if (rows.length === 0) continue;
    out.push(
      "",
      issue === 16 ? "Targets (issue 16)" : "Budget (issue 6), small tools/call",
      table(
        ["target", "side", "workload", "rate/s", "limit", "value", "status"],
        rows.map((t) => [
          t.description,
          t.side,
          t.workload,
          t.rate === null ? "-" : String(t.rate),
          t.limit,
          t.value === null ? "-" : String(t.value),
          t.status + (t.note ? ` (${NOT_DISTINGUISHABLE})` : ""),
        ]),
      ),
    );
  }
  const errors = [...r.latency, ...r.throughput].filter((x) => x.firstError);
  for (const e of errors) out.push(`  errors on ${e.side} ${e.workload}: first: ${e.firstError}`);
  return out.join("\n") + "\n";
}
