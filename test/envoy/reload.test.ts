import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { reloadConfig, type ReloadOptions } from "../../ext-service/src/commands/reload.js";
import type { HttpRequestSpec } from "../../ext-service/src/envoy/envoy-role-client.js";
import { createLogger } from "../../ext-service/src/telemetry/logger.js";
import {
  GATEWAY_YAML,
  MCP_POST_HEADERS,
  REGISTRY_YAML,
  jsonResult,
  startGateway,
  toolsCall,
  type Gateway,
} from "./harness.js";

const WIKI_SERVER = `  - name: wiki
    upstreams: ["http://127.0.0.1:3/mcp"]
    tools:
      - name: find_page
        description: Find a wiki page.
`;

describe("ext-service: config reload", () => {
  let gw: Gateway;
  let token: string;
  let options: ReloadOptions;

  beforeAll(async () => {
    gw = await startGateway();
    token = await gw.token("support-bot");
    options = {
      configFile: join(gw.dir, "gateway.yaml"),
      target: gw.service,
      logger: createLogger("debug", gw.logs),
      metrics: gw.service.metrics,
      fixedAtStart: ["listen", "limits", "logLevel", "shutdownGrace"],
    };
  });
  afterAll(() => gw?.close());

  const callWiki = (): HttpRequestSpec => ({
    method: "POST",
    path: "/mcp/wiki",
    headers: { ...MCP_POST_HEADERS, authorization: `Bearer ${token}` },
    body: JSON.stringify(toolsCall(1, "find_page", { q: "x" })),
  });
  const upstream = () => ({
    status: 200,
    headers: { "content-type": "application/json" },
    body: jsonResult(1, { content: [{ type: "text", text: "found" }] }),
  });

  it("applies a new server and role to the calls after it; a broken config is rejected and the running one kept", async () => {
    const before = await gw.client.exchange(callWiki(), upstream);
    expect(before.response.status).toBe(404);

    writeFileSync(
      join(gw.dir, "registry.yaml"),
      REGISTRY_YAML.replace('version: "test-1"', 'version: "test-2"') + WIKI_SERVER,
    );
    writeFileSync(
      join(gw.dir, "gateway.yaml"),
      GATEWAY_YAML.replace('        tools: ["tickets/*"]', '        tools: ["tickets/*", "wiki/*"]'),
    );
    const applied = reloadConfig(options);
    expect(applied).toEqual({
      ok: true,
      registryVersion: "test-2",
      servers: ["tickets", "kb", "wiki"],
      needsRestart: [],
    });
    const after = await gw.client.exchange(callWiki(), upstream);
    expect(after.response.status).toBe(200);
    expect(JSON.parse(after.response.body.toString())).toMatchObject({
      result: { content: [{ text: "found" }] },
    });

    const running = gw.service.engine;
    writeFileSync(join(gw.dir, "gateway.yaml"), GATEWAY_YAML + "edgee: {}\n");
    const rejected = reloadConfig(options);
    expect(rejected.ok).toBe(false);
    expect(!rejected.ok && rejected.problems.join("\n")).toMatch(
      /gateway\.yaml:\d+:\d+: \(root\): unknown key 'edgee' \(did you mean 'edge'\?\)/,
    );
    expect(gw.service.engine).toBe(running);
    expect((await gw.client.exchange(callWiki(), upstream)).response.status).toBe(200);

    writeFileSync(
      join(gw.dir, "gateway.yaml"),
      GATEWAY_YAML.replace("shutdownGrace: 2s", "shutdownGrace: 3s"),
    );
    const restartNeeded = reloadConfig(options);
    expect(restartNeeded).toMatchObject({ ok: true, needsRestart: ["shutdownGrace"] });
    // That config no longer lets support-bot reach wiki: the new policy is in force at once.
    expect((await gw.client.exchange(callWiki(), upstream)).response.status).toBe(404);

    const metrics = await gw.service.metrics.registry.metrics();
    expect(metrics).toContain('mcp_gateway_config_reloads_total{result="applied"} 2');
    expect(metrics).toContain('mcp_gateway_config_reloads_total{result="rejected"} 1');
  });
});
