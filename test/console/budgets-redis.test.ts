import { request } from "undici";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { BudgetsPage } from "../../ext-service/src/console/budgets.js";
import { startKbServer } from "../../examples/servers/kb.js";
import type { RunningServer } from "../../examples/servers/http.js";
import { connectClient, startGateway, type Gateway } from "../e2e/harness.js";
import { KB, startConsoleAdmin } from "./support.js";
import { describeWithRedis, startRedis, type TestRedis } from "../state/redis-server.js";

/** The Budgets page's counters read from a real Redis (the store replicas share), and while it is down. */
describeWithRedis("console API: budgets from Redis", () => {
  let redis: TestRedis;
  let kb: RunningServer;
  let gw: Gateway;
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
        state: { store: "redis", redis: { url: redis.url, keyPrefix: "console:", commandTimeout: "500ms" } },
        budgets: { rules: [{ name: "kb-daily", per: "agent", tools: ["kb/*"], period: "day", limit: 10 }] },
      },
    });
    const admin = await startConsoleAdmin(gw);
    adminUrl = admin.url;
    close = admin.close;
  });
  afterAll(async () => {
    await close?.();
    await gw?.close();
    await kb?.close();
    await redis?.close();
  });

  const budgets = async () => {
    const res = await request(`${adminUrl}/console/api/budgets`, {
      headers: { authorization: `Bearer ${await gw.token("boss")}` },
    });
    expect(res.statusCode).toBe(200);
    return (await res.body.json()) as BudgetsPage;
  };

  const page = async <T>(name: string) => {
    const res = await request(`${adminUrl}/console/api/${name}`, {
      headers: { authorization: `Bearer ${await gw.token("boss")}` },
    });
    return { status: res.statusCode, body: (await res.body.json()) as T };
  };
  type Overview = { store: { available: boolean }; pending_approvals: number | null };
  type Registry = {
    usage: { error?: string };
    servers: { tools: { name: string; calls: number | null }[] }[];
  };

  it("reads the counters the edge charged in Redis, and says so when Redis is down", async () => {
    const c = await connectClient(gw.url("kb"), await gw.token("reader"));
    try {
      await c.client.callTool({ name: "search_articles", arguments: { query: "vpn" } });
      await c.client.callTool({ name: "search_articles", arguments: { query: "mail" } });
    } finally {
      await c.close();
    }
    const up = await budgets();
    expect(up.store).toEqual({ kind: "redis", available: true });
    expect(up.budgets[0]!.counters.find((r) => r.agent === "reader")).toMatchObject({ used: 2, state: "ok" });
    // The Registry page's usage comes from the same store: every replica's calls.
    await expect
      .poll(
        async () =>
          (await page<Registry>("registry")).body.servers[0]!.tools.find((t) => t.name === "search_articles")!
            .calls,
      )
      .toBe(2);
    expect((await page<Overview>("overview")).body.pending_approvals).toBe(0);

    await redis.stop();
    await expect.poll(async () => (await budgets()).store.available, { timeout: 5_000 }).toBe(false);
    const down = await budgets();
    expect(down.budgets[0]!.counters.find((r) => r.agent === "reader")).toMatchObject({ state: "unknown" });
    expect(down.budgets[0]!.counters.find((r) => r.agent === "reader")!.used).toBeUndefined();
    // Overview and Registry still answer; what lives in the store is unknown, not zero.
    const overview = await page<Overview>("overview");
    expect(overview.status).toBe(200);
    expect(overview.body).toMatchObject({ store: { available: false }, pending_approvals: null });
    const registry = await page<Registry>("registry");
    expect(registry.status).toBe(200);
    expect(registry.body.usage.error).toContain("redis");
    expect(registry.body.servers[0]!.tools[0]!.calls).toBeNull();
  });
});
