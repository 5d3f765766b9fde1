import { hostname } from "node:os";
import { join } from "node:path";
import { request } from "undici";
import { afterAll, beforeAll, expect, it } from "vitest";
import { loadEngine } from "../../ext-service/src/config/compile.js";
import { startEdge, type Edge } from "../../ext-service/src/edge/server.js";
import { Metrics } from "../../ext-service/src/telemetry/metrics.js";
import { startKbServer } from "../../examples/servers/kb.js";
import type { RunningServer } from "../../examples/servers/http.js";
import { connectClient, LogCapture, startGateway, type Gateway } from "../e2e/harness.js";
import { KB, startConsoleAdmin } from "./support.js";
import { describeWithRedis, startRedis, type TestRedis } from "../state/redis-server.js";
import { chromiumAvailable, launchChromium, SCREENSHOT_DIR } from "./browser.js";

interface Overview {
  replica: { host: string; pid: number };
  traffic: { total: { requests: number } };
  cluster: {
    source: string;
    available: boolean;
    day: string;
    window_seconds: number | null;
    allowed_today: number | null;
    allowed_per_minute: number | null;
  } | null;
  servers: {
    name: string;
    traffic: { total: { requests: number } };
    cluster: { allowed_today: number; allowed_per_minute: number | null } | null;
  }[];
}

/**
 * The Overview's rates are one replica's (its Prometheus counters); with a Redis state store it
 * also shows what every replica let through today, from the usage counters they all add to. Two
 * edges share one real Redis: calls through the second one show up in the first one's console as
 * cluster-wide counts, not in its own rates.
 */
describeWithRedis("console Overview: this replica's rates and every replica's counts from Redis", () => {
  let redis: TestRedis;
  let kb: RunningServer;
  let gw: Gateway;
  let other: Edge;
  let adminUrl: string;
  let close: () => Promise<void>;

  beforeAll(async () => {
    redis = await startRedis();
    kb = await startKbServer(0, "127.0.0.1");
    gw = await startGateway({
      servers: [{ name: "kb", upstreams: [kb.url], tools: KB.tools }],
      roles: { reader: { rules: [{ effect: "allow", tools: ["kb/*"] }] }, admin: { rules: [] } },
      agents: { reader: { roles: ["reader"] }, boss: { roles: ["admin"] } },
      config: {
        state: { store: "redis", redis: { url: redis.url, keyPrefix: "cluster:", commandTimeout: "500ms" } },
      },
    });
    // A second replica: the same gateway.yaml, its own process state and metrics, the same Redis.
    other = await startEdge({
      engine: loadEngine(gw.configFile).engine,
      logger: new LogCapture().logger,
      metrics: new Metrics(false),
      host: "127.0.0.1",
      port: 0,
    });
    const admin = await startConsoleAdmin(gw, { assets: true });
    adminUrl = admin.url;
    close = admin.close;
  });
  afterAll(async () => {
    await close?.();
    await other?.close(0);
    await gw?.close();
    await kb?.close();
    await redis?.close();
  });

  const overview = async () => {
    const res = await request(`${adminUrl}/console/api/overview`, {
      headers: { authorization: `Bearer ${await gw.token("boss")}` },
    });
    expect(res.statusCode).toBe(200);
    return (await res.body.json()) as Overview;
  };
  const kbRow = (o: Overview) => o.servers.find((s) => s.name === "kb")!;

  async function search(url: string) {
    const c = await connectClient(url, await gw.token("reader"));
    try {
      await c.client.callTool({ name: "search_articles", arguments: { query: "vpn" } });
    } finally {
      await c.close();
    }
  }

  it("counts the other replica's calls cluster-wide, not in this replica's rates", async () => {
    const before = await overview();
    expect(before.replica).toEqual({ host: hostname(), pid: process.pid });
    expect(before.cluster).toMatchObject({ source: "redis", available: true, allowed_today: 0 });
    expect(before.cluster!.day).toBe(new Date().toISOString().slice(0, 10));
    // One reading so far: no rate yet.
    expect(kbRow(before).cluster).toEqual({ allowed_today: 0, allowed_per_minute: null });

    // Two sessions through the other replica: initialize, initialized and a call each.
    await search(`${other.url}/mcp/kb`);
    await search(`${other.url}/mcp/kb`);
    // The usage writes are not awaited by the request: poll.
    await expect.poll(async () => kbRow(await overview()).cluster!.allowed_today).toBeGreaterThanOrEqual(6);
    const after = await overview();
    expect(kbRow(after).traffic.total.requests).toBe(0);
    expect(after.traffic.total.requests).toBe(0);
    expect(kbRow(after).cluster!.allowed_per_minute).toBeGreaterThan(0);
    expect(after.cluster!.allowed_today).toBe(kbRow(after).cluster!.allowed_today);
    expect(after.cluster!.window_seconds).not.toBeNull();

    // This replica's own call shows in both.
    const cluster = kbRow(after).cluster!.allowed_today;
    await search(gw.url("kb"));
    await expect
      .poll(async () => kbRow(await overview()).cluster!.allowed_today)
      .toBeGreaterThanOrEqual(cluster + 3);
    expect(kbRow(await overview()).traffic.total.requests).toBeGreaterThanOrEqual(3);
  });

  it.runIf(chromiumAvailable())(
    "says on the page which numbers are this replica's and which are every replica's",
    async () => {
      const browser = await launchChromium();
      try {
        const page = await browser.context.newPage();
        await page.goto(`${adminUrl}/console`);
        await page.getByLabel("Admin token").fill(await gw.token("boss"));
        await page.getByRole("button", { name: "Log in" }).click();
        const row = page.locator('tr[data-server="kb"]');
        await row.waitFor();
        const scope = await page.locator("#overview-scope").textContent();
        expect(scope).toContain(`this replica's: ${hostname()} (pid ${process.pid})`);
        expect(scope).toContain("from the Redis state store");
        expect(await page.locator("thead th").allTextContents()).toContain("Let through (all replicas)");
        expect(await page.locator("ul.cards").textContent()).toContain("let through, all replicas");
        expect(await row.locator("td.num").nth(3).textContent()).toMatch(/today$/);
        await page.screenshot({ path: join(SCREENSHOT_DIR, "overview-cluster.png"), fullPage: true });
      } finally {
        await browser.close();
      }
    },
  );

  it("says the cluster-wide counts are unknown while Redis is down", async () => {
    await redis.stop();
    await expect.poll(async () => (await overview()).cluster!.available, { timeout: 5_000 }).toBe(false);
    const down = await overview();
    expect(down.cluster).toMatchObject({ available: false, allowed_today: null, allowed_per_minute: null });
    expect(kbRow(down).cluster).toBeNull();
  });
});
