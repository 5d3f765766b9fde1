import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HOT_PATHS, HOT_PATH_IDS, HotPathFixture } from "../../bench/hot-paths.js";
import {
  compareInstructions,
  turbofanFromAnnotation,
  type InstructionResults,
} from "../../bench/instructions-compare.js";
import { prepareWorkdir, type Workdir } from "../../bench/setup.js";

function results(counts: Record<string, [number, number]>, node = "v20.20.2"): InstructionResults {
  return {
    schema: "mcp-gateway-instructions/1",
    node,
    valgrind: "valgrind-3.19.0",
    nodeFlags: ["--predictable"],
    commit: null,
    paths: Object.fromEntries(
      Object.entries(counts).map(([id, [instructions, spread]]) => [
        id,
        { title: id, iterations: 10, warmup: 30, instructions, spread },
      ]),
    ),
  };
}

describe("instruction counts against the baseline", () => {
  const baseline = results({ a: [1_000_000, 2_000], b: [500_000, 100], c: [200_000, 100] });

  it("fails a path over the threshold, and only that one", () => {
    const current = results({ a: [1_050_000, 2_000], b: [490_000, 100], c: [200_500, 100] });
    const { text, failed } = compareInstructions(current, baseline, 3);
    expect(failed).toEqual(["a"]);
    expect(text).toMatch(/^a\s+1,050,000\s+2,000\s+1,000,000\s+\+5\.00%\s+REGRESSED\s+-$/m);
    expect(text).toMatch(/^b\s+490,000\s+100\s+500,000\s+-2\.00%\s+better\s+-$/m);
    expect(text).toMatch(/^c\s+200,500\s+100\s+200,000\s+\+0\.25%\s+same\s+-$/m);
  });

  it("calls a change within the repeats' spread the same", () => {
    const noisy = results({ a: [1_040_000, 50_000] });
    expect(compareInstructions(noisy, baseline, 3).failed).toEqual([]);
  });

  it("does not fail counts from another Node version, and says why", () => {
    const other = results({ a: [2_000_000, 0] }, "v22.1.0");
    const { text, failed } = compareInstructions(other, baseline, 3);
    expect(failed).toEqual([]);
    expect(text).toMatch(/not comparable, nothing fails/);
  });

  it("sets each gRPC path against its do-nothing twin", () => {
    const current = results({ grpc_small: [7_500_000, 0], grpc_small_noop: [5_000_000, 0], a: [1, 0] });
    const { text } = compareInstructions(current, undefined, 3);
    // The allocation columns follow (no allocation figures here: `-`).
    expect(text).toMatch(/^grpc_small\s+7,500,000\s+5,000,000\s+2,500,000\s+1\.50\s+-\s+-\s+-$/m);
    // Only paths with a twin are in the ratio table.
    const ratios = text.slice(text.indexOf("gRPC path"));
    expect(ratios).toMatch(/x do-nothing/);
    expect(ratios).not.toMatch(/^a\s/m);
  });

  it("reads TurboFan's compiles from callgrind_annotate's inclusive listing", () => {
    // Lines as callgrind_annotate --inclusive=yes prints them (node v20.20.2, valgrind 3.19).
    const annotation = [
      "260,853,528 (100.0%)  PROGRAM TOTALS",
      " 94,787,348 (36.34%)  ???:v8::internal::Runtime_CompileOptimized(int, unsigned long*, v8::internal::Isolate*) [/usr/bin/node]",
      " 94,785,224 (36.34%)  ???:v8::internal::Compiler::CompileOptimized(v8::internal::Isolate*, ...) [/usr/bin/node]",
      "  1,000,000 ( 0.38%)  ???:v8::internal::Runtime_CompileOptimizedOSR(int, unsigned long*, v8::internal::Isolate*) [/usr/bin/node]",
      " 58,596,061 (22.46%)  ???:Builtins_CompileLazy [/usr/bin/node]",
    ].join("\n");
    expect(turbofanFromAnnotation(annotation)).toBe(95_787_348);
    expect(turbofanFromAnnotation("1,000 (100.0%)  PROGRAM TOTALS")).toBe(0);
  });

  it("prints the counts without TurboFan, each against its twin", () => {
    const current = results({ edge_small: [1_700_000, 0], edge_small_bare: [860_000, 0] });
    current.paths.edge_small!.turbofan = 600_000;
    current.paths.edge_small_bare!.turbofan = 250_000;
    const { text } = compareInstructions(current, undefined, 3);
    expect(text).toMatch(/^edge_small\s+1,700,000\s+600,000\s+35\.3%\s+1,100,000\s+1\.80$/m);
    expect(text).toMatch(/^edge_small_bare\s+860,000\s+250,000\s+29\.1%\s+610,000\s+-$/m);
  });

  it("has a committed baseline for every hot path", () => {
    const committed = JSON.parse(
      readFileSync(new URL("../../bench/instructions-baseline.json", import.meta.url), "utf8"),
    ) as InstructionResults;
    expect(Object.keys(committed.paths).sort()).toEqual([...HOT_PATH_IDS].sort());
    for (const p of Object.values(committed.paths)) expect(p.instructions).toBeGreaterThan(0);
  });
});

describe("the hot paths", () => {
  let work: Workdir;
  beforeAll(async () => {
    work = await prepareWorkdir("http://127.0.0.1:9");
  });
  afterAll(() => work?.remove());

  it(
    "each run the bench workload's path to its normal outcome, repeatably",
    { timeout: 120_000 },
    async () => {
      // The paths that share a process in one fixture, each own-process path (an HTTP proxy
      // in front of the reference server) in a fixture of its own, as the harness runs them.
      const groups = [
        HOT_PATH_IDS.filter((id) => !HOT_PATHS[id].ownProcess),
        ...HOT_PATH_IDS.filter((id) => HOT_PATHS[id].ownProcess).map((id) => [id]),
      ];
      for (const ids of groups) {
        const fixture = new HotPathFixture(work.configFile, work.token);
        try {
          for (const id of ids) {
            expect(HOT_PATHS[id].iterations).toBeGreaterThan(0);
            const op = await fixture.operation(id);
            // Each operation throws when its outcome is not the normal one (refused, rewritten,
            // dropped; a gRPC exchange answered by anyone but the upstream, or changed).
            for (let i = 0; i < 3; i++) await op();
          }
        } finally {
          await fixture.close();
        }
      }
    },
  );

  it("fail when the outcome changes: a token the gateway does not accept", async () => {
    const fixture = new HotPathFixture(work.configFile, "not-a-token");
    await expect(fixture.operation("decision_small")).rejects.toThrow(/not admitted: token_/);
  });
});
