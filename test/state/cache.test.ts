import { readFileSync, writeFileSync } from "node:fs";
import { parse, stringify } from "yaml";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { RegistrySchema } from "../../ext-service/src/config/schema.js";
import { EnvoyRoleClient } from "../../ext-service/src/envoy/envoy-role-client.js";
import { cacheKey } from "../../ext-service/src/state/cache.js";
import { Metrics } from "../../ext-service/src/telemetry/metrics.js";
import { waitFor } from "../e2e/harness.js";
import { describeWithRedis, startRedis, type TestRedis } from "./redis-server.js";
import {
  MCP_HEADERS,
  postEdge,
  startFakeMcp,
  toolCall,
  writeStateFiles,
  type FakeMcp,
  type StateFiles,
  startStateEdge,
  startStateService,
} from "./support.js";

const READ_ONLY = { readOnlyHint: true };
const TOOLS = [
  {
    name: "lookup",
    description: "Look a thing up.",
    annotations: READ_ONLY,
    cache: { ttl: "1m", scope: "agent" },
  },
  {
    name: "catalog",
    description: "The shared catalog.",
    annotations: READ_ONLY,
    cache: { ttl: "1m", scope: "shared" },
  },
  { name: "fresh", description: "Never cached.", annotations: READ_ONLY },
];

let upstream: FakeMcp;
beforeAll(async () => {
  upstream = await startFakeMcp();
});
afterAll(() => upstream.close());
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  upstream.calls.length = 0;
  upstream.answer = (name) => ({ content: [{ type: "text", text: `ok ${name}` }] });
});

async function edgeWith(extra: Partial<Parameters<typeof writeStateFiles>[0]> = {}) {
  const files = await writeStateFiles({ upstream: upstream.url, tools: TOOLS, ...extra });
  const metrics = new Metrics(false);
  const { edge, log } = await startStateEdge(files, metrics);
  cleanups.push(async () => {
    await edge.close(0);
    files.remove();
  });
  await waitFor(() => edge.ready(), 5_000, "edge ready");
  const call = async (agent: string, name: string, args: Record<string, unknown> = {}) =>
    (await postEdge(`${edge.url}/mcp/tickets`, await files.token(agent), toolCall(name, args, 5))).json;
  return { edge, files, log, metrics, call };
}

describe("registry: cache settings", () => {
  it("allows cache only on tools annotated readOnlyHint: true", () => {
    const registry = (tool: Record<string, unknown>) =>
      RegistrySchema.safeParse({
        version: "1",
        servers: [{ name: "s", upstreams: ["http://x/mcp"], tools: [tool] }],
      });
    expect(
      registry({ name: "t", annotations: READ_ONLY, cache: { ttl: "5m", scope: "agent" } }).success,
    ).toBe(true);
    for (const annotations of [undefined, { readOnlyHint: false }, { destructiveHint: false }]) {
      const r = registry({ name: "t", annotations, cache: { ttl: "5m", scope: "shared" } });
      expect(r.success).toBe(false);
      expect(r.error!.issues[0]).toMatchObject({
        path: ["servers", 0, "tools", 0, "cache"],
        message: "cache is only allowed for tools annotated readOnlyHint: true",
      });
    }
  });

  it("keys on server, tool, pin, scope identity and canonical arguments", () => {
    const tool = {
      name: "t",
      description: "",
      inputSchema: { type: "object" },
      annotations: READ_ONLY,
      risk: "low",
      cost: 1,
      cache: { ttl: "1m", scope: "agent" },
    } as const;
    const call = (args: unknown, pin?: string, scope: "agent" | "shared" = "agent") => ({
      id: 1,
      server: "s",
      name: "t",
      tool: { ...tool, cache: { ttl: "1m", scope }, ...(pin ? { pin } : {}) },
      arguments: args,
    });
    const a = { agent: "a", roles: [], claims: {}, issuer: "i", anonymous: false };
    const b = { ...a, agent: "b" };
    const key = (c: ReturnType<typeof call>, p = a) => cacheKey(c as never, p);
    expect(key(call({ x: 1, y: [2] }))).toBe(key(call({ y: [2], x: 1 })));
    expect(key(call({ x: 1 }))).not.toBe(key(call({ x: 2 })));
    expect(key(call({ x: 1 }), b)).not.toBe(key(call({ x: 1 })));
    expect(key(call({ x: 1 }, undefined, "shared"), b)).toBe(key(call({ x: 1 }, undefined, "shared")));
    expect(key(call({ x: 1 }, `sha256:${"1".repeat(64)}`))).not.toBe(
      key(call({ x: 1 }, `sha256:${"2".repeat(64)}`)),
    );
    expect(key(call({ secret: "hunter2" }))).not.toContain("hunter2");
  });
});

describe("result cache on the edge (memory)", () => {
  it("answers a repeated call from the cache, per agent for scope agent; audited and counted", async () => {
    const gw = await edgeWith();
    const first = await gw.call("bot-a", "lookup", { q: "x" });
    const again = await gw.call("bot-a", "lookup", { q: "x" });
    expect(again).toEqual(first);
    expect(first).toMatchObject({ id: 5, result: { content: [{ text: "ok lookup" }] } });
    expect(upstream.calls).toHaveLength(1);
    await gw.call("bot-a", "lookup", { q: "other" }); // other arguments: a miss
    await gw.call("bot-b", "lookup", { q: "x" }); // another agent: its own entry
    expect(upstream.calls).toHaveLength(3);
    await gw.call("bot-a", "catalog");
    await gw.call("bot-b", "catalog"); // shared scope: one entry for both
    await gw.call("bot-a", "fresh");
    await gw.call("bot-a", "fresh"); // no cache setting: always forwarded
    expect(upstream.calls.map((c) => c.name)).toEqual([
      "lookup",
      "lookup",
      "lookup",
      "catalog",
      "fresh",
      "fresh",
    ]);
    await waitFor(() => gw.log.audits.length >= 8);
    expect(
      gw.log.audits.map((a) =>
        Object.keys(a.counters)
          .filter((k) => k.startsWith("cache:"))
          .join(),
      ),
    ).toEqual(["cache:miss", "cache:hit", "cache:miss", "cache:miss", "cache:miss", "cache:hit", "", ""]);
    expect(gw.log.audits[1]).toMatchObject({ decision: "allow", status: 200, tools: ["lookup"] });
    const metrics = await gw.metrics.registry.metrics();
    expect(metrics).toContain('mcp_gateway_cache_lookups_total{result="hit"} 2');
    expect(metrics).toContain('mcp_gateway_cache_lookups_total{result="miss"} 4');
    expect(metrics).toMatch(/mcp_gateway_cache_bytes [1-9]\d*/);
  });

  it("never caches errors, isError results or input_required results", async () => {
    const gw = await edgeWith();
    upstream.answer = () => ({ content: [{ type: "text", text: "failed" }], isError: true });
    await gw.call("bot-a", "lookup");
    await gw.call("bot-a", "lookup");
    upstream.answer = () => ({ resultType: "input_required", inputRequests: {}, requestState: "s" });
    await gw.call("bot-a", "lookup");
    await gw.call("bot-a", "lookup");
    expect(upstream.calls).toHaveLength(4);
  });

  it("runs a hit through the response policy as if fresh, and never caches what the policy changed", async () => {
    // The first policy allows the address, so the result passes unchanged and is cached.
    const allow = { dlp: { allow: [{ values: ["alice@example.com"] }] } };
    const gw = await edgeWith({ security: allow });
    upstream.answer = () => ({ content: [{ type: "text", text: "contact alice@example.com" }] });
    expect(await gw.call("bot-a", "lookup")).toMatchObject({
      result: { content: [{ text: "contact alice@example.com" }] },
    });
    // A stricter policy (reload): the cached result is redacted on the way out.
    const config = parse(readFileSync(gw.files.configFile, "utf8")) as Record<string, unknown>;
    config.security = { pins: (config.security as { pins: unknown }).pins };
    writeFileSync(gw.files.configFile, stringify(config));
    gw.edge.setEngine(gw.files.engine());
    const hit = await gw.call("bot-a", "lookup");
    expect(JSON.stringify(hit)).not.toContain("alice@example.com");
    expect(JSON.stringify(hit)).toContain("[REDACTED:email]");
    expect(upstream.calls).toHaveLength(1);
    await waitFor(() => gw.log.audits.length >= 2);
    expect(gw.log.audits[1]!.counters).toMatchObject({ "cache:hit": 1, "redacted:email": 1 });
    // Redacted answers are not cached: with the strict policy a fresh call reaches the server.
    await gw.call("bot-a", "lookup", { q: "new" });
    await gw.call("bot-a", "lookup", { q: "new" });
    expect(upstream.calls).toHaveLength(3);
  });
});

describe("result cache on the Envoy plane", () => {
  let files: StateFiles;
  afterAll(() => files?.remove());

  it("answers a hit from ext_proc at request-body time, without reaching the server", async () => {
    files = await writeStateFiles({ upstream: upstream.url, tools: TOOLS });
    const { service, log } = await startStateService(files);
    const client = new EnvoyRoleClient(service.grpcAddress);
    cleanups.push(async () => {
      client.close();
      await service.close(0);
    });
    const token = await files.token("bot-a");
    let reached = 0;
    const exchange = () =>
      client.exchange(
        {
          method: "POST",
          path: "/mcp/tickets",
          headers: { ...MCP_HEADERS, authorization: `Bearer ${token}` },
          body: JSON.stringify(toolCall("lookup", { q: 1 }, 7)),
        },
        () => {
          reached++;
          return {
            status: 200,
            headers: { "content-type": "application/json" },
            body: JSON.stringify({
              jsonrpc: "2.0",
              id: 7,
              result: { content: [{ type: "text", text: "from server" }] },
            }),
          };
        },
      );
    const first = await exchange();
    const second = await exchange();
    expect(reached).toBe(1);
    expect(second.answeredBy).toBe("ext_proc");
    expect(second.response.status).toBe(200);
    expect(JSON.parse(second.response.body.toString())).toEqual(JSON.parse(first.response.body.toString()));
    await waitFor(() => log.audits.length >= 2);
    expect(log.audits[1]!.counters).toEqual({ "cache:hit": 1 });
  });
});

describeWithRedis("shared result cache on Redis", () => {
  let redis: TestRedis;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(() => redis?.close());

  it("is shared by replicas, and fails open while Redis is down", async () => {
    const state = { store: "redis", redis: { url: redis.url, keyPrefix: `c${Date.now()}:` } };
    const one = await edgeWith({ state, cache: { shared: true } });
    const two = await edgeWith({ state, cache: { shared: true } });
    await one.call("bot-a", "catalog");
    await two.call("bot-b", "catalog");
    expect(upstream.calls).toHaveLength(1);
    await redis.stop();
    try {
      await waitFor(() => !one.edge.ready(), 5_000, "edge sees Redis down");
      expect(await one.call("bot-a", "catalog")).toMatchObject({
        result: { content: [{ text: "ok catalog" }] },
      });
      expect(upstream.calls).toHaveLength(2);
      expect(await one.metrics.registry.metrics()).toContain(
        'mcp_gateway_state_store_errors_total{feature="cache"} 2',
      );
    } finally {
      await redis.start();
    }
    // Shared again once Redis is back: one replica stores, the other hits.
    await waitFor(() => one.edge.ready() && two.edge.ready(), 8_000, "edges see Redis again");
    await one.call("bot-a", "catalog");
    await two.call("bot-b", "catalog");
    expect(upstream.calls).toHaveLength(3);
  });
});
