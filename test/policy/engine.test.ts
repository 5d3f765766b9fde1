import { beforeAll, describe, expect, it } from "vitest";
import type { Exchange } from "../../ext-service/src/policy/exchange.js";
import type { HttpReply, PolicyEngine } from "../../ext-service/src/policy/engine.js";
import { REGISTRY, T0, engineFor, gatewayFor, makeKey, sign, type TestKey } from "./support.js";

let key: TestKey;
let engine: PolicyEngine;
const tokens: Record<string, string> = {};

beforeAll(async () => {
  key = await makeKey("ES256", "k1");
  engine = engineFor(gatewayFor(key.publicJwk), REGISTRY);
  for (const sub of ["research-bot", "support-bot", "limited-bot", "nobody-bot"]) {
    tokens[sub] = await sign(key, { iss: "https://idp.example", aud: "mcp-gateway", sub });
  }
});

const body = (v: unknown) => new TextEncoder().encode(typeof v === "string" ? v : JSON.stringify(v));
const json = (reply: HttpReply) => JSON.parse(reply.body);

async function admitted(agent: string, server = "tickets"): Promise<Exchange> {
  const exchange = engine.newExchange("POST");
  const a = await engine.admit(
    { method: "POST", path: `/mcp/${server}`, headers: { authorization: `Bearer ${tokens[agent]}` } },
    exchange,
  );
  expect(a.ok).toBe(true);
  return exchange;
}

function reply(exchange: Exchange, message: unknown, headers: Record<string, string> = {}): HttpReply {
  const v = engine.evaluateRequestBody(exchange, body(message), headers);
  if (v.action !== "reply") throw new Error("expected a reply");
  return v.reply;
}

const call = (id: number | string, name: unknown, args: unknown = {}) => ({
  jsonrpc: "2.0",
  id,
  method: "tools/call",
  params: { name, arguments: args },
});

describe("admit", () => {
  it("answers 404 with a JSON-RPC error for an unknown server or path", async () => {
    for (const path of [
      "/mcp/nope",
      "/mcp/kb/extra",
      "/mcp/KB",
      "/mcp/%6bb",
      "/mcp/",
      "/",
      "/mcp/kb/../tickets",
      "/mcp/-kb",
    ]) {
      const exchange = engine.newExchange("POST", "req-1");
      const a = await engine.admit(
        { method: "POST", path, headers: { authorization: `Bearer ${tokens["support-bot"]}` } },
        exchange,
      );
      expect(a.ok, path).toBe(false);
      if (a.ok) continue;
      expect(a.reply.status, path).toBe(404);
      expect(a.reply.headers["content-type"]).toBe("application/json");
      expect(json(a.reply)).toEqual({
        jsonrpc: "2.0",
        id: null,
        error: {
          code: -32601,
          message: "No such MCP server",
          data: { reason: "server_unknown", request_id: "req-1" },
        },
      });
      expect(exchange).toMatchObject({ decision: "deny", reasons: ["server_unknown"] });
    }
  });

  it("answers 401 with WWW-Authenticate pointing at the resource metadata", async () => {
    const exchange = engine.newExchange("POST", "req-2");
    const a = await engine.admit({ method: "POST", path: "/mcp/kb", headers: {} }, exchange);
    expect(a.ok).toBe(false);
    if (a.ok) return;
    expect(a.reply.status).toBe(401);
    expect(a.reply.headers["www-authenticate"]).toBe(
      'Bearer resource_metadata="https://gw.example/.well-known/oauth-protected-resource/mcp/kb"',
    );
    expect(json(a.reply).error).toEqual({
      code: -32001,
      message: "Authentication required",
      data: { reason: "token_missing", request_id: "req-2" },
    });
    const bad = engine.newExchange("POST");
    const b = await engine.admit(
      { method: "POST", path: "/mcp/kb?x=1", headers: { authorization: "Bearer x.y.z" } },
      bad,
    );
    expect(!b.ok && b.reply.status).toBe(401);
    expect(!b.ok && b.reply.headers["www-authenticate"]).toBe(
      'Bearer resource_metadata="https://gw.example/.well-known/oauth-protected-resource/mcp/kb", error="invalid_token"',
    );
    expect(!b.ok && json(b.reply).error.data).toMatchObject({ reason: "token_malformed" });
  });

  it("answers 401 for an expired token", async () => {
    const expired = await sign(key, {
      iss: "https://idp.example",
      aud: "mcp-gateway",
      sub: "support-bot",
      exp: T0 - 3600,
    });
    const a = await engine.admit(
      { method: "POST", path: "/mcp/kb", headers: { authorization: `Bearer ${expired}` } },
      engine.newExchange("POST"),
    );
    expect(!a.ok && [a.reply.status, json(a.reply).error.data.reason]).toEqual([401, "jwt_expired"]);
  });

  it("answers a server the agent may not reach exactly as an unknown one (404), auditing the real reason", async () => {
    for (const [agent, server] of [
      ["research-bot", "tickets"],
      ["nobody-bot", "kb"],
      ["support-bot", "deploy"],
    ] as const) {
      const exchange = engine.newExchange("POST");
      const a = await engine.admit(
        { method: "POST", path: `/mcp/${server}`, headers: { authorization: `Bearer ${tokens[agent]}` } },
        exchange,
      );
      expect(a.ok).toBe(false);
      if (a.ok) continue;
      // Same status, code, message and reason as a name nobody registered: no 403/404 oracle.
      const unknown = await engine.admit(
        { method: "POST", path: "/mcp/nosuch", headers: { authorization: `Bearer ${tokens[agent]}` } },
        engine.newExchange("POST"),
      );
      expect(a.reply.status).toBe(404);
      const { request_id: _forbiddenId, ...forbidden } = json(a.reply).error.data;
      expect(!unknown.ok && unknown.reply.status).toBe(404);
      const unknownError = !unknown.ok && json(unknown.reply).error;
      expect(json(a.reply).error.message).toBe(unknownError.message);
      expect(json(a.reply).error.code).toBe(unknownError.code);
      expect(forbidden).toEqual({ reason: "server_unknown" });
      expect(a.reply.headers["www-authenticate"]).toBeUndefined();
      expect(exchange.principal?.agent).toBe(agent);
      expect(exchange.reasons).toEqual(["server_forbidden"]);
    }
  });

  it("admits an agent that may use something on the server", async () => {
    const exchange = engine.newExchange("POST");
    const a = await engine.admit(
      { method: "POST", path: "/mcp/tickets", headers: { authorization: `Bearer ${tokens["limited-bot"]}` } },
      exchange,
    );
    expect(a).toMatchObject({
      ok: true,
      server: "tickets",
      principal: { agent: "limited-bot", roles: ["limited"] },
    });
    expect(exchange).toMatchObject({ server: "tickets", decision: "allow", reasons: [] });
  });

  it("serves RFC 9728 metadata without a token, for the gateway and per server", async () => {
    const perServer = await engine.admit(
      { method: "GET", path: "/.well-known/oauth-protected-resource/mcp/kb", headers: {} },
      engine.newExchange("GET"),
    );
    expect(!perServer.ok && perServer.reply.status).toBe(200);
    expect(!perServer.ok && json(perServer.reply)).toEqual({
      resource: "https://gw.example/mcp/kb",
      authorization_servers: ["https://idp.example"],
      bearer_methods_supported: ["header"],
      resource_name: "MCP server 'kb' via mcp-gateway",
    });
    const root = await engine.admit(
      { method: "GET", path: "/.well-known/oauth-protected-resource?x", headers: {} },
      engine.newExchange("GET"),
    );
    expect(!root.ok && json(root.reply)).toMatchObject({
      resource: "https://gw.example",
      resource_name: "mcp-gateway",
    });
    // An unregistered name gets the same document as a registered one, so the metadata route
    // does not list the registry; it stays out of the audit record's server field.
    const unknownExchange = engine.newExchange("GET");
    const unknown = await engine.admit(
      { method: "GET", path: "/.well-known/oauth-protected-resource/mcp/nope", headers: {} },
      unknownExchange,
    );
    expect(!unknown.ok && unknown.reply.status).toBe(200);
    expect(!unknown.ok && json(unknown.reply)).toMatchObject({ resource: "https://gw.example/mcp/nope" });
    expect(unknownExchange.server).toBeUndefined();
    const notAName = await engine.admit(
      { method: "GET", path: "/.well-known/oauth-protected-resource/mcp/../kb", headers: {} },
      engine.newExchange("GET"),
    );
    expect(!notAName.ok && notAName.reply.status).toBe(404);
  });

  // New-user trial: a client of /mcp that follows RFC 9728 section 3.1 asks for
  // /.well-known/oauth-protected-resource/mcp first; it was 404, and a 401 on /mcp pointed at the
  // gateway's root document, whose resource is not /mcp.
  it("serves the aggregated endpoint its own RFC 9728 metadata, where its 401 points", async () => {
    for (const path of ["/mcp", "/mcp/views/support"]) {
      const meta = await engine.admit(
        { method: "GET", path: `/.well-known/oauth-protected-resource${path}`, headers: {} },
        engine.newExchange("GET"),
      );
      expect(!meta.ok && meta.reply.status).toBe(200);
      expect(!meta.ok && json(meta.reply)).toEqual({
        resource: `https://gw.example${path}`,
        authorization_servers: ["https://idp.example"],
        bearer_methods_supported: ["header"],
        resource_name: `Every MCP server (${path}) via mcp-gateway`,
      });
      const refused = await engine.admitBroker(
        { method: "POST", path, headers: {} },
        engine.newExchange("POST"),
      );
      expect(!refused.ok && refused.reply.status).toBe(401);
      expect(!refused.ok && refused.reply.headers["www-authenticate"]).toBe(
        `Bearer resource_metadata="https://gw.example/.well-known/oauth-protected-resource${path}"`,
      );
    }
    const notAView = await engine.admit(
      { method: "GET", path: "/.well-known/oauth-protected-resource/mcp/views/../kb", headers: {} },
      engine.newExchange("GET"),
    );
    expect(!notAView.ok && notAView.reply.status).toBe(404);
  });

  it("authenticates before looking the server up: without a token, known and unknown names answer alike", async () => {
    const challenge = async (path: string, authorization?: string) => {
      const exchange = engine.newExchange("POST");
      const headers = authorization ? { authorization } : {};
      const admission = await engine.admit({ method: "POST", path, headers }, exchange);
      if (admission.ok) throw new Error("admitted");
      const body = json(admission.reply) as { error: { data: { reason: string } } };
      return {
        status: admission.reply.status,
        reason: body.error.data.reason,
        challenge: admission.reply.headers["www-authenticate"]?.replace(/mcp\/[a-z]+/, "mcp/<name>"),
        server: exchange.server,
      };
    };
    for (const authorization of [undefined, "Bearer not-a-jwt"]) {
      const known = await challenge("/mcp/kb", authorization);
      const unknown = await challenge("/mcp/nope", authorization);
      expect(known.status).toBe(401);
      expect({ ...unknown, server: "kb" }).toEqual(known);
      expect(unknown.server).toBeUndefined();
    }
    const withToken = await challenge("/mcp/nope", `Bearer ${tokens["support-bot"]}`);
    expect(withToken).toMatchObject({ status: 404, reason: "server_unknown" });
  });
});

describe("evaluateRequestBody: single messages", () => {
  it("forwards an allowed call and remembers it for the response", async () => {
    const exchange = await admitted("support-bot");
    expect(
      engine.evaluateRequestBody(exchange, body(call(1, "list_tickets", { status: "open" })), {}),
    ).toEqual({
      action: "forward",
      batch: false,
      toolCalls: [
        {
          id: 1,
          server: "tickets",
          name: "list_tickets",
          tool: expect.objectContaining({ name: "list_tickets", cost: 1 }),
          arguments: { status: "open" },
        },
      ],
    });
    expect(exchange.methods).toEqual(["tools/call"]);
    expect(exchange.tools).toEqual(["list_tickets"]);
    expect(exchange.pending.get("n:1")).toEqual({ method: "tools/call", target: "list_tickets" });
    expect(exchange.decision).toBe("allow");
  });

  it("reports unregistered, forbidden and deprecated tools alike, as unknown (-32602)", async () => {
    const answers: Record<string, unknown> = {};
    for (const [name, id] of [
      ["no_such_tool", 7],
      ["delete_ticket", "abc"],
      ["old_export", 9],
    ] as const) {
      const exchange = await admitted("support-bot");
      const r = reply(exchange, call(id, name));
      expect(r.status).toBe(200);
      const b = json(r);
      expect(b.id).toBe(id);
      expect(b.error).toMatchObject({
        code: -32602,
        message: `Unknown tool: ${name}`,
        data: { request_id: exchange.requestId },
      });
      answers[name] = b.error.data.reason;
      expect(exchange.decision).toBe("deny");
    }
    expect(answers).toEqual({
      no_such_tool: "tool_unknown",
      delete_ticket: "tool_unknown",
      old_export: "tool_deprecated",
    });
  });

  it("does not reveal that a tool exists (even deprecated) to an agent that may not use it", async () => {
    const bodies = [];
    for (const name of ["no_such_tool", "delete_ticket", "old_export", "new_export"]) {
      const exchange = await admitted("limited-bot");
      const r = json(reply(exchange, call(1, "x")));
      const s = json(reply(await admitted("limited-bot"), call(1, name)));
      expect(r.error.data.reason).toBe("tool_unknown");
      bodies.push({
        ...s.error,
        message: s.error.message.replace(name, "x"),
        data: { ...s.error.data, request_id: "-" },
      });
    }
    expect(new Set(bodies.map((b) => JSON.stringify(b))).size).toBe(1);
  });

  it("offers a tool until its deprecation date", async () => {
    expect(
      engine.evaluateRequestBody(await admitted("support-bot"), body(call(1, "new_export")), {}),
    ).toMatchObject({ action: "forward", toolCalls: [{ name: "new_export" }] });
    const later = engineFor(gatewayFor(key.publicJwk), REGISTRY, () => Date.parse("2027-01-01T00:00:00Z"));
    const exchange = later.newExchange("POST");
    exchange.principal = {
      agent: "support-bot",
      roles: ["support"],
      claims: {},
      issuer: undefined,
      anonymous: false,
    };
    exchange.server = "tickets";
    const v = later.evaluateRequestBody(exchange, body(call(1, "new_export")), {});
    expect(v.action === "reply" && JSON.parse(v.reply.body).error.data.reason).toBe("tool_deprecated");
  });

  it("answers unknown methods with -32601", async () => {
    const r = json(reply(await admitted("support-bot"), { jsonrpc: "2.0", id: 2, method: "tools/destroy" }));
    expect(r).toMatchObject({
      id: 2,
      error: { code: -32601, message: "Method not found: tools/destroy", data: { reason: "method_unknown" } },
    });
  });

  it("answers a call without a tool name with invalid_params", async () => {
    for (const params of [{}, { name: 5 }, undefined, ["list_tickets"]]) {
      const r = json(
        reply(await admitted("support-bot"), {
          jsonrpc: "2.0",
          id: 3,
          method: "tools/call",
          ...(params ? { params } : {}),
        }),
      );
      expect(r.error).toMatchObject({
        code: -32602,
        message: "Invalid params: 'name' is required",
        data: { reason: "invalid_params" },
      });
    }
    const res = json(
      reply(await admitted("research-bot", "kb"), {
        jsonrpc: "2.0",
        id: 3,
        method: "resources/read",
        params: {},
      }),
    );
    expect(res.error.message).toBe("Invalid params: 'uri' is required");
  });

  it("decides prompts and resources", async () => {
    const ex = await admitted("research-bot", "kb");
    expect(
      engine.evaluateRequestBody(
        ex,
        body({ jsonrpc: "2.0", id: 1, method: "prompts/get", params: { name: "summarise" } }),
        {},
      ),
    ).toEqual({
      action: "forward",
    });
    expect(
      engine.evaluateRequestBody(
        ex,
        body({ jsonrpc: "2.0", id: 2, method: "resources/read", params: { uri: "file:///a/b" } }),
        {},
      ),
    ).toEqual({ action: "forward" });
    const limited = await admitted("support-bot", "tickets");
    const p = json(
      reply(limited, { jsonrpc: "2.0", id: 1, method: "prompts/get", params: { name: "triage" } }),
    );
    expect(p.error).toMatchObject({
      code: -32602,
      message: "Unknown prompt: triage",
      data: { reason: "prompt_unknown" },
    });
    const r = json(
      reply(limited, {
        jsonrpc: "2.0",
        id: 1,
        method: "resources/subscribe",
        params: { uri: "tickets://1" },
      }),
    );
    expect(r.error).toMatchObject({ code: -32602, data: { reason: "resource_unknown" } });
  });

  it("forwards methods that target nothing (initialize, tools/list, ping, ...)", async () => {
    for (const method of [
      "initialize",
      "ping",
      "tools/list",
      "prompts/list",
      "resources/list",
      "logging/setLevel",
      // completion/complete targets a prompt or template: decided as it (security review F6).
    ]) {
      const ex = await admitted("limited-bot");
      expect(
        engine.evaluateRequestBody(ex, body({ jsonrpc: "2.0", id: 1, method, params: {} }), {}),
        method,
      ).toEqual({ action: "forward" });
    }
  });

  it("forwards notifications (any method) and client responses to sampling and elicitation", async () => {
    const ex = await admitted("limited-bot");
    for (const m of [
      { jsonrpc: "2.0", method: "notifications/initialized" },
      { jsonrpc: "2.0", method: "notifications/cancelled", params: { requestId: 1 } },
      { jsonrpc: "2.0", method: "notifications/made_up" },
      {
        jsonrpc: "2.0",
        id: 0,
        result: { role: "assistant", content: { type: "text", text: "x" }, model: "m" },
      },
      { jsonrpc: "2.0", id: "e1", result: { action: "decline" } },
      { jsonrpc: "2.0", id: 5, error: { code: -1, message: "User rejected" } },
    ]) {
      expect(engine.evaluateRequestBody(ex, body(m), {})).toEqual({ action: "forward" });
    }
    expect(ex.decision).toBe("allow");
    expect(ex.pending.size).toBe(0);
  });

  it("checks Mcp-Method and Mcp-Name against the body", async () => {
    const ok = await admitted("support-bot");
    expect(
      engine.evaluateRequestBody(ok, body(call(1, "list_tickets")), {
        "mcp-method": "tools/call",
        "mcp-name": "list_tickets",
      }),
    ).toMatchObject({ action: "forward", toolCalls: [{ name: "list_tickets" }] });
    for (const headers of [
      { "mcp-method": "tools/list" } as Record<string, string>,
      { "mcp-method": "tools/call", "mcp-name": "delete_ticket" },
      { "mcp-name": "other" },
    ]) {
      const r = reply(await admitted("support-bot"), call(1, "list_tickets"), headers);
      expect(r.status).toBe(400);
      expect(json(r).error).toMatchObject({ code: -32020, data: { reason: "header_mismatch" } });
    }
  });
});

describe("evaluateRequestBody: batches", () => {
  it("rejects a batch atomically: the denied request gets its reason, the others batch_rejected", async () => {
    const ex = await admitted("support-bot");
    const r = reply(ex, [
      call(1, "list_tickets"),
      { jsonrpc: "2.0", method: "notifications/progress" },
      call(2, "delete_ticket"),
      call("x", "list_tickets"),
    ]);
    expect(r.status).toBe(200);
    const answers = JSON.parse(r.body) as {
      id: unknown;
      error: { code: number; data: { reason: string } };
    }[];
    expect(answers.map((a) => [a.id, a.error.code, a.error.data.reason])).toEqual([
      [1, -32010, "batch_rejected"],
      [2, -32602, "tool_unknown"],
      ["x", -32010, "batch_rejected"],
    ]);
    expect(ex.reasons).toEqual(["tool_unknown", "batch_rejected"]);
    expect(ex.pending.size).toBe(0);
  });

  it("forwards an allowed batch and remembers every request", async () => {
    const ex = await admitted("support-bot");
    const v = engine.evaluateRequestBody(
      ex,
      body([
        call(1, "list_tickets"),
        { jsonrpc: "2.0", id: "l", method: "tools/list" },
        { jsonrpc: "2.0", id: 9, result: {} },
      ]),
      {},
    );
    expect(v).toMatchObject({ action: "forward", batch: true, toolCalls: [{ id: 1, name: "list_tickets" }] });
    expect(v.action === "forward" && v.toolCalls).toHaveLength(1);
    expect([...ex.pending.keys()]).toEqual(["n:1", "s:l"]);
    expect(ex.methods).toEqual(["tools/call", "tools/list"]);
  });
});

describe("evaluateRequestBody: whole-request refusals answer the request's id", () => {
  const refused = (ex: Exchange, input: unknown, headers: Record<string, string> = {}) => {
    const v = engine.evaluateRequestBody(ex, body(input), headers);
    expect(v.action).toBe("reply");
    return v.action === "reply" ? v.reply : { status: 0, headers: {}, body: "null" };
  };

  it("keeps the id exactly as sent: 0, the empty string, a string that reads as a number", async () => {
    for (const id of [0, "", "7", -1.5]) {
      const ex = await admitted("support-bot");
      const r = refused(ex, call(id, "list_tickets"), { "mcp-method": "tools/list" });
      expect(r.status).toBe(400);
      expect(JSON.parse(r.body)).toMatchObject({ id, error: { data: { reason: "header_mismatch" } } });
    }
  });

  it("answers every request of a refused batch under its own id, and not its notifications", async () => {
    const ex = await admitted("support-bot");
    const r = refused(ex, [
      call(0, "list_tickets"),
      { jsonrpc: "2.0", method: "notifications/progress" },
      call("", "list_tickets"),
      call(0, "list_tickets"),
    ]);
    expect(r.status).toBe(400);
    const answers = JSON.parse(r.body) as { id: unknown; error: { data: { reason: string } } }[];
    expect(answers.map((a) => [a.id, a.error.data.reason])).toEqual([
      [0, "invalid_request"],
      ["", "invalid_request"],
      [0, "invalid_request"],
    ]);
  });

  it("answers a refused notification with id null (it has no id)", async () => {
    const ex = await admitted("support-bot");
    const r = refused(ex, { jsonrpc: "2.0", method: "notifications/progress" }, { "mcp-method": "ping" });
    expect(r.status).toBe(400);
    expect(JSON.parse(r.body)).toMatchObject({ id: null, error: { data: { reason: "header_mismatch" } } });
  });
});

describe("evaluateRequestBody: bad input", () => {
  const cases: [string, string | Uint8Array, number, number, string][] = [
    ["malformed JSON", '{"jsonrpc":"2.0",', 400, -32700, "parse_error"],
    ["not JSON-RPC", '{"hello":"world"}', 400, -32600, "invalid_request"],
    ["missing jsonrpc", '{"id":1,"method":"ping"}', 400, -32600, "invalid_request"],
    ["wrong jsonrpc", '{"jsonrpc":"1.0","id":1,"method":"ping"}', 400, -32600, "invalid_request"],
    ["non-UTF-8", new Uint8Array([0x7b, 0xff, 0x7d]), 400, -32700, "invalid_utf8"],
    [
      "too deep",
      `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"a":${"[".repeat(10)}${"]".repeat(10)}}}`,
      400,
      -32600,
      "json_too_deep",
    ],
    ["empty batch", "[]", 400, -32600, "batch_empty"],
    [
      "batch over the limit",
      JSON.stringify([1, 2, 3, 4, 5].map((id) => ({ jsonrpc: "2.0", id, method: "ping" }))),
      400,
      -32600,
      "batch_too_large",
    ],
    [
      "body over the limit",
      JSON.stringify(call(1, "list_tickets", { pad: "x".repeat(5000) })),
      413,
      -32600,
      "body_too_large",
    ],
  ];
  // A message that is not JSON-RPC but has a readable id is refused under it; else the id is null.
  const readableIds: Record<string, number> = { "missing jsonrpc": 1, "wrong jsonrpc": 1 };
  for (const [name, input, status, code, reason] of cases) {
    it(name, async () => {
      const ex = await admitted("support-bot");
      const v = engine.evaluateRequestBody(ex, typeof input === "string" ? body(input) : input, {});
      expect(v.action).toBe("reply");
      if (v.action !== "reply") return;
      expect(v.reply.status).toBe(status);
      const b = JSON.parse(v.reply.body);
      expect(b).toMatchObject({
        jsonrpc: "2.0",
        id: readableIds[name] ?? null,
        error: { code, data: { reason, request_id: ex.requestId } },
      });
      expect(ex).toMatchObject({ decision: "deny", reasons: [reason] });
    });
  }

  it("fails closed when called without an admitted exchange", () => {
    const v = engine.evaluateRequestBody(engine.newExchange("POST"), body(call(1, "list_tickets")), {});
    expect(v.action === "reply" && [v.reply.status, JSON.parse(v.reply.body).error.data.reason]).toEqual([
      500,
      "internal_error",
    ]);
  });
});

describe("upstreamHeaders", () => {
  it("sets identity, strips the token and every client x-mcp-* header", async () => {
    const ex = await admitted("support-bot");
    expect(
      engine.upstreamHeaders(ex, {
        authorization: "Bearer t",
        "x-mcp-agent": "admin",
        "x-mcp-request-id": "spoof",
        "x-mcp-other": "1",
        "mcp-session-id": "s",
      }),
    ).toEqual({
      set: {
        "x-mcp-agent": "support-bot",
        "x-mcp-request-id": ex.requestId,
        "x-mcp-issuer": "https://idp.example",
      },
      remove: ["authorization", "x-mcp-agent", "x-mcp-request-id", "x-mcp-other"],
    });
  });
});
