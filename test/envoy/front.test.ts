import {
  LoggingMessageNotificationSchema,
  McpError,
  type Progress,
} from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ExchangeTrace } from "../../ext-service/src/envoy/envoy-model.js";
import { startEnvoyRoleFront, type EnvoyRoleFront } from "../../ext-service/src/envoy/envoy-role-front.js";
import {
  connectClient,
  httpCall,
  MCP_HEADERS,
  rpc,
  startDemoGateway,
  waitFor,
  type DemoGateway,
} from "../e2e/harness.js";

/**
 * The official MCP SDK client (1.x) through the Envoy-role front: real HTTP in, the modelled
 * filter chain against the real ext-service over gRPC, the demo MCP servers behind it.
 * Everything streams: progress notifications arrive while the tool runs, the GET stream
 * delivers server notifications, and local replies of ext_authz and local_ratelimit reach the
 * client as Envoy 1.38 would deliver them (through ext_proc's encoder path, unchanged).
 */
describe("Envoy-role front: SDK client, demo servers, ext_authz + ext_proc over gRPC", () => {
  let gw: DemoGateway;
  let front: EnvoyRoleFront;
  const traces: { trace: ExchangeTrace; method: string; path: string }[] = [];
  const url = (server: string) => `${front.url}/mcp/${server}`;
  const envoyAudits = () => gw.log.audits.filter((a) => a.plane === "envoy");

  beforeAll(async () => {
    gw = await startDemoGateway();
    front = await startEnvoyRoleFront({
      extService: { engine: gw.dev.engine, logger: gw.log.logger, metrics: gw.metrics },
      onExchange: (trace, request) => traces.push({ trace, ...request }),
    });
  });
  afterAll(async () => {
    await front?.close();
    await gw?.close();
  });

  it("initializes and lists each agent's own tools", async () => {
    const research = await connectClient(url("tickets"), gw.token("research-bot"));
    try {
      expect(research.client.getServerVersion()?.name).toBe("demo-tickets");
      // The gateway's sealed session id, not the server's UUID.
      expect(research.transport.sessionId).toMatch(/^g1\.[A-Za-z0-9_-]+$/);
      expect((await research.client.listTools()).tools.map((t) => t.name)).toEqual([
        "list_tickets",
        "get_ticket",
      ]);
      const denied = await research.client
        .callTool({ name: "create_ticket", arguments: { title: "Not allowed" } })
        .then(
          () => undefined,
          (err: unknown) => err as McpError,
        );
      expect(denied).toBeInstanceOf(McpError);
      expect(denied?.data).toMatchObject({ reason: "tool_unknown" });
    } finally {
      await research.close();
    }
  });

  it("streams progress notifications while the tool runs, before its result", async () => {
    const release = await connectClient(url("deploy"), gw.token("release-bot"));
    try {
      const progress: { progress: Progress; at: number }[] = [];
      let resultAt = 0;
      const result = await release.client
        .callTool(
          {
            name: "deploy_service",
            arguments: { service: "billing", version: "2.5.0", environment: "staging" },
          },
          undefined,
          { onprogress: (p) => progress.push({ progress: p, at: performance.now() }) },
        )
        .finally(() => (resultAt = performance.now()));
      expect(result.content).toEqual([{ type: "text", text: "Deployed billing@2.5.0 to staging" }]);
      expect(progress.map((p) => p.progress.progress)).toEqual([1, 2, 3, 4]);
      // Streamed, not buffered: the first notification came well before the result.
      expect(resultAt - progress[0]!.at).toBeGreaterThan(20);
      const call = traces.find((t) => t.trace.upstreamRequest?.body.toString().includes("deploy_service"));
      expect(call?.trace.responseBodyMode).toBe("STREAMED");
    } finally {
      await release.close();
    }
  });

  it("serves prompts, resources and a tool call on another server", async () => {
    const research = await connectClient(url("kb"), gw.token("research-bot"));
    try {
      const prompt = await research.client.getPrompt({
        name: "answer_from_kb",
        arguments: { question: "refunds?" },
      });
      expect(JSON.stringify(prompt.messages)).toContain("Question: refunds?");
      expect((await research.client.listResources()).resources.map((r) => r.uri)).toContain(
        "kb://style-guide",
      );
      const read = await research.client.readResource({ uri: "kb://articles/kb-102" });
      expect(read.contents[0]).toMatchObject({ uri: "kb://articles/kb-102", mimeType: "text/markdown" });
      const found = await research.client.callTool({
        name: "search_articles",
        arguments: { query: "refund" },
      });
      expect(found.structuredContent).toEqual({
        results: [{ id: "kb-102", title: "Refund policy", score: 1 }],
      });
    } finally {
      await research.close();
    }
  });

  it("delivers server notifications on the long-lived GET stream", async () => {
    const watcher = await connectClient(url("tickets"), gw.token("research-bot"));
    const creator = await connectClient(url("tickets"), gw.token("support-bot"));
    const seen: unknown[] = [];
    watcher.client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
      seen.push(n.params.data);
    });
    try {
      const created: string[] = [];
      for (let i = 0; i < 50 && seen.length === 0; i++) {
        const r = await creator.client.callTool({
          name: "create_ticket",
          arguments: { title: `Ticket ${i}` },
        });
        created.push((r.structuredContent as { id: string }).id);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      await waitFor(() => seen.length > 0, 2_000, "a notification on the GET stream");
      expect(seen[0]).toMatchObject({ event: "ticket_created" });
      expect(created).toContain((seen[0] as { id: string }).id);
    } finally {
      await watcher.close();
      await creator.close();
    }
    await waitFor(
      () =>
        envoyAudits().some((a) => a.http_method === "GET" && a.agent === "research-bot" && a.status === 200),
      5_000,
      "the GET stream's audit record",
    );
  });

  it("passes ext_authz's 401 with WWW-Authenticate, unchanged, audited once", async () => {
    const r = await httpCall(url("kb"), { headers: { ...MCP_HEADERS }, body: rpc("tools/list") });
    expect(r.status).toBe(401);
    expect(String(r.headers["www-authenticate"])).toMatch(/^Bearer resource_metadata="[^"]+\/mcp\/kb"/);
    const body = JSON.parse(r.text) as { error: { data: { reason: string; request_id: string } } };
    expect(body.error.data.reason).toBe("token_missing");
    const trace = traces.at(-1)!.trace;
    expect(trace.answeredBy).toBe("ext_authz");
    // Envoy 1.38: the local reply went through ext_proc, which let it pass.
    expect(trace.sent.map((m) => Object.keys(m).find((k) => k !== "metadata_context"))).toEqual([
      "response_headers",
    ]);
    const requestId = body.error.data.request_id;
    await gw.log.auditFor(requestId);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(envoyAudits().filter((a) => a.request_id === requestId)).toEqual([
      expect.objectContaining({ status: 401, reasons: ["token_missing"], decision: "deny" }),
    ]);
  });

  it("passes the RFC 9728 document (ext_authz's 200) and a 404 for a server the agent may not reach", async () => {
    const meta = await httpCall(`${front.url}/.well-known/oauth-protected-resource/mcp/kb`, {
      method: "GET",
    });
    expect(meta.status).toBe(200);
    expect(JSON.parse(meta.text)).toMatchObject({ resource: expect.stringMatching(/\/mcp\/kb$/) });
    const forbidden = await httpCall(url("deploy"), {
      headers: { ...MCP_HEADERS, authorization: `Bearer ${gw.token("research-bot")}` },
      body: rpc("tools/list"),
    });
    expect(forbidden.status).toBe(404);
    expect(JSON.parse(forbidden.text)).toMatchObject({ error: { data: { reason: "server_unknown" } } });
  });
});

describe("Envoy-role front: local_ratelimit's 429 reaches the agent and is audited once", () => {
  let gw: DemoGateway;
  let front: EnvoyRoleFront;

  beforeAll(async () => {
    gw = await startDemoGateway();
    const bucket = { maxTokens: 2, tokensPerFill: 1, fillIntervalMs: 60_000 };
    front = await startEnvoyRoleFront({
      extService: { engine: gw.dev.engine, logger: gw.log.logger, metrics: gw.metrics },
      chain: { rateLimit: { descriptorHeader: "x-mcp-agent", buckets: {}, fallback: bucket } },
    });
  });
  afterAll(async () => {
    await front?.close();
    await gw?.close();
  });

  it("429 with the JSON-RPC body of local_reply_config; one rate_limited record with the agent", async () => {
    const call = () =>
      httpCall(`${front.url}/mcp/kb`, {
        headers: { ...MCP_HEADERS, authorization: `Bearer ${gw.token("research-bot")}` },
        body: rpc("initialize", {
          protocolVersion: "2025-06-18",
          capabilities: {},
          clientInfo: { name: "t", version: "1" },
        }),
      });
    expect((await call()).status).toBe(200);
    expect((await call()).status).toBe(200);
    const limited = await call();
    expect(limited.status).toBe(429);
    const body = JSON.parse(limited.text) as {
      error: { code: number; data: { reason: string; request_id: string } };
    };
    expect(body.error).toMatchObject({ code: -32029, data: { reason: "rate_limited" } });
    const requestId = body.error.data.request_id;
    expect(requestId).toMatch(/^[0-9a-f-]{36}$/);
    const records = await gw.log.auditFor(requestId);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(gw.log.audits.filter((a) => a.request_id === requestId)).toHaveLength(1);
    expect(records[0]).toMatchObject({
      plane: "envoy",
      agent: "research-bot",
      server: "kb",
      http_method: "POST",
      status: 429,
      decision: "deny",
      reasons: ["rate_limited"],
    });
    const counted = await gw.metrics.registry.getSingleMetricAsString("mcp_gateway_requests_total");
    expect(counted).toMatch(/mcp_gateway_requests_total\{[^}]*decision="deny"[^}]*\} 1/);
  });
});
