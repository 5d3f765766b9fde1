import {
  LoggingMessageNotificationSchema,
  McpError,
  type Progress,
} from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  connectClient,
  httpCall,
  MCP_HEADERS,
  rpc,
  startDemoGateway,
  waitFor,
  type DemoGateway,
} from "./harness.js";

/** The official MCP SDK client through the edge, against the three demo servers. */
describe("SDK client through the edge, demo servers", () => {
  let gw: DemoGateway;
  beforeAll(async () => {
    gw = await startDemoGateway();
  });
  afterAll(async () => {
    await gw?.close();
  });

  it("initializes and sees each agent's own tools on the same server", async () => {
    const research = await connectClient(gw.dev.urls.tickets!, gw.token("research-bot"));
    const support = await connectClient(gw.dev.urls.tickets!, gw.token("support-bot"));
    try {
      expect(research.client.getServerVersion()?.name).toBe("demo-tickets");
      // The gateway's sealed session id, not the server's UUID.
      expect(research.transport.sessionId).toMatch(/^g1\.[A-Za-z0-9_-]+$/);
      const r = (await research.client.listTools()).tools.map((t) => t.name);
      const s = (await support.client.listTools()).tools.map((t) => t.name);
      expect(r).toEqual(["list_tickets", "get_ticket"]);
      expect(s).toEqual(["list_tickets", "get_ticket", "create_ticket"]);
    } finally {
      await research.close();
      await support.close();
    }
  });

  it("allows a permitted call and reports a forbidden one as an unknown tool", async () => {
    const research = await connectClient(gw.dev.urls.tickets!, gw.token("research-bot"));
    const support = await connectClient(gw.dev.urls.tickets!, gw.token("support-bot"));
    try {
      const created = await support.client.callTool({
        name: "create_ticket",
        arguments: { title: "Printer on fire", priority: "high" },
      });
      expect(created.isError).toBeFalsy();
      expect(created.structuredContent).toMatchObject({ title: "Printer on fire", status: "open" });

      const denied = await research.client
        .callTool({ name: "create_ticket", arguments: { title: "Not allowed" } })
        .then(
          () => undefined,
          (err: unknown) => err,
        );
      expect(denied).toBeInstanceOf(McpError);
      expect((denied as McpError).code).toBe(-32602);
      expect((denied as McpError).message).toContain("Unknown tool");
      expect((denied as McpError).data).toMatchObject({ reason: "tool_unknown" });

      // support may create but never delete
      const del = await support.client.callTool({ name: "delete_ticket", arguments: { id: "T-1" } }).then(
        () => undefined,
        (err: unknown) => err as McpError,
      );
      expect(del?.data).toMatchObject({ reason: "tool_unknown" });
      const stillThere = await support.client.callTool({ name: "get_ticket", arguments: { id: "T-1" } });
      expect(stillThere.isError).toBeFalsy();
    } finally {
      await research.close();
      await support.close();
    }
  });

  it("relays progress notifications of a long-running tool as they happen", async () => {
    const release = await connectClient(gw.dev.urls.deploy!, gw.token("release-bot"));
    try {
      const progress: Progress[] = [];
      const result = await release.client.callTool(
        {
          name: "deploy_service",
          arguments: { service: "billing", version: "2.5.0", environment: "staging" },
        },
        undefined,
        { onprogress: (p) => progress.push(p) },
      );
      expect(result.content).toEqual([{ type: "text", text: "Deployed billing@2.5.0 to staging" }]);
      expect(progress.map((p) => [p.progress, p.total, p.message])).toEqual([
        [1, 4, "build image"],
        [2, 4, "push image"],
        [3, 4, "roll out"],
        [4, 4, "health check"],
      ]);
      // production needs a deploy:prod scope the demo token does not carry (CEL condition)
      const prod = await release.client
        .callTool({
          name: "deploy_service",
          arguments: { service: "billing", version: "2.5.0", environment: "production" },
        })
        .then(
          () => undefined,
          (err: unknown) => err as McpError,
        );
      // The tool is in release-bot's list: the refusal names the policy, not the condition.
      expect(prod?.data).toMatchObject({ reason: "policy_denied", request_id: expect.any(String) });
      expect(prod?.message).not.toMatch(/scope|production|deploy:prod/);
    } finally {
      await release.close();
    }
  });

  it("serves prompts and resources the agent may use", async () => {
    const research = await connectClient(gw.dev.urls.kb!, gw.token("research-bot"));
    try {
      const prompts = await research.client.listPrompts();
      expect(prompts.prompts.map((p) => p.name)).toEqual(["answer_from_kb"]);
      const prompt = await research.client.getPrompt({
        name: "answer_from_kb",
        arguments: { question: "refunds?" },
      });
      expect(JSON.stringify(prompt.messages)).toContain("Question: refunds?");
      // Tool names differ by endpoint (kb__search_articles on the aggregated /mcp): none is named.
      expect(JSON.stringify(prompt.messages)).not.toMatch(/search_articles|get_article/);
      const resources = await research.client.listResources();
      expect(resources.resources.map((r) => r.uri)).toContain("kb://style-guide");
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

  it("delivers server-to-client notifications on the GET stream", async () => {
    const watcher = await connectClient(gw.dev.urls.tickets!, gw.token("research-bot"));
    const creator = await connectClient(gw.dev.urls.tickets!, gw.token("support-bot"));
    const seen: unknown[] = [];
    watcher.client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
      seen.push(n.params.data);
    });
    try {
      // The client opens its GET stream right after initialization, asynchronously: create
      // tickets until the watcher has heard of one (each creation is announced once).
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
    // The stream ended with the client: its exchange has one audit record with status 200.
    await waitFor(
      () =>
        gw.log.audits.some((a) => a.http_method === "GET" && a.agent === "research-bot" && a.status === 200),
      5_000,
      "the GET stream's audit record",
    );
  });

  it("ends a session with DELETE (terminateSession); the server then forgets it", async () => {
    const support = await connectClient(gw.dev.urls.tickets!, gw.token("support-bot"));
    const sessionId = support.transport.sessionId!;
    await support.transport.terminateSession();
    expect(support.transport.sessionId).toBeUndefined();
    await support.close();
    const after = await httpCall(gw.dev.urls.tickets!, {
      headers: {
        ...MCP_HEADERS,
        authorization: `Bearer ${gw.token("support-bot")}`,
        "mcp-session-id": sessionId,
        "mcp-protocol-version": "2025-11-25",
      },
      body: rpc("tools/list"),
    });
    expect(after.status).toBe(404);
    const deletes = gw.log.audits.filter((a) => a.http_method === "DELETE" && a.agent === "support-bot");
    expect(deletes.map((a) => a.status)).toContain(200);
  });

  it("writes exactly one audit record per HTTP exchange, without tokens", async () => {
    const before = gw.log.audits.length;
    const r = await httpCall(gw.dev.urls.kb!, {
      headers: { ...MCP_HEADERS, authorization: `Bearer ${gw.token("research-bot")}` },
      body: rpc("initialize", {
        protocolVersion: "2025-06-18",
        capabilities: {},
        clientInfo: { name: "x", version: "1" },
      }),
    });
    expect(r.status).toBe(200);
    await waitFor(() => gw.log.audits.length > before);
    const text = JSON.stringify(gw.log.lines);
    for (const a of gw.dev.agents) expect(text).not.toContain(a.token);
  });
});
