import { describe, expect, it } from "vitest";
import { Upstreams } from "../../ext-service/src/edge/upstream.js";
import { Metrics } from "../../ext-service/src/telemetry/metrics.js";

const OPTIONS = { breakerFailures: 3, breakerCooldownMs: 1000, connectTimeoutMs: 1000 };

describe("Upstreams.update (config reload)", () => {
  it("keeps unchanged servers' groups, replaces changed ones, drops removed ones and their metrics", async () => {
    const metrics = new Metrics(false);
    const upstreams = new Upstreams(
      [
        { name: "kept", upstreams: ["http://127.0.0.1:1/mcp"] },
        { name: "moved", upstreams: ["http://127.0.0.1:2/mcp", "http://127.0.0.1:3/mcp"] },
        { name: "gone", upstreams: ["http://127.0.0.1:4/mcp"] },
      ],
      OPTIONS,
      metrics,
    );
    const kept = upstreams.group("kept");
    const moved = upstreams.group("moved");
    const gone = upstreams.group("gone")!;

    upstreams.update([
      { name: "kept", upstreams: ["http://127.0.0.1:1/mcp"] },
      { name: "moved", upstreams: ["http://127.0.0.1:3/mcp"] },
      { name: "added", upstreams: ["http://127.0.0.1:5/mcp"] },
    ]);

    expect(upstreams.group("kept")).toBe(kept);
    expect(upstreams.group("moved")).not.toBe(moved);
    expect(upstreams.group("moved")!.endpoints.map((e) => e.label)).toEqual(["http://127.0.0.1:3/mcp"]);
    expect(upstreams.group("added")!.endpoints).toHaveLength(1);
    expect(upstreams.group("gone")).toBeUndefined();
    expect(gone.endpoints[0]!.pool.closed).toBe(true);
    const text = await metrics.registry.metrics();
    expect(text).toContain('mcp_gateway_breaker_open{server="moved",upstream="http://127.0.0.1:3/mcp"} 0');
    expect(text).toContain('mcp_gateway_breaker_open{server="added",upstream="http://127.0.0.1:5/mcp"} 0');
    expect(text).not.toContain('server="gone"');
    expect(text).not.toContain("127.0.0.1:2/mcp");
    await upstreams.close();
  });
});
