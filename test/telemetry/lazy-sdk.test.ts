import { afterAll, describe, expect, it, vi } from "vitest";
import { startEnvoyRoleFront, type EnvoyRoleFront } from "../../ext-service/src/envoy/envoy-role-front.js";
import { createLogger } from "../../ext-service/src/telemetry/logger.js";
import { Metrics } from "../../ext-service/src/telemetry/metrics.js";
import { tracingFromConfig } from "../../ext-service/src/telemetry/tracing.js";
import { fakeUpstream, httpCall, MCP_HEADERS, startGateway, type Gateway } from "../e2e/harness.js";
import { startOtlpReceiver, type OtlpReceiver } from "./otlp-receiver.js";

/**
 * The OpenTelemetry SDK and its OTLP exporter are loaded only when tracing is on: both planes
 * start and answer with tracing off without loading them, and tracingFromConfig loads them when
 * the config turns tracing on. Each package records its first load through a pass-through mock.
 */

const loaded = vi.hoisted(() => new Set<string>());
vi.mock("@opentelemetry/sdk-trace-base", async (importOriginal) => {
  loaded.add("@opentelemetry/sdk-trace-base");
  return importOriginal();
});
vi.mock("@opentelemetry/exporter-trace-otlp-http", async (importOriginal) => {
  loaded.add("@opentelemetry/exporter-trace-otlp-http");
  return importOriginal();
});
vi.mock("@opentelemetry/resources", async (importOriginal) => {
  loaded.add("@opentelemetry/resources");
  return importOriginal();
});
vi.mock("@opentelemetry/core", async (importOriginal) => {
  loaded.add("@opentelemetry/core");
  return importOriginal();
});

let upstream: Awaited<ReturnType<typeof fakeUpstream>> | undefined;
let gw: Gateway | undefined;
let front: EnvoyRoleFront | undefined;
let receiver: OtlpReceiver | undefined;

afterAll(async () => {
  await front?.close();
  await gw?.close();
  await upstream?.close();
  await receiver?.close();
});

async function toolCall(base: string, token: string) {
  return httpCall(`${base}/mcp/ops`, {
    headers: { ...MCP_HEADERS, authorization: `Bearer ${token}` },
    body: JSON.stringify({
      jsonrpc: "2.0",
      id: 1,
      method: "tools/call",
      params: { name: "status", arguments: {} },
    }),
  });
}

describe("the tracing SDK", () => {
  it("is not loaded by either plane when tracing is off", async () => {
    upstream = await fakeUpstream((_req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ jsonrpc: "2.0", id: 1, result: { content: [{ type: "text", text: "ok" }] } }));
    });
    gw = await startGateway({
      servers: [{ name: "ops", upstreams: [upstream.url], tools: [{ name: "status" }] }],
      security: { pins: { verifyBeforeCall: false } },
    });
    expect(gw.engine.config.tracing.enabled).toBe(false);
    front = await startEnvoyRoleFront({
      extService: { engine: gw.engine, logger: createLogger("silent"), metrics: new Metrics(false) },
    });
    const token = await gw.token("tester");
    for (const base of [gw.edge.url, front.url]) {
      const res = await toolCall(base, token);
      expect(res.status).toBe(200);
    }
    expect([...loaded]).toEqual([]);
  });

  it("is loaded when the config turns tracing on", async () => {
    receiver = await startOtlpReceiver();
    const config = {
      ...gw!.engine.config,
      tracing: { ...gw!.engine.config.tracing, enabled: true, endpoint: receiver.url },
    };
    const tracing = await tracingFromConfig(config, "edge", {});
    expect(tracing).toBeDefined();
    expect([...loaded].sort()).toEqual(
      expect.arrayContaining(["@opentelemetry/exporter-trace-otlp-http", "@opentelemetry/sdk-trace-base"]),
    );
    await tracing!.shutdown();
  });
});
