import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEnvoyRoleFront, type EnvoyRoleFront } from "../../ext-service/src/envoy/envoy-role-front.js";
import { createLogger } from "../../ext-service/src/telemetry/logger.js";
import { Metrics } from "../../ext-service/src/telemetry/metrics.js";
import {
  fakeUpstream,
  httpCall,
  MCP_HEADERS,
  readJsonBody,
  startGateway,
  type Gateway,
} from "../e2e/harness.js";
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from "./otlp-receiver.js";

/**
 * OpenTelemetry spans of one tools/call through each plane, exported over OTLP/HTTP to a receiver
 * the test runs: a SERVER span continuing the agent's trace, a CLIENT span under it, the MCP
 * semantic conventions' attributes, and the context the MCP server receives.
 */

const SERVER = 2;
const CLIENT = 3;
const ERROR = 2;

let receiver: OtlpReceiver;
let upstream: Awaited<ReturnType<typeof fakeUpstream>>;
let gw: Gateway;
let front: EnvoyRoleFront;
/** What the MCP server received, by JSON-RPC id. */
const received = new Map<string, { traceparent: string | undefined; body: Record<string, unknown> }>();

const hex = (bytes: number) => randomBytes(bytes).toString("hex");

beforeAll(async () => {
  receiver = await startOtlpReceiver();
  upstream = await fakeUpstream((req, res) => {
    void readJsonBody(req).then((body) => {
      const message = body as { id: string | number; params: { name: string } };
      received.set(String(message.id), {
        traceparent: req.headers.traceparent as string | undefined,
        body: body as Record<string, unknown>,
      });
      res.writeHead(200, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          jsonrpc: "2.0",
          id: message.id,
          result: {
            content: [{ type: "text", text: "done" }],
            ...(message.params.name === "fail" ? { isError: true } : {}),
          },
        }),
      );
    });
  });
  gw = await startGateway({
    servers: [{ name: "ops", upstreams: [upstream.url], tools: [{ name: "status" }, { name: "fail" }] }],
    security: { pins: { verifyBeforeCall: false } },
    config: { tracing: { enabled: true, endpoint: receiver.url } },
  });
  front = await startEnvoyRoleFront({
    extService: { engine: gw.engine, logger: createLogger("silent"), metrics: new Metrics(false) },
  });
});

afterAll(async () => {
  await front?.close();
  await gw?.close();
  await upstream?.close();
  await receiver?.close();
});

async function toolCall(
  base: string,
  id: string,
  name: string,
  headers: Record<string, string> = {},
  params: Record<string, unknown> = {},
) {
  return httpCall(`${base}/mcp/ops`, {
    headers: { ...MCP_HEADERS, authorization: `Bearer ${await gw.token("tester")}`, ...headers },
    body: JSON.stringify({
      jsonrpc: "2.0",
      id,
      method: "tools/call",
      params: { name, arguments: {}, ...params },
    }),
  });
}

/** The SERVER and CLIENT spans of one trace, as the receiver got them. */
async function spansOf(traceId: string, count: number): Promise<ReceivedSpan[]> {
  const spans = await receiver.until((all) => all.filter((s) => s.traceId === traceId).length >= count);
  return spans.filter((s) => s.traceId === traceId);
}

describe.each([
  ["edge", () => gw.edge.url],
  ["envoy", () => front.url],
])("spans through the %s plane", (plane, base) => {
  it("a tools/call: SERVER span under the agent's, CLIENT span under it, MCP attributes", async () => {
    const traceId = hex(16);
    const agentSpan = hex(8);
    const id = `${plane}-ok`;
    const res = await toolCall(base(), id, "status", { traceparent: `00-${traceId}-${agentSpan}-01` });
    expect(res.status).toBe(200);
    const spans = await spansOf(traceId, 2);
    const server = spans.find((s) => s.kind === SERVER)!;
    const client = spans.find((s) => s.kind === CLIENT)!;
    expect(server.parentSpanId).toBe(agentSpan);
    expect(client.parentSpanId).toBe(server.spanId);
    for (const span of [server, client]) {
      expect(span.name).toBe("tools/call status");
      expect(span.attributes).toMatchObject({
        "mcp.method.name": "tools/call",
        "gen_ai.tool.name": "status",
        "gen_ai.operation.name": "execute_tool",
        "jsonrpc.request.id": id,
        "network.transport": "tcp",
        "network.protocol.name": "http",
        "mcp_gateway.server": "ops",
      });
      expect(span.attributes["error.type"]).toBeUndefined();
      expect(span.status.code ?? 0).not.toBe(ERROR);
      expect(span.resource["mcp_gateway.plane"]).toBe(plane);
    }
    expect(server.attributes).toMatchObject({
      "mcp_gateway.plane": plane,
      "mcp_gateway.agent": "tester",
      "mcp_gateway.decision": "allow",
      "mcp_gateway.reasons": [],
      "http.response.status_code": 200,
    });
    expect(client.attributes).toMatchObject({ "server.address": "127.0.0.1", "server.port": upstream.port });
    if (plane === "edge") {
      expect(server.attributes["client.address"]).toBe("127.0.0.1");
      // The MCP server continues the gateway's CLIENT span.
      expect(received.get(id)?.traceparent).toBe(`00-${traceId}-${client.spanId}-01`);
    }
    if (plane === "edge") {
      // The audit record names the same trace.
      const [record] = await gw.log.auditFor(server.attributes["mcp_gateway.request_id"] as string);
      expect(record?.trace_id).toBe(traceId);
    }
  });

  it("a tool result with isError: error.type tool_error, status ERROR", async () => {
    const traceId = hex(16);
    await toolCall(base(), `${plane}-fail`, "fail", { traceparent: `00-${traceId}-${hex(8)}-01` });
    const spans = await spansOf(traceId, 2);
    for (const span of spans) {
      expect(span.attributes["error.type"]).toBe("tool_error");
      expect(span.status.code).toBe(ERROR);
    }
  });

  it("a denial: one SERVER span with the JSON-RPC error code, the reason and the cause", async () => {
    const traceId = hex(16);
    const res = await toolCall(base(), `${plane}-denied`, "nope", {
      traceparent: `00-${traceId}-${hex(8)}-01`,
    });
    expect(res.messages[0]).toMatchObject({ error: { data: { reason: "tool_unknown" } } });
    const [server] = await spansOf(traceId, 1);
    expect(server).toMatchObject({ kind: SERVER, name: "tools/call nope" });
    expect(server!.attributes).toMatchObject({
      "error.type": "-32602",
      "rpc.response.status_code": "-32602",
      "mcp_gateway.decision": "deny",
      "mcp_gateway.reasons": ["tool_unknown"],
      "mcp_gateway.causes": ["not_registered"],
    });
    expect(server!.status).toMatchObject({ code: ERROR, message: "Unknown tool" });
    // Nothing went upstream, so no CLIENT span (given the exporter a moment to send one).
    await new Promise((r) => setTimeout(r, 1500));
    expect(receiver.spans.filter((s) => s.traceId === traceId)).toHaveLength(1);
  });
});

describe("behind an Envoy that traces", () => {
  it("the SERVER span joins Envoy's trace under the span of its ext_proc call", async () => {
    const envoyTrace = hex(16);
    const envoySpans: string[] = [];
    const traced = await startEnvoyRoleFront({
      extService: front.extService!.grpcAddress,
      upstreams: { ops: upstream.url },
      client: {
        extProcTraceparent: () => {
          envoySpans.push(hex(8));
          return `00-${envoyTrace}-${envoySpans.at(-1)}-01`;
        },
      },
    });
    try {
      // The agent's own context is in the request; Envoy's span for the ext_proc call wins.
      const res = await toolCall(traced.url, "envoy-traced", "status", {
        traceparent: `00-${hex(16)}-${hex(8)}-01`,
      });
      expect(res.status).toBe(200);
      const spans = await spansOf(envoyTrace, 2);
      const server = spans.find((s) => s.kind === SERVER)!;
      expect(envoySpans).toContain(server.parentSpanId);
      expect(spans.find((s) => s.kind === CLIENT)!.parentSpanId).toBe(server.spanId);
    } finally {
      await traced.close();
    }
  });
});

describe("2026-07-28: the context in params._meta", () => {
  it("parents the SERVER span and reaches the MCP server as the CLIENT span's", async () => {
    const traceId = hex(16);
    const agentSpan = hex(8);
    const id = "meta-2026";
    const meta = {
      "io.modelcontextprotocol/protocolVersion": "2026-07-28",
      "io.modelcontextprotocol/clientInfo": { name: "t", version: "1" },
      "io.modelcontextprotocol/clientCapabilities": {},
      traceparent: `00-${traceId}-${agentSpan}-01`,
    };
    const res = await toolCall(
      gw.edge.url,
      id,
      "status",
      { "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "status" },
      { _meta: meta },
    );
    expect(res.status).toBe(200);
    const spans = await spansOf(traceId, 2);
    const server = spans.find((s) => s.kind === SERVER)!;
    const client = spans.find((s) => s.kind === CLIENT)!;
    expect(server.parentSpanId).toBe(agentSpan);
    expect(server.attributes["mcp.protocol.version"]).toBe("2026-07-28");
    expect(server.attributes["mcp.session.id"]).toBeUndefined();
    const sent = received.get(id)!;
    const forwardedMeta = (sent.body.params as { _meta: Record<string, unknown> })._meta;
    expect(forwardedMeta.traceparent).toBe(`00-${traceId}-${client.spanId}-01`);
    expect(forwardedMeta["io.modelcontextprotocol/protocolVersion"]).toBe("2026-07-28");
    expect(sent.traceparent).toBe(`00-${traceId}-${client.spanId}-01`);
  });
});
