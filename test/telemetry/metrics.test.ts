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
