import { describe, expect, it } from "vitest";
import { Metrics } from "../../ext-service/src/telemetry/metrics.js";

describe("process metrics", () => {
  it("new-user trial B9: are named mcp_gateway_process_* and mcp_gateway_nodejs_*, never doubled", async () => {
    const text = await new Metrics().registry.metrics();
    expect(text).toMatch(/^mcp_gateway_process_cpu_user_seconds_total \d/m);
    expect(text).toMatch(/^mcp_gateway_nodejs_eventloop_lag_seconds \d/m);
    expect(text).not.toContain("process_process");
    const names = [...text.matchAll(/^# TYPE (\S+)/gm)].map((m) => m[1]!);
    expect(names.filter((n) => !n.startsWith("mcp_gateway_"))).toEqual([]);
  });
});

describe("metrics: per-request counters kept per label set and added when read", () => {
  it("reaches the counter on each read, every label set apart (values with any characters)", async () => {
    const m = new Metrics(false);
    m.countRequest("a\u0000b", "tools/call", "allow");
    m.countRequest("a", "\u0000b\u0000tools/call", "allow");
    m.countRequest("a\u0000b", "tools/call", "allow");
    m.countProtocolRequest("2026", "2026-07-28");
    const read = async () =>
      Object.fromEntries(
        (await m.requests.get()).values.map((v) => [`${v.labels.server}|${v.labels.method}`, v.value]),
      );
    expect(await read()).toEqual({ "a\u0000b|tools/call": 2, "a|\u0000b\u0000tools/call": 1 });
    // Read again with nothing new: nothing is added twice.
    expect(await read()).toEqual({ "a\u0000b|tools/call": 2, "a|\u0000b\u0000tools/call": 1 });
    m.countRequest("a", "\u0000b\u0000tools/call", "allow");
    expect(await read()).toEqual({ "a\u0000b|tools/call": 2, "a|\u0000b\u0000tools/call": 2 });
    expect((await m.protocolRequests.get()).values).toEqual([
      expect.objectContaining({ labels: { era: "2026", protocol_version: "2026-07-28" }, value: 1 }),
    ]);
    expect(await m.registry.metrics()).toContain('mcp_gateway_requests_total{server="a\u0000b"');
  });
});

describe("metrics: decision timings observed through a series found once", () => {
  // Every bucket, the bounds themselves, beyond the last bound, zero and a negative value, with
  // fractions whose sums round (the sum must be added in the same order as prom-client adds it).
  const values = [
    0,
    0.00001,
    0.0000123,
    0.000025,
    0.1,
    0.05,
    0.050000001,
    7.3,
    -1,
    0.0004999,
    0.0005,
    0.3e-5,
    0.001,
    0.0025,
    0.0049,
    0.0099,
    1 / 3,
    0.1 + 0.2,
  ];

  it("/metrics reads exactly as with prom-client's own observe, per phase, after a reset too", async () => {
    const ours = new Metrics(false);
    const theirs = new Metrics(false);
    const phases = ["admit", "request", "authz"];
    const fast = phases.map((phase) => ours.decisionTimer(phase));
    const plain = phases.map((phase) => theirs.decisionSeconds.labels({ phase }));
    const observeAll = (round: number) => {
      for (let i = 0; i < 200; i++) {
        const v = values[(i * 7 + round) % values.length]! * (1 + i / 1000);
        fast[i % 2]!.observe(v);
        plain[i % 2]!.observe(v);
      }
    };
    observeAll(0);
    expect(await ours.registry.metrics()).toBe(await theirs.registry.metrics());
    observeAll(1);
    fast[2]!.observe(0.002);
    plain[2]!.observe(0.002);
    const text = await ours.registry.metrics();
    expect(text).toBe(await theirs.registry.metrics());
    expect(text).toContain('mcp_gateway_decision_seconds_count{phase="admit"} 200');
    expect(text).toContain('mcp_gateway_decision_seconds_bucket{le="0.0025",phase="authz"} 1');
    // After a reset the series found before is no longer the histogram's: counting starts again.
    ours.decisionSeconds.reset();
    theirs.decisionSeconds.reset();
    observeAll(2);
    expect(await ours.registry.metrics()).toBe(await theirs.registry.metrics());
    expect(await ours.registry.metrics()).toContain('mcp_gateway_decision_seconds_count{phase="admit"} 100');
  });

  it("refuses a value that is not finite as prom-client does, and counts nothing for it", async () => {
    const m = new Metrics(false);
    const timer = m.decisionTimer("admit");
    timer.observe(0.001);
    for (const bad of [Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => timer.observe(bad)).toThrow(TypeError);
      expect(() => m.decisionSeconds.labels({ phase: "admit" }).observe(bad)).toThrow(TypeError);
    }
    timer.observe(0.001);
    expect(await m.registry.metrics()).toContain('mcp_gateway_decision_seconds_count{phase="admit"} 2');
  });

  it("adds to the series prom-client counts in: observations through either way land in one", async () => {
    const m = new Metrics(false);
    const timer = m.decisionTimer("response");
    timer.observe(0.00002);
    timer.observe(0.00002);
    m.decisionSeconds.labels({ phase: "response" }).observe(0.03);
    timer.observe(0.00002);
    const text = await m.registry.metrics();
    expect(text).toContain('mcp_gateway_decision_seconds_count{phase="response"} 4');
    expect(text).toContain('mcp_gateway_decision_seconds_bucket{le="0.000025",phase="response"} 3');
    expect(text).toContain('mcp_gateway_decision_seconds_bucket{le="0.01",phase="response"} 3');
    expect(text).toContain('mcp_gateway_decision_seconds_bucket{le="0.05",phase="response"} 4');
  });
});
