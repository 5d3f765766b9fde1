import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { parseRegistry } from "../../ext-service/src/config/load.js";
import { startDemoServers, type DemoServerName, type RunningServer } from "../../examples/servers/index.js";
import { startGateway, type Gateway } from "../e2e/harness.js";
import { runGatewayFlows } from "./flows.js";

const ROOT = join(import.meta.dirname, "..", "..");
type Obj = Record<string, unknown>;

// The flows the Envoy workflow runs through Envoy's listener, run here through the local edge in
// front of the demo kb server: both planes answer the public routes alike, so this proves the
// script before Docker runs it. The edge's rate limit is set low (the demo's 50/s with a burst of
// 100 is more than this shared 2-core machine can push through the edge in a burst).
describe("test/envoy-e2e/flows.ts against the local edge", () => {
  let servers: Record<DemoServerName, RunningServer>;
  let gw: Gateway;
  beforeAll(async () => {
    servers = await startDemoServers({ kb: 0, tickets: 0, deploy: 0 });
    const registry = parseRegistry(readFileSync(join(ROOT, "registry/registry.yaml"), "utf8"));
    const tools = registry.servers.find((s) => s.name === "kb")!.tools;
    gw = await startGateway({
      servers: [
        { name: "kb", upstreams: [servers.kb.url], tools: tools as unknown as Record<string, unknown>[] },
      ],
      agents: { "support-bot": { roles: ["all"] } },
      edge: { rateLimit: { requestsPerSecond: 2, burst: 20 } },
    });
  }, 60_000);
  afterAll(async () => {
    await gw?.close();
    await Promise.all(Object.values(servers ?? {}).map((s) => s.close()));
  });

  it("passes every flow: 401 challenge, RFC 9728 metadata, tools/list, tools/call, /mcp, 429", async () => {
    const base = new URL(gw.url("kb")).origin;
    const results = await runGatewayFlows(base, await gw.token("support-bot"));
    expect(results.map((r) => r.name.split(/[ :]/)[0])).toEqual([
      "no",
      "RFC",
      "tools/list",
      "tools/call",
      "/mcp",
      "over",
    ]);
    for (const r of results) expect(r.ok, `${r.name}: ${r.detail}`).toBe(true);
  }, 60_000);

  it("fails the flows when the token is not accepted", async () => {
    const base = new URL(gw.url("kb")).origin;
    const results = await runGatewayFlows(base, "not-a-token");
    expect(results.find((r) => r.name.startsWith("tools/list"))!.ok).toBe(false);
    expect(results.find((r) => r.name.startsWith("/mcp"))!.ok).toBe(false);
  }, 60_000);
});

// The workflow cannot run here (no Docker): its shape is what can be checked.
describe(".github/workflows/envoy-e2e.yml", () => {
  const text = readFileSync(join(ROOT, ".github/workflows/envoy-e2e.yml"), "utf8");
  const workflow = parse(text) as { on: Obj; jobs: Record<string, { steps: Obj[]; "runs-on": string }> };
  const steps = Object.values(workflow.jobs)[0]!.steps;
  const runs = steps.map((s) => String(s.run ?? ""));
  const at = (pattern: RegExp) => runs.findIndex((r) => pattern.test(r));

  it("says in its header that it has not been run", () => {
    expect(text.split("\n").slice(0, 10).join("\n")).toMatch(
      /NOT RUN BY THIS PROJECT[\s\S]*never been[\s#]+executed/,
    );
  });

  it("starts the stack, lets Envoy validate its bootstrap, runs the flows through Envoy, stops", () => {
    expect(workflow.jobs["envoy-e2e"]!["runs-on"]).toMatch(/^ubuntu-/);
    const order = [
      at(/^npm ci$/),
      at(/envoy\/gen-certs\.sh/),
      at(/docker compose up .*--wait/),
      at(/docker compose exec -T envoy envoy --mode validate -c \/etc\/envoy\/envoy\.yaml/),
      at(/MCP_GATEWAY_URL=http:\/\/127\.0\.0\.1:8080 .*npx tsx test\/envoy-e2e\/flows\.ts/),
      at(/docker compose down/),
    ];
    for (const i of order) expect(i).toBeGreaterThanOrEqual(0);
    expect([...order].sort((a, b) => a - b)).toEqual(order);
    expect(steps[order.at(-1)!]!.if).toBe("always()");
    // The flows' token comes from the keys the stack trusts (the devkeys volume), not a checkout's .dev/.
    expect(runs[order[4]!]).toMatch(
      /docker compose exec -T ext-service-1 [\s\S]* token [\s\S]*--keys \/var\/lib\/mcp-gateway\/dev/,
    );
  });

  it("targets the published plain listener of compose", () => {
    const compose = parse(readFileSync(join(ROOT, "docker-compose.yml"), "utf8"), { merge: true }) as {
      services: Record<string, { ports?: string[] }>;
    };
    expect(compose.services.envoy!.ports).toContain("127.0.0.1:8080:8080");
  });
});
