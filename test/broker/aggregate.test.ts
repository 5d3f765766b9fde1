import { describe, expect, it } from "vitest";
import { connectClient, httpCall, MCP_HEADERS, waitFor } from "../e2e/harness.js";
import { connectModern, demoPlane } from "./support.js";

/**
 * The aggregated endpoint (/mcp) on both planes in front of the three demo servers, with the 1.x
 * SDK client (2025 sessions) and the v2 client pinned to 2026-07-28: list, call, read, prompts.
 * Behind the Envoy-role front, /mcp goes to the ext-service's broker listener and every hop comes
 * back through the front's per-server route (ext_authz + ext_proc).
 */
describe.each(["edge", "envoy"] as const)("aggregated endpoint /mcp, %s plane", (plane) => {
  const demo = demoPlane(plane);
  const url = demo.url;

  it("1.x client: the union of what the agent may use, prefixed by server", async () => {
    const mcp = await connectClient(url(), demo.gw.token("support-bot"));
    try {
      const tools = (await mcp.client.listTools()).tools.map((t) => t.name).sort();
      expect(tools).toEqual([
        "kb__get_article",
        "kb__search_articles",
        "tickets__create_ticket",
        "tickets__get_ticket",
        "tickets__list_tickets",
      ]);
      const r = await mcp.client.callTool({ name: "kb__search_articles", arguments: { query: "refund" } });
      expect(JSON.stringify(r.content)).toContain("kb-102");
      const prompts = (await mcp.client.listPrompts()).prompts.map((p) => p.name);
      expect(prompts).toEqual(["kb__answer_from_kb"]);
      const prompt = await mcp.client.getPrompt({
        name: "kb__answer_from_kb",
        arguments: { question: "refunds?" },
      });
      expect(JSON.stringify(prompt.messages)).toContain("refunds?");
      const resources = (await mcp.client.listResources()).resources.map((r) => r.uri);
      expect(resources).toContain("kb.kb://style-guide");
      const read = await mcp.client.readResource({ uri: "kb.kb://articles/kb-101" });
      expect(read.contents[0]!.uri).toBe("kb.kb://articles/kb-101");
      // The hop was decided on the plane's own per-server path, for this agent.
      await waitFor(() =>
        demo.gw.log.audits.some(
          (a) =>
            a.plane === plane &&
            a.server === "kb" &&
            a.tools.includes("search_articles") &&
            a.agent === "support-bot" &&
            a.counters.via_broker === 1,
        ),
      );
    } finally {
      await mcp.close();
    }
  });

  it("v2 client (2026-07-28): the same view, stateless", async () => {
    const client = await connectModern(url(), demo.gw.token("support-bot"));
    try {
      const tools = (await client.listTools()).tools.map((t) => t.name).sort();
      expect(tools).toContain("tickets__list_tickets");
      expect(tools).not.toContain("tickets__delete_ticket");
      const r = await client.callTool({ name: "tickets__get_ticket", arguments: { id: "T-1" } });
      expect(JSON.stringify(r.content)).toContain("T-1");
      const read = await client.readResource({ uri: "kb.kb://style-guide" });
      expect(read.contents[0]!.uri).toBe("kb.kb://style-guide");
    } finally {
      await client.close();
    }
  });

  // New-user trial: /mcp read its body with JSON.parse alone, so `{"hello":1}` got the SDK's
  // error without a reason or request id (audited as allowed), invalid UTF-8 became U+FFFD, and
  // duplicate keys passed; /mcp/<server> refuses all three.
  it("refuses a body that is not JSON-RPC exactly as /mcp/<server> does, and audits it", async () => {
    const headers = { ...MCP_HEADERS, authorization: `Bearer ${demo.gw.token("support-bot")}` };
    const cases: [Buffer, string, number][] = [
      [Buffer.from('{"hello":1}'), "invalid_request", -32600],
      [
        Buffer.from('{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"ping"}'),
        "invalid_request",
        -32600,
      ],
      [
        Buffer.concat([
          Buffer.from('{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"'),
          Buffer.from([0xff]),
          Buffer.from('"}}'),
        ]),
        "invalid_utf8",
        -32700,
      ],
    ];
    for (const [body, reason, code] of cases) {
      const r = await httpCall(url(), { headers, body });
      expect([reason, r.status]).toEqual([reason, 400]);
      const error = (
        JSON.parse(r.text) as { error: { code: number; data: { reason: string; request_id: string } } }
      ).error;
      expect(error.code).toBe(code);
      expect(error.data.reason).toBe(reason);
      await waitFor(() =>
        demo.gw.log.audits.some(
          (a) =>
            a.request_id === error.data.request_id && a.decision === "deny" && a.reasons.includes(reason),
        ),
      );
    }
  });

  // New-user trial (user-trial): a mistyped view answered "No such MCP server", which sent the
  // user looking in the registry rather than in broker.views.
  it("says which view does not exist, to an authenticated agent only", async () => {
    const base = demo.origin();
    const body = JSON.stringify({
      jsonrpc: "2.0",
      id: 1,
      method: "initialize",
      params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "raw", version: "1" } },
    });
    const authed = await httpCall(`${base}/mcp/views/no-such-view`, {
      headers: { ...MCP_HEADERS, authorization: `Bearer ${demo.gw.token("support-bot")}` },
      body,
    });
    expect(authed.status).toBe(404);
    const error = (authed.messages[0] as { error: { message: string; data: { reason: string } } }).error;
    expect(error.data.reason).toBe("server_unknown");
    expect(error.message).toContain("no view 'no-such-view' in broker.views");
    const anonymous = await httpCall(`${base}/mcp/views/no-such-view`, { headers: { ...MCP_HEADERS }, body });
    expect(anonymous.status).toBe(401);
    expect(anonymous.text).not.toContain("no-such-view");
  });

  // New-user trial (user-trial): `{"jsonrpc":"2.0","id":3}` (no method) was refused on both
  // routes as "a response must carry exactly one of 'result' or 'error'", which reads as if the
  // client had sent a response.
  it("names the missing method of a message that is neither request nor response", async () => {
    const headers = { ...MCP_HEADERS, authorization: `Bearer ${demo.gw.token("support-bot")}` };
    const base = demo.origin();
    for (const target of [url(), `${base}/mcp/tickets`]) {
      const r = await httpCall(target, { headers, body: '{"jsonrpc":"2.0","id":3}' });
      expect([target, r.status]).toEqual([target, 400]);
      const error = (r.messages[0] as { error: { message: string; data: { reason: string } } }).error;
      expect(error.data.reason).toBe("invalid_request");
      expect(error.message).toContain("needs a 'method'");
      const both = await httpCall(target, {
        headers,
        body: '{"jsonrpc":"2.0","id":3,"result":{},"error":{"code":1,"message":"x"}}',
      });
      expect((both.messages[0] as { error: { message: string } }).error.message).toContain(
        "exactly one of 'result' or 'error'",
      );
    }
  });

  // New-user trial (user-trial): `tools/call` without a name through /mcp got the SDK's zod dump
  // (no reason, no request id, audited as allowed), and params that are no object a 400 saying
  // "The body is not a JSON-RPC 2.0 message: Bad Request: the request body is not a valid
  // JSON-RPC message"; /mcp/<server> answers both `invalid_params` with what is missing.
  it("refuses a request that names nothing to call, read or get exactly as /mcp/<server> does", async () => {
    const headers = { ...MCP_HEADERS, authorization: `Bearer ${demo.gw.token("support-bot")}` };
    const session = async (target: string) => {
      const r = await httpCall(target, {
        headers,
        body: JSON.stringify({
          jsonrpc: "2.0",
          id: 0,
          method: "initialize",
          params: {
            protocolVersion: "2025-03-26",
            capabilities: {},
            clientInfo: { name: "raw", version: "1" },
          },
        }),
      });
      expect(r.status).toBe(200);
      const sid = r.headers["mcp-session-id"];
      expect(typeof sid).toBe("string");
      return { ...headers, "mcp-session-id": sid as string, "mcp-protocol-version": "2025-03-26" };
    };
    const direct = `${demo.origin()}/mcp/tickets`;
    const [aggregated, perServer] = [await session(url()), await session(direct)];
    const bodies: unknown[] = [
      { jsonrpc: "2.0", id: 1, method: "tools/call", params: {} },
      { jsonrpc: "2.0", id: 2, method: "tools/call", params: [1] },
      { jsonrpc: "2.0", id: 3, method: "prompts/get", params: { name: 7 } },
      { jsonrpc: "2.0", id: 4, method: "resources/read", params: {} },
      {
        jsonrpc: "2.0",
        id: 5,
        method: "completion/complete",
        params: { ref: {}, argument: { name: "q", value: "" } },
      },
      [
        { jsonrpc: "2.0", id: 6, method: "tools/list" },
        { jsonrpc: "2.0", id: 7, method: "tools/call", params: { arguments: {} } },
      ],
    ];
    const shape = (messages: unknown[]) =>
      messages.flat().map((m) => {
        const { id, error } = m as {
          id: unknown;
          error?: { code: number; message: string; data?: { reason?: string } };
        };
        return { id, code: error?.code, message: error?.message, reason: error?.data?.reason };
      });
    for (const body of bodies) {
      const text = JSON.stringify(body);
      const viaBroker = await httpCall(url(), { headers: aggregated, body: text });
      const viaServer = await httpCall(direct, { headers: perServer, body: text });
      expect([text, viaBroker.status]).toEqual([text, viaServer.status]);
      expect(shape(viaBroker.messages)).toEqual(shape(viaServer.messages));
      const reasons = shape(viaBroker.messages).map((m) => m.reason);
      expect(reasons).toContain("invalid_params");
      // The refusal names its audit record, which says it was denied.
      const requestId = (viaBroker.messages.flat()[0] as { error: { data: { request_id: string } } }).error
        .data.request_id;
      await waitFor(() =>
        demo.gw.log.audits.some(
          (a) => a.request_id === requestId && a.decision === "deny" && a.reasons.includes("invalid_params"),
        ),
      );
    }
  });

  // New-user trial: through /mcp, `tickets__delete_ticket` was refused as "Unknown tool:
  // delete_ticket" (the hop's name, absent from the client's list), and 2026-07-28 results said
  // they came from "demo-kb" while server/discover and the lists said "mcp-gateway".
  it("answers in the aggregate's own names and identity", async () => {
    const mcp = await connectClient(url(), demo.gw.token("support-bot"));
    try {
      for (const name of ["tickets__delete_ticket", "tickets__no_such_tool"]) {
        const err = (await mcp.client.callTool({ name, arguments: { id: "T-1" } }).then(
          () => undefined,
          (e: unknown) => e,
        )) as { code?: number; message?: string; data?: { reason?: string; request_id?: unknown } };
        expect(err?.code).toBe(-32602);
        expect(err?.message).toContain(`Unknown tool: ${name}`);
        expect(err?.data?.reason).toBe("tool_unknown");
        // The hop's audit record: the per-server path's request id is kept.
        expect(typeof err?.data?.request_id).toBe("string");
      }
    } finally {
      await mcp.close();
    }
    const client = await connectModern(url(), demo.gw.token("support-bot"));
    try {
      const serverInfo = (r: { _meta?: Record<string, unknown> }) =>
        r._meta?.["io.modelcontextprotocol/serverInfo"];
      const called = await client.callTool({ name: "kb__search_articles", arguments: { query: "refund" } });
      expect(serverInfo(called)).toEqual({ name: "mcp-gateway", version: "1.0.0" });
      const read = await client.readResource({ uri: "kb.kb://style-guide" });
      expect(serverInfo(read)).toEqual({ name: "mcp-gateway", version: "1.0.0" });
      const prompt = await client.getPrompt({ name: "kb__answer_from_kb", arguments: { question: "q?" } });
      expect(serverInfo(prompt)).toEqual({ name: "mcp-gateway", version: "1.0.0" });
      const denied = await client.callTool({ name: "tickets__delete_ticket", arguments: { id: "T-1" } }).then(
        () => "resolved",
        (e: Error) => e.message,
      );
      expect(denied).toContain("Unknown tool: tickets__delete_ticket");
    } finally {
      await client.close();
    }
  });
});
