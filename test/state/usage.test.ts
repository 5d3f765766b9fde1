import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RegistrySchema } from "../../ext-service/src/config/schema.js";
import { MemoryStore } from "../../ext-service/src/state/memory.js";
import { RedisStore } from "../../ext-service/src/state/redis.js";
import type { StateStore } from "../../ext-service/src/state/store.js";
import { ToolUsage, formatUsageReport, usageReport, windowDays } from "../../ext-service/src/state/usage.js";
import { runCli } from "../config/cli-capture.js";
import { fakeUpstream, httpCall, MCP_HEADERS, readJsonBody, startGateway, waitFor } from "../e2e/harness.js";
import { describeWithRedis, startRedis, type TestRedis } from "./redis-server.js";

/**
 * Tool usage for the registry sweep: counted per day in the state store (memory or Redis), read
 * back as the report `mcp-gateway registry usage` prints; and the per-agent, per-tool metric.
 */

const DAY = 86_400_000;
const NOW = Date.parse("2026-12-03T12:00:00Z");

const REGISTRY = RegistrySchema.parse({
  version: "t",
  servers: [
    {
      name: "kb",
      upstreams: ["http://127.0.0.1:1/mcp"],
      tools: [
        { name: "search", owner: "search-team" },
        { name: "get_article" },
        { name: "export", deprecated: "2026-06-01" },
        { name: "summarise" },
      ],
    },
    { name: "legacy", upstreams: ["http://127.0.0.1:2/mcp"], tools: [{ name: "old" }] },
  ],
});

async function settle(): Promise<void> {
  // record() does not wait for the store; give its writes a moment.
  await new Promise((r) => setTimeout(r, 200));
}

function usageContract(open: () => Promise<StateStore>) {
  let store: StateStore;
  beforeAll(async () => {
    store = await open();
  });
  afterAll(() => store?.close());

  it("reports unused, rare, deprecated and active tools and idle servers over the window", async () => {
    const usage = new ToolUsage(store);
    for (let i = 0; i < 7; i++) usage.record("kb", ["search"], NOW - i * 3_600_000);
    usage.record("kb", ["get_article"], NOW - 10 * DAY);
    usage.record("kb", ["export"], NOW - 2 * DAY);
    // Outside a 90-day window: not counted, but still the last use.
    usage.record("kb", ["summarise"], NOW - 120 * DAY);
    // A request with no tools/call (tools/list) counts for the server only.
    usage.record("kb", [], NOW - DAY);
    await settle();
    const report = await usageReport(REGISTRY, store, { now: NOW, sinceMs: 90 * DAY, rareBelow: 5 });
    const byTool = Object.fromEntries(report.tools.map((t) => [`${t.server}/${t.tool}`, t]));
    expect(byTool["kb/search"]).toMatchObject({
      calls: 7,
      status: "active",
      owner: "search-team",
      lastUsed: new Date(NOW).toISOString(),
    });
    expect(byTool["kb/get_article"]).toMatchObject({ calls: 1, status: "rare" });
    expect(byTool["kb/export"]).toMatchObject({ calls: 1, status: "deprecated", deprecated: "2026-06-01" });
    expect(byTool["kb/summarise"]).toMatchObject({
      calls: 0,
      status: "unused",
      lastUsed: new Date(NOW - 120 * DAY).toISOString(),
    });
    expect(byTool["legacy/old"]).toMatchObject({ calls: 0, status: "unused", lastUsed: null });
    expect(report.servers).toEqual([
      { server: "kb", requests: 10, noTraffic: false },
      { server: "legacy", requests: 0, noTraffic: true },
    ]);
    expect(report.summary).toEqual({
      unused: 2,
      rare: 1,
      deprecated: 1,
      active: 1,
      serversWithoutTraffic: 1,
    });
    expect(report.windowDays).toBe(90);
    expect(report.since).toBe("2026-09-05");

    const text = formatUsageReport(report);
    expect(text).toMatch(/Past their deprecation date[^\n]*:\n {2}kb\/export +1 calls/);
    expect(text).toMatch(/Never used in the window:\n {2}kb\/summarise +0 calls {2}last 2026-08-05/);
    expect(text).toMatch(/Servers with no traffic in the window:\n {2}legacy/);

    // A longer window takes the old call in.
    const year = await usageReport(REGISTRY, store, { now: NOW, sinceMs: 200 * DAY, rareBelow: 5 });
    expect(year.tools.find((t) => t.tool === "summarise")).toMatchObject({ calls: 1, status: "rare" });
  });
}

describe("windowDays", () => {
  it("lists the UTC days of the window, today first", () => {
    expect(windowDays(NOW, 3 * DAY)).toEqual(["2026-12-03", "2026-12-02", "2026-12-01"]);
    expect(windowDays(NOW, 3_600_000)).toEqual(["2026-12-03"]);
    expect(windowDays(NOW, 1000 * DAY)).toHaveLength(400);
  });
});

describe("tool usage in memory", () => {
  usageContract(() => Promise.resolve(new MemoryStore(() => NOW)));
});

describeWithRedis("tool usage on Redis", () => {
  let redis: TestRedis;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(() => redis?.close());

  describe("the store contract", () => {
    usageContract(async () => {
      const store = new RedisStore({
        url: redis.url,
        keyPrefix: "usage-test:",
        connectTimeoutMs: 1_000,
        commandTimeoutMs: 1_000,
      });
      await store.waitUntilAvailable(5_000);
      return store;
    });
  });

  it("an edge on Redis counts its calls, and `registry usage` reads them with bounded metrics", async () => {
    const upstream = await fakeUpstream((req, res) => {
      void readJsonBody(req).then((body) => {
        const id = (body as { id: number }).id;
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ jsonrpc: "2.0", id, result: { content: [] } }));
      });
    });
    const gw = await startGateway({
      servers: [
        { name: "ops", upstreams: [upstream.url], tools: [{ name: "status" }, { name: "restart" }] },
        { name: "idle", upstreams: [upstream.url], tools: [{ name: "noop" }] },
      ],
      security: { pins: { verifyBeforeCall: false } },
      config: { state: { store: "redis", redis: { url: redis.url, keyPrefix: `edge${Date.now()}:` } } },
    });
    try {
      await waitFor(() => gw.edge.ready(), 5_000, "edge ready");
      const call = async (agent: string, name: string) =>
        httpCall(gw.url("ops"), {
          headers: { ...MCP_HEADERS, authorization: `Bearer ${await gw.token(agent)}` },
          body: JSON.stringify({
            jsonrpc: "2.0",
            id: 1,
            method: "tools/call",
            params: { name, arguments: {} },
          }),
        });
      for (let i = 0; i < 3; i++) expect((await call("tester", "status")).status).toBe(200);
      // Not configured: counted as `other`, and its denial of an unregistered tool as `other` too.
      await call("stranger", "status");
      await call("tester", "nonexistent");
      await settle();

      const out = await runCli(["registry", "usage", "--config", gw.configFile, "--since", "7d", "--json"]);
      expect(out.stderr).toBe("");
      expect(out.code).toBe(0);
      const report = JSON.parse(out.stdout) as Awaited<ReturnType<typeof usageReport>>;
      expect(report.store).toBe("redis");
      expect(report.tools.map((t) => [t.server, t.tool, t.calls, t.status])).toEqual([
        ["ops", "status", 3, "rare"],
        ["ops", "restart", 0, "unused"],
        ["idle", "noop", 0, "unused"],
      ]);
      expect(report.servers).toEqual([
        { server: "ops", requests: 3, noTraffic: false },
        { server: "idle", requests: 0, noTraffic: true },
      ]);
      const text = await runCli(["registry", "usage", "--config", gw.configFile]);
      expect(text.stdout).toContain("Servers with no traffic in the window:\n  idle");

      const metric = await gw.metrics.registry.getSingleMetricAsString("mcp_gateway_tool_requests_total");
      expect(metric).toContain(
        'mcp_gateway_tool_requests_total{agent="tester",server="ops",tool="status",decision="allow"} 3',
      );
      expect(metric).toContain(
        'mcp_gateway_tool_requests_total{agent="tester",server="other",tool="other",decision="deny"} 1',
      );
      expect(metric).not.toContain("stranger");
      expect(metric).not.toContain("nonexistent");
    } finally {
      await gw.close();
      await upstream.close();
    }
  });
});

describe("registry usage on a memory store", () => {
  it("explains that the running process holds the usage, exit 1", async () => {
    const gw = await startGateway({ servers: [{ name: "ops", upstreams: ["http://127.0.0.1:9/mcp"] }] });
    try {
      const out = await runCli(["registry", "usage", "--config", gw.configFile]);
      expect(out.code).toBe(1);
      expect(out.stderr).toContain("state.store is memory");
      expect((await runCli(["registry", "usage", "--config", gw.configFile, "--since", "soon"])).code).toBe(
        2,
      );
    } finally {
      await gw.close();
    }
  });
});
