import { describe, expect, it } from "vitest";
import { UsageError, estimateSeconds, parseSettings, type BenchSettings } from "../../bench/options.js";
import { DEFAULT_WORKLOAD_IDS } from "../../bench/workloads.js";

const TARGETS = ["direct", "edge", "ext-service"];
const parse = (argv: string[], env: NodeJS.ProcessEnv = {}) =>
  parseSettings(argv, env, TARGETS, "/repo/bench") as BenchSettings;

describe("bench options", () => {
  it("defaults to every target and workload, written to bench/", () => {
    expect(parse([])).toEqual({
      quick: false,
      rates: [500],
      loadFractions: [0.25, 0.5],
      latencySeconds: 3,
      throughputSeconds: 2,
      warmupSeconds: 0.5,
      connections: 8,
      rounds: 3,
      targets: TARGETS,
      workloads: [...DEFAULT_WORKLOAD_IDS],
      out: "/repo/bench",
    });
  });

  it("stays under a quarter of an hour by default with all five sides, and quick runs take seconds", () => {
    expect(estimateSeconds(parse([]), 5)).toBeLessThan(900);
    expect(estimateSeconds(parse(["--quick"]), 1)).toBeLessThan(8);
  });

  it("takes latency at fractions of the measured capacity, each below 1", () => {
    expect(parse(["--load-fractions", "0.1,0.5"]).loadFractions).toEqual([0.1, 0.5]);
    expect(parse([], { BENCH_LOAD_FRACTIONS: "0.3" }).loadFractions).toEqual([0.3]);
    expect(() => parse(["--load-fractions", "1.2"])).toThrow(/not below 1/);
  });

  it("never lets a quick run overwrite the committed results", () => {
    expect(parse(["--quick"]).out).toBe("/repo/bench/out/quick");
    expect(parse([], { BENCH_QUICK: "1" })).toMatchObject({ quick: true, rounds: 2 });
  });

  it("reads environment variables, and a flag wins over its variable", () => {
    const env = { BENCH_RATES: "100, 400", BENCH_ROUNDS: "3", BENCH_TARGETS: "direct", BENCH_OUT: "/tmp/x" };
    expect(parse([], env)).toMatchObject({
      rates: [100, 400],
      rounds: 3,
      targets: ["direct"],
      out: "/tmp/x",
    });
    expect(parse(["--rates", "50", "--rounds", "1", "--workloads", "call_small"], env)).toMatchObject({
      rates: [50],
      rounds: 1,
      workloads: ["call_small"],
    });
  });

  it("rejects unknown targets, workloads and numbers that are not positive", () => {
    expect(() => parse(["--targets", "envoy"])).toThrow(UsageError);
    expect(() => parse(["--workloads", "call_huge"])).toThrow(/unknown workload 'call_huge'/);
    expect(() => parse(["--rates", "0"])).toThrow(/not a positive number/);
    expect(() => parse(["--rounds", "1.5"])).toThrow(/not a positive integer/);
    expect(() => parse([], { BENCH_CONNECTIONS: "many" })).toThrow(/BENCH_CONNECTIONS 'many'/);
    expect(() => parse(["--bogus"])).toThrow(/Unknown option/);
  });

  it("runs an optional target only when it is named", () => {
    const all = [...TARGETS, "bare-proxy"];
    const withOptional = (argv: string[]) =>
      parseSettings(argv, {}, all, "/repo/bench", TARGETS) as BenchSettings;
    expect(withOptional([]).targets).toEqual(TARGETS);
    expect(withOptional(["--targets", "direct,bare-proxy"]).targets).toEqual(["direct", "bare-proxy"]);
    expect(() => withOptional(["--targets", "bare"])).toThrow(/known: direct, edge, ext-service, bare-proxy/);
  });

  it("answers --help", () => {
    expect(parseSettings(["--help"], {}, TARGETS, "/repo/bench")).toBe("help");
  });
});
