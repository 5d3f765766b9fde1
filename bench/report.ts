import type { BenchResults } from "./results.js";

/** The stdout summary: latency, throughput, comparisons and the budget. */

function fmt(n: number | null | undefined, digits = 3): string {
  if (n === null || n === undefined) return "-";
  return n.toFixed(digits);
}

function signed(n: number | null | undefined): string {
  if (n === null || n === undefined) return "-";
  return (n >= 0 ? "+" : "") + n.toFixed(3);
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
  out.push(
    "",
    "Latency in ms at a fixed request rate (open loop, from the scheduled send time); cpu: measured server process",
    table(
      [
        "workload",
        "side",
        "rate/s",
        "ok",
        "err",
        "p50",
        "p90",
        "p99",
        "max",
        "+p50",
        "+p99",
        "x p50",
        "cpu us/req",
      ],
      r.latency.map((l) => {
        const c = cmpFor(l.side, l.workload)?.latency.find((x) => x.rate === l.rate);
        return [
          l.workload,
          l.side,
          String(l.rate),
          String(l.ok),
          String(l.errors + l.timedOut),
          fmt(l.latencyMs.p50),
          fmt(l.latencyMs.p90),
          fmt(l.latencyMs.p99),
          fmt(l.latencyMs.max),
          signed(c?.addedMs.p50),
          signed(c?.addedMs.p99),
          fmt(c?.ratio.p50, 2),
          fmt(l.serverCpuUsPerRequest, 0),
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
    "",
    `Throughput at saturation (closed loop, conc concurrent requests, median of ${r.settings.rounds} round(s)); ` +
      "cores and req/cpu-s: the measured server process; gen cores: the load generator (near 1.00: it was the limit)",
    table(
      [
        "workload",
        "side",
        "conc",
        "req/s",
        "err",
        "p50 ms",
        "p99 ms",
        "x baseline",
        "cores",
        "req/cpu-s",
        "gen cores",
      ],
      r.throughput.map((t) => [
        t.workload,
        t.side,
        String(t.connections),
        t.perSecond === null ? "-" : String(t.perSecond),
        String(t.errors + t.stuck),
        fmt(t.latencyMs.p50),
        fmt(t.latencyMs.p99),
        fmt(cmpFor(t.side, t.workload)?.throughputRatio, 2),
        fmt(t.serverCores, 2),
        t.perCpuSecond === null ? "-" : String(t.perCpuSecond),
        fmt(t.clientCores, 2),
      ]),
    ),
    "",
    "Budget (issue 6), small tools/call",
    table(
      ["target", "side", "rate/s", "limit", "value", "status"],
      r.targets.map((t) => [
        t.description,
        t.side,
        t.rate === null ? "-" : String(t.rate),
        t.limit,
        t.value === null ? "-" : String(t.value),
        t.status,
      ]),
    ),
  );
  const errors = [...r.latency, ...r.throughput].filter((x) => x.firstError);
  for (const e of errors) out.push(`  errors on ${e.side} ${e.workload}: first: ${e.firstError}`);
  return out.join("\n") + "\n";
}
