import { readFileSync } from "node:fs";
import { join } from "node:path";
import { McpError } from "@modelcontextprotocol/sdk/types.js";
import { request } from "undici";
import { afterAll, beforeAll, expect, it } from "vitest";
import { parse } from "yaml";
import { approvalsAdminApi } from "../../ext-service/src/approvals/admin-api.js";
import { loadEngine } from "../../ext-service/src/config/compile.js";
import { RedisStore } from "../../ext-service/src/state/redis.js";
import { startEdge, type Edge } from "../../ext-service/src/edge/index.js";
import { boundPort, startAdminServer } from "../../ext-service/src/telemetry/admin.js";
import { Metrics } from "../../ext-service/src/telemetry/metrics.js";
import { createDeployServer } from "../../examples/servers/deploy.js";
import { serveMcp, type RunningServer } from "../../examples/servers/http.js";
import { describeWithRedis, startRedis, type TestRedis } from "../state/redis-server.js";
import { connectClient, startGateway, type Gateway } from "./harness.js";

/**
 * Pending approvals live in the state store: with Redis, an edge restart between the request and
 * the decision loses nothing. The edge that took the request is gone; a new one (same config)
 * serves the approval and the retry.
 */

const REGISTRY = parse(readFileSync(join(import.meta.dirname, "../../registry/registry.yaml"), "utf8")) as {
  servers: { name: string; tools: Record<string, unknown>[] }[];
};
const DEPLOY_TOOLS = REGISTRY.servers
  .find((s) => s.name === "deploy")!
  .tools.map((t) => (t.name === "deploy_service" ? { ...t, risk: "critical" } : t));

describeWithRedis("approvals survive an edge restart (Redis store)", () => {
  const versions = new Map<string, Record<string, string>>();
  let redis: TestRedis;
  let deploy: RunningServer;
  let gw: Gateway;
  let second: Edge | undefined;
  const closers: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    redis = await startRedis();
    deploy = await serveMcp(() => createDeployServer(versions, { stepMs: 0 }), 0);
    gw = await startGateway({
      servers: [{ name: "deploy", upstreams: [deploy.url], tools: DEPLOY_TOOLS }],
      roles: { deployer: { rules: [{ effect: "allow", tools: ["deploy/*"] }] }, approver: { rules: [] } },
      agents: { "release-bot": { roles: ["deployer"] }, alice: { roles: ["approver"] } },
      config: {
        state: { store: "redis", redis: { url: redis.url, keyPrefix: "restart-test:" } },
        approvals: {
          approvers: [{ roles: ["approver"] }],
          rules: [{ name: "critical", risk: ["critical"], when: "arguments.environment == 'production'" }],
        },
      },
    });
    const store = gw.edge.state.store;
    if (store instanceof RedisStore) await store.waitUntilAvailable(5_000);
  });
  afterAll(async () => {
    for (const close of closers.reverse()) await close();
    await second?.close(0);
    await gw?.close();
    await deploy?.close();
    await redis?.close();
  });

  async function call(url: string, token: string) {
    const c = await connectClient(url, token);
    try {
      return await c.client.callTool({
        name: "deploy_service",
        arguments: { service: "search", version: "2.0.0", environment: "production" },
      });
    } finally {
      await c.close();
    }
  }

  it("a request taken by one edge is approved on its successor and the retry goes through", async () => {
    const bot = await gw.token("release-bot");
    let id: string | undefined;
    try {
      await call(gw.url("deploy"), bot);
    } catch (err) {
      expect(err).toBeInstanceOf(McpError);
      id = ((err as McpError).data as { approval_id: string }).approval_id;
    }
    expect(id).toBeDefined();
    await gw.edge.close(0);

    const { engine } = loadEngine(gw.configFile);
    const metrics = new Metrics(false);
    second = await startEdge({ engine, logger: gw.log.logger, metrics, host: "127.0.0.1", port: 0 });
    const restarted = second.state.store;
    if (restarted instanceof RedisStore) await restarted.waitUntilAvailable(5_000);
    const admin = await startAdminServer(metrics, { ready: () => true }, "127.0.0.1", 0, [
      approvalsAdminApi(() => second!.engine, second.state.approvals, gw.log.logger),
    ]);
    closers.push(
      () =>
        new Promise<void>((r) => {
          admin.close(() => r());
          admin.closeAllConnections();
        }),
    );
    const res = await request(`http://127.0.0.1:${boundPort(admin)}/admin/approvals/${id}/approve`, {
      method: "POST",
      headers: { authorization: `Bearer ${await gw.token("alice")}`, "content-type": "application/json" },
      body: "{}",
    });
    expect(res.statusCode).toBe(200);
    expect(await res.body.json()).toMatchObject({ id, status: "approved", agent: "release-bot" });

    const done = await call(`${second.url}/mcp/deploy`, bot);
    expect(done.isError).toBeFalsy();
    expect(versions.get("search")?.production).toBe("2.0.0");
  });
});
