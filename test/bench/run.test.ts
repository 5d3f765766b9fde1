import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { runBench } from "../../bench/harness.js";
import { parseSettings, type BenchSettings } from "../../bench/options.js";
import { ResultsSchema } from "../../bench/results.js";
import { describeModule, findModule, missingModules } from "../../bench/targets/support.js";
import type { Target } from "../../bench/targets/types.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const dirs: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), "bench-test-"));
  dirs.push(d);
  return d;
};

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ["--import", "tsx", "bench/run.ts", ...args],
      { cwd: ROOT, timeout: 90_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

describe("npm run bench -- --quick", () => {
  it(
    "completes by itself and writes the tables (CPU, capacity, latency at rates and fractions), results.json and results.svg",
    { timeout: 120_000 },
    async () => {
      const out = tempDir();
      const { code, stdout, stderr } = await run([
        "--quick",
        "--targets",
        "direct,bare-proxy",
        "--workloads",
        "call_small,call_64k_sse",
        "--out",
        out,
      ]);
      expect(stderr).not.toMatch(/bench: /);
      expect(code).toBe(0);

      const results = ResultsSchema.parse(JSON.parse(readFileSync(join(out, "results.json"), "utf8")));
      expect(results.schema).toBe("mcp-gateway-bench/2");
      expect(results.settings).toMatchObject({
        quick: true,
        rates: [100],
        loadFractions: [0.25, 0.5],
        rounds: 2,
        targets: ["direct", "bare-proxy"],
      });
      expect(results.sides.map((s) => [s.name, s.baseline, s.status])).toEqual([
        ["direct", null, "measured"],
        ["bare-proxy", "direct", "measured"],
      ]);
      // Every side, workload and load has a row; a load is a fixed rate or a fraction of capacity.
      expect(results.latency.map((l) => `${l.workload} ${l.side} ${l.load}`).sort()).toEqual(
        ["call_small", "call_64k_sse"]
          .flatMap((w) =>
            ["direct", "bare-proxy"].flatMap((s) => ["100/s", "25%", "50%"].map((l) => `${w} ${s} ${l}`)),
          )
          .sort(),
      );
      for (const l of results.latency) {
        expect(l.errors + l.timedOut).toBe(0);
        expect(l.perRound!.p50.rounds.length + l.skippedRounds!).toBe(2);
        // The server's GC pauses, from its own process (a count and the longest pause).
        expect(l.gc!.maxMs).toBeGreaterThanOrEqual(0);
        if (l.ok > 0) expect(l.gc!.perThousand).toBeGreaterThanOrEqual(0);
        if (l.fraction !== null) {
          expect(l.perRound!.rate.rounds.length).toBe(2);
          // The baseline runs at the rate of the slowest side it is compared with, in each round.
          const peer = results.latency.find(
            (x) => x.workload === l.workload && x.load === l.load && x.side !== l.side,
          )!;
          expect(peer.perRound!.rate.rounds).toEqual(l.perRound!.rate.rounds);
        }
      }
      for (const t of results.throughput) {
        expect(t).toMatchObject({ connections: 4, errors: 0, stuck: 0 });
        expect(t.perSecondRounds!.rounds).toHaveLength(2);
        expect(t.cpuUsRounds!.rounds).toHaveLength(2);
      }
      expect(results.cpuComparisons!.map((c) => [c.side, c.baseline, c.workload])).toEqual([
        ["bare-proxy", "direct", "call_small"],
        ["bare-proxy", "direct", "call_64k_sse"],
      ]);
      for (const c of results.cpuComparisons!) expect(typeof c.cpuUs.distinguishable).toBe("boolean");
      expect(results.targets.filter((t) => t.issue === 16).every((t) => t.status === "pending")).toBe(true);

      expect(stdout).toMatch(/^CPU per request of the measured server process at saturation/m);
      expect(stdout).toMatch(/^workload\s+side\s+cpu us\/req\s+spread\s+vs\s+vs us\/req\s+added us\s+x vs$/m);
      expect(stdout).toMatch(/^Capacity at saturation/m);
      expect(stdout).toMatch(/^workload\s+side\s+conc\s+req\/s\s+spread\s+err\s+x baseline/m);
      expect(stdout).toMatch(/^Latency in ms/m);
      expect(stdout).toMatch(
        /^workload\s+side\s+load\s+rate\/s\s+ok\s+err\s+p50\s+±\s+p99\s+±\s+max\s+\+p50\s+\+p99/m,
      );
      expect(stdout).toMatch(/\s+cpu us\/req\s+gc\/1k\s+gc max ms$/m);
      expect(stdout).toMatch(/^call_64k_sse\s+bare-proxy\s+50%\s/m);
      expect(stdout).toMatch(/^Targets \(issue 16\)/m);
      const svg = readFileSync(join(out, "results.svg"), "utf8");
      expect(svg.startsWith("<svg ")).toBe(true);
      expect(svg).toContain("tools/call, 64 KB result, SSE");
      expect(svg).toContain("<polyline");
    },
  );

  it(
    "measures the aggregated endpoint against the edge's /mcp/<server> in the same run (--targets edge,broker)",
    { timeout: 120_000 },
    async () => {
      const out = tempDir();
      const { code, stderr } = await run([
        "--quick",
        "--targets",
        "edge,broker",
        "--workloads",
        "call_small,tools_list",
        "--out",
        out,
      ]);
      expect(stderr).not.toMatch(/bench: |wrong answer|failed to start/);
      expect(code).toBe(0);
      const results = ResultsSchema.parse(JSON.parse(readFileSync(join(out, "results.json"), "utf8")));
      expect(results.sides.map((s) => [s.name, s.baseline, s.status])).toEqual([
        ["edge", "direct", "measured"],
        ["broker", "edge", "measured"],
      ]);
      // Every answer was the workload's own (prefixed names, through the session), checked in full
      // once and by length after: no request failed.
      for (const t of results.throughput) expect(t.errors + t.stuck).toBe(0);
      expect(
        results.cpuComparisons!.filter((c) => c.side === "broker").map((c) => [c.baseline, c.workload]),
      ).toEqual([
        ["edge", "call_small"],
        ["edge", "tools_list"],
      ]);
      expect(results.comparisons.filter((c) => c.side === "broker").map((c) => c.workload)).toEqual([
        "call_small",
        "tools_list",
      ]);
    },
  );

  it("exits 2 with the usage on a bad option", { timeout: 30_000 }, async () => {
    const { code, stderr } = await run(["--rates", "fast"]);
    expect(code).toBe(2);
    expect(stderr).toMatch(/rate 'fast' is not a positive number/);
    expect(stderr).toMatch(/Usage: npm run bench/);
  });
});

describe("targets whose modules are not in the tree", () => {
  const absent = new URL("../../bench/targets/not-here", import.meta.url);

  it("are found or reported by path", () => {
    expect(findModule(new URL("../../bench/targets/direct", import.meta.url))?.pathname).toMatch(
      /direct\.ts$/,
    );
    expect(findModule(absent)).toBeUndefined();
    expect(describeModule(absent)).toBe("bench/targets/not-here.{ts,js}");
    expect(missingModules(absent)).toBe("not in this tree yet: bench/targets/not-here.{ts,js}");
  });

  it("are skipped with a clear line, listed as skipped in the results", { timeout: 30_000 }, async () => {
    const missing: Target = {
      name: "future",
      sides: [{ name: "future", baseline: "direct", description: "a side from a later merge" }],
      unavailable: () => missingModules(absent),
      start: () => Promise.reject(new Error("must not start")),
    };
    const out = tempDir();
    const settings = parseSettings(["--quick", "--out", out], {}, ["future"], out) as BenchSettings;
    const lines: string[] = [];
    let printed = "";
    const code = await runBench({
      settings,
      command: "test",
      targets: [missing],
      log: (l) => lines.push(l),
      print: (t) => (printed += t),
    });
    expect(code).toBe(0);
    expect(lines).toContain("future: skipped: not in this tree yet: bench/targets/not-here.{ts,js}");
    const results = ResultsSchema.parse(JSON.parse(readFileSync(join(out, "results.json"), "utf8")));
    expect(results.sides).toEqual([
      {
        name: "future",
        target: "future",
        baseline: "direct",
        description: "a side from a later merge",
        status: "skipped",
        reason: "not in this tree yet: bench/targets/not-here.{ts,js}",
      },
    ]);
    expect(results.latency).toEqual([]);
    expect(printed).toMatch(/future: skipped: not in this tree yet/);
  });

  it("fail the run when their modules exist but they cannot start", { timeout: 30_000 }, async () => {
    const broken: Target = {
      name: "broken",
      sides: [{ name: "broken", baseline: undefined, description: "starts badly" }],
      unavailable: () => undefined,
      start: () => Promise.reject(new Error("port in use")),
    };
    const out = tempDir();
    const settings = parseSettings(["--quick", "--out", out], {}, ["broken"], out) as BenchSettings;
    const lines: string[] = [];
    const code = await runBench({
      settings,
      command: "test",
      targets: [broken],
      log: (l) => lines.push(l),
      print: () => undefined,
    });
    expect(code).toBe(1);
    expect(lines).toContain("broken: failed to start: port in use");
  });
});
