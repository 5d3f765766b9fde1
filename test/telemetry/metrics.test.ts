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
