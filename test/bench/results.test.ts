import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  ResultsSchema,
  checkTargets,
  compare,
  compareCpu,
  roundFigure,
  roundRatio,
  versus,
  type LatencyResult,
  type SideInfo,
  type ThroughputResult,
} from "../../bench/results.js";
import { summarize } from "../../bench/stats.js";

const side = (name: string, baseline: string | null, status: SideInfo["status"] = "measured"): SideInfo => ({
  name,
  target: name,
  baseline,
  description: name,
  status,
  reason: status === "measured" ? null : "why",
});

function lat(s: string, workload: string, rate: number, p50: number, p99: number): LatencyResult {
  const summary = summarize([p50, p99]);
  return {
    side: s,
    workload,
    rate,
    scheduled: 2,
    sent: 2,
    ok: 2,
    errors: 0,
    timedOut: 0,
    sendLagMs: summarize([0, 0]),
    latencyMs: { ...summary, p50, p90: p99, p99 },
    serviceMs: summary,
    serverCpuUsPerRequest: 100,
    spectrum: [],
    firstError: null,
  };
}

function tput(s: string, workload: string, perSecond: number, perCpuSecond = perSecond): ThroughputResult {
  return {
    side: s,
    workload,
    connections: 8,
    seconds: 2,
    ok: perSecond * 2,
    errors: 0,
    stuck: 0,
    perSecond,
    rounds: [perSecond],
    serverCpuUsPerRequest: Math.round(1e6 / perCpuSecond),
    serverCores: perSecond / perCpuSecond,
    perCpuSecond,
    clientCores: 0.5,
    latencyMs: summarize([1]),
    firstError: null,
  };
}

describe("comparisons", () => {
  const sides = [
    side("direct", null),
    side("edge", "direct"),
    side("ext-service", "noop", "skipped"),
    side("noop", null, "skipped"),
  ];
  const latency = [
    lat("direct", "call_small", 200, 0.4, 1.0),
    lat("edge", "call_small", 200, 0.9, 3.0),
    lat("direct", "tools_list", 200, 0.5, 1.0),
    lat("edge", "tools_list", 200, 2.0, 8.0),
  ];
  const throughput = [
    tput("direct", "call_small", 10_000),
    tput("edge", "call_small", 7_000),
    tput("direct", "tools_list", 8_000),
    tput("edge", "tools_list", 4_000),
  ];
  const comparisons = compare(sides, latency, throughput);

  it("compares each side with its baseline: added milliseconds and ratios", () => {
    expect(comparisons[0]!.latency[0]).toMatchObject({
      load: "200/s",
      p50: { side: 0.9, baseline: 0.4, difference: 0.5, ratio: 2.25 },
    });
    expect(comparisons).toMatchObject([
      {
        side: "edge",
        baseline: "direct",
        workload: "call_small",
        latency: [{ rate: 200, addedMs: { p50: 0.5, p90: 2, p99: 2 }, ratio: { p50: 2.25, p90: 3, p99: 3 } }],
        throughputRatio: 0.7,
      },
      {
        side: "edge",
        baseline: "direct",
        workload: "tools_list",
        latency: [{ rate: 200, addedMs: { p50: 1.5, p90: 7, p99: 7 }, ratio: { p50: 4, p90: 8, p99: 8 } }],
        throughputRatio: 0.5,
      },
    ]);
  });

  it("checks the budget on the small tools/call, pending for sides not measured", () => {
    const targets = checkTargets([200], comparisons, throughput).filter((t) => t.issue === 6);
    expect(targets.map((t) => [t.id, t.value, t.status])).toEqual([
      ["edge_added_p50", 0.5, "pass"],
      ["edge_added_p99", 2, "pass"],
      ["edge_throughput_ratio", 0.7, "pass"],
      ["ext_service_latency_ratio", null, "pending"],
      ["ext_service_decisions_per_second", null, "pending"],
    ]);
  });

  it("fails a target that is over budget", () => {
    const slow = compare(
      sides,
      [lat("direct", "call_small", 200, 0.4, 1), lat("edge", "call_small", 200, 1.6, 7)],
      [tput("direct", "call_small", 10_000), tput("edge", "call_small", 5_000)],
    );
    expect(
      checkTargets([200], slow, [])
        .slice(0, 3)
        .map((t) => t.status),
    ).toEqual(["fail", "fail", "fail"]);
  });

  it("evaluates ext-service against the do-nothing server, and its capacity per CPU-second", () => {
    const grpcSides = [side("ext-service", "noop"), side("noop", null)];
    const cmp = compare(
      grpcSides,
      [lat("noop", "call_small", 200, 0.3, 0.6), lat("ext-service", "call_small", 200, 0.42, 0.9)],
      [tput("noop", "call_small", 9_000), tput("ext-service", "call_small", 3_500)],
    );
    // The load generator reached 1,200 decisions/s; the ext-service used a third of a core for them.
    const targets = checkTargets([200], cmp, [tput("ext-service", "call_small", 1_200, 3_500)]);
    expect(targets.slice(3, 5).map((t) => [t.id, t.value, t.status])).toEqual([
      ["ext_service_latency_ratio", 1.4, "pass"],
      ["ext_service_decisions_per_second", 3_500, "pass"],
    ]);
  });

  it("calls a difference within the rounds' spread not distinguishable", () => {
    // 110 vs 100 us, but one side's rounds alone differ by 12 us: no difference can be claimed.
    expect(versus(110, 100, 12, 4)).toEqual({
      side: 110,
      baseline: 100,
      difference: 10,
      ratio: 1.1,
      spread: 12,
      distinguishable: false,
    });
    expect(versus(150, 100, 12, 4).distinguishable).toBe(true);
    expect(versus(null, 100, 1, 1).distinguishable).toBeNull();
    expect(roundFigure([3, 1, 2])).toEqual({ median: 2, spread: 2, rounds: [3, 1, 2] });
  });

  it("checks issue 16's targets: CPU against the bare proxy and do-nothing server, added latency at 500/s", () => {
    const sides = [
      side("direct", null),
      { ...side("edge", "direct"), cpuBaseline: "bare-proxy" },
      side("bare-proxy", "direct"),
      side("ext-service", "noop"),
      side("noop", null),
    ];
    const cpuRounds = (name: string, workload: string, us: number[]) => ({
      ...tput(name, workload, 1000),
      cpuUsRounds: roundFigure(us, 1),
    });
    const throughput = [
      cpuRounds("direct", "call_small", [20, 21, 22]),
      cpuRounds("edge", "call_small", [70, 72, 74]),
      cpuRounds("bare-proxy", "call_small", [40, 41, 42]),
      cpuRounds("ext-service", "call_small", [300, 330, 310]),
      cpuRounds("noop", "call_small", [290, 300, 320]),
      cpuRounds("edge", "call_64k_json", [1400, 1500, 1450]),
      cpuRounds("bare-proxy", "call_64k_json", [100, 100, 100]),
    ];
    const cpu = compareCpu(sides, throughput);
    expect(cpu.map((c) => [c.side, c.baseline, c.workload, c.cpuUs.ratio, c.cpuUs.distinguishable])).toEqual([
      ["edge", "bare-proxy", "call_small", 1.76, true],
      ["edge", "bare-proxy", "call_64k_json", 14.5, true],
      ["bare-proxy", "direct", "call_small", 1.95, true],
      ["ext-service", "noop", "call_small", 1.03, false],
    ]);
    const latency = [
      { ...lat("direct", "call_small", 500, 0.4, 1.0), load: "500/s" },
      { ...lat("edge", "call_small", 500, 0.8, 2.5), load: "500/s" },
    ];
    const targets = checkTargets([500], compare(sides, latency, throughput), throughput, cpu).filter(
      (t) => t.issue === 16,
    );
    expect(targets.map((t) => [t.id, t.value, t.status, t.note === null ? "" : "n.d."])).toEqual([
      ["edge_cpu_ratio", 1.76, "fail", ""],
      ["edge_added_p50_fast", 0.4, "pass", ""],
      ["edge_added_p99_fast", 1.5, "pass", ""],
      ["ext_service_cpu_ratio", 1.03, "pass", "n.d."],
      ["ext_service_latency_ratio_half", null, "pending", ""],
      ["edge_64k_json_added_cpu", 1350, "pass", ""],
      ["edge_64k_sse_added_cpu", null, "pending", ""],
      ["ext_service_64k_json_added_cpu", null, "pending", ""],
      ["ext_service_64k_sse_added_cpu", null, "pending", ""],
    ]);
  });

  it("takes the throughput ratio round by round, so drift between rounds cancels", () => {
    // The machine got twice as busy in round 2: both sides halved, the ratio did not move.
    expect(roundRatio([7_000, 3_500], [10_000, 5_000])).toBe(0.7);
    expect(roundRatio([6_000, 3_600, 4_000], [10_000, 6_000, 5_000])).toBe(0.6);
    expect(roundRatio([1], [0])).toBeNull();
  });

  it("does not compare with a baseline that was not measured", () => {
    expect(compare([side("edge", "direct"), side("direct", null, "failed")], latency, throughput)).toEqual(
      [],
    );
  });
});

describe("bench/results.json (the committed latest run)", () => {
  const committed = JSON.parse(
    readFileSync(new URL("../../bench/results.json", import.meta.url), "utf8"),
  ) as unknown;

  it("has the documented shape", () => {
    const parsed = ResultsSchema.safeParse(committed);
    expect(parsed.success ? [] : parsed.error.issues).toEqual([]);
  });

  it("is a full run, not a quick smoke run, with the direct side measured on every workload", () => {
    const r = ResultsSchema.parse(committed);
    expect(r.settings.quick).toBe(false);
    expect(r.sides.find((s) => s.name === "direct")?.status).toBe("measured");
    // A row per load (fixed rates and fractions of capacity) for every workload.
    expect(
      [...new Set(r.latency.filter((l) => l.side === "direct" && l.ok > 0).map((l) => l.workload))].sort(),
    ).toEqual([...r.settings.workloads].sort());
    for (const l of r.latency) expect(l.ok + l.errors + l.timedOut).toBe(l.sent);
  });

  it("rejects a results file with a missing field", () => {
    const broken = { ...(committed as Record<string, unknown>) };
    delete broken.machine;
    expect(ResultsSchema.safeParse(broken).success).toBe(false);
  });
});
