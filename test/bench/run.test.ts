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

describe("npm run bench -- --quick (direct target)", () => {
  it(
    "completes by itself and writes a table, results.json and results.svg",
    { timeout: 90_000 },
    async () => {
      const out = tempDir();
      const { code, stdout, stderr } = await run(["--quick", "--targets", "direct", "--out", out]);
      expect(stderr).not.toMatch(/bench: /);
      expect(code).toBe(0);

      const results = ResultsSchema.parse(JSON.parse(readFileSync(join(out, "results.json"), "utf8")));
      expect(results.settings).toMatchObject({ quick: true, rates: [100], rounds: 1, targets: ["direct"] });
      expect(results.sides).toEqual([
        {
          name: "direct",
          target: "direct",
          baseline: null,
          description: "client -> reference MCP server",
          status: "measured",
          reason: null,
        },
      ]);
      expect(results.latency.map((l) => l.workload)).toEqual([
        "call_small",
        "tools_list",
        "call_64k_json",
        "call_64k_sse",
      ]);
      for (const l of results.latency) {
        expect(l).toMatchObject({
          side: "direct",
          rate: 100,
          scheduled: 40,
          sent: 40,
          ok: 40,
          errors: 0,
          timedOut: 0,
        });
        expect(l.latencyMs.count).toBe(40);
        expect(l.latencyMs.p50).toBeGreaterThan(0);
      }
      for (const t of results.throughput) {
        expect(t).toMatchObject({ side: "direct", connections: 4, errors: 0, stuck: 0 });
        expect(t.perSecond).toBeGreaterThan(0);
      }
      expect(results.workloads.find((w) => w.id === "call_64k_json")?.responseBytes).toBeGreaterThan(65_536);
      expect(results.targets.every((t) => t.status === "pending")).toBe(true);

      expect(stdout).toMatch(/Latency in ms at a fixed request rate/);
      expect(stdout).toMatch(/^call_64k_sse\s+direct\s+100\s+40\s+0\s/m);
      expect(stdout).toMatch(/Throughput at saturation/);
      const svg = readFileSync(join(out, "results.svg"), "utf8");
      expect(svg.startsWith("<svg ")).toBe(true);
      expect(svg).toContain("tools/call, 64 KB result, SSE");
      expect(svg).toContain("<polyline");
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
