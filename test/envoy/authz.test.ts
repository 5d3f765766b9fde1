import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { envoyProtos } from "../../ext-service/src/envoy/protos.js";
import { MCP_POST_HEADERS, jsonResult, startGateway, toolsCall, type Gateway } from "./harness.js";

let gw: Gateway;
const tokens: string[] = [];

beforeAll(async () => {
  gw = await startGateway();
});
afterAll(async () => {
  // Whatever happened, no bearer token reached a log line.
  const text = gw.logs.text();
  for (const t of tokens) expect(text).not.toContain(t);
  await gw.close();
});

async function token(subject: string): Promise<string> {
  const t = await gw.token(subject);
  tokens.push(t);
  return t;
}

const httpStatus = (code: string | number | undefined) => envoyProtos().httpStatusNumber(code);

function headersOf(options: { header: { key: string; value?: string }; append?: { value: boolean } }[] = []) {
  return Object.fromEntries(options.map((o) => [o.header.key, o]));
}

describe("ext_authz Check", () => {
  it("allows: sets identity headers, removes the token and client x-mcp-* headers, returns the principal as metadata", async () => {
    const t = await token("support-bot");
    const headers = {
      ":method": "POST",
      ":path": "/mcp/tickets",
      ":authority": "gateway.test",
      authorization: `Bearer ${t}`,
      "x-mcp-agent": "admin-bot",
      "x-mcp-request-id": "spoofed",
      "x-mcp-roles": "admin",
      "mcp-session-id": gw.session("support-bot", "tickets", "s-1"),
    };
    const res = await gw.client.check(
      gw.client.checkRequest({ method: "POST", path: "/mcp/tickets", headers }, headers),
    );
    expect(res.status.code).toBe(0);
    expect(res.http_response).toBe("ok_response");
    const set = headersOf(res.ok_response?.headers);
    expect(Object.keys(set).sort()).toEqual([
      "mcp-session-id",
      "x-mcp-agent",
      "x-mcp-issuer",
      "x-mcp-request-id",
    ]);
    // The sealed id the client sent becomes the upstream's own id.
    expect(set["mcp-session-id"]).toMatchObject({ header: { value: "s-1" }, append: { value: false } });
    expect(set["x-mcp-issuer"]).toMatchObject({ header: { value: "mcp-gateway-dev" } });
    expect(set["x-mcp-agent"]).toMatchObject({ header: { value: "support-bot" }, append: { value: false } });
    const requestId = set["x-mcp-request-id"]!.header.value!;
    expect(requestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(set["x-mcp-request-id"]!.append).toEqual({ value: false });
    // Never remove what is also set: Envoy may apply removals after the sets.
    expect(res.ok_response?.headers_to_remove?.sort()).toEqual(["authorization", "x-mcp-roles"]);

    const md = Object.fromEntries(
      Object.entries(res.dynamic_metadata?.fields ?? {}).map(([k, v]) => [k, v.kind]),
    );
    expect(md).toEqual({
      agent: "stringValue",
      roles: "listValue",
      claims: "stringValue",
      issuer: "stringValue",
      anonymous: "boolValue",
      request_id: "stringValue",
      server: "stringValue",
      http_method: "stringValue",
    });
    const f = res.dynamic_metadata!.fields!;
    expect(f.agent!.stringValue).toBe("support-bot");
    expect(f.roles!.listValue!.values!.map((v) => v.stringValue)).toEqual(["support"]);
    expect(JSON.parse(f.claims!.stringValue!)).toMatchObject({ sub: "support-bot", iss: "mcp-gateway-dev" });
    expect(f.request_id!.stringValue).toBe(requestId);
    expect(f.server!.stringValue).toBe("tickets");
    expect(f.anonymous!.boolValue).toBe(false);
    // An allowed Check writes no audit record: ext_proc writes it when the exchange ends.
    expect(gw.logs.auditsFor(requestId)).toEqual([]);
  });

  it("the upstream sees the gateway's identity headers, never the token or spoofed x-mcp-* values", async () => {
    const t = await token("support-bot");
    const r = await gw.client.exchange(
      {
        method: "POST",
        path: "/mcp/tickets",
        headers: {
          ...MCP_POST_HEADERS,
          authorization: `Bearer ${t}`,
          "mcp-session-id": gw.session("support-bot", "tickets"),
          "x-mcp-agent": "admin-bot",
          "X-MCP-Request-Id": "spoofed",
          "x-mcp-extra": "1",
        },
        body: JSON.stringify(toolsCall(1, "list_tickets")),
      },
      () => ({ status: 200, headers: { "content-type": "application/json" }, body: jsonResult(1, {}) }),
    );
    const up = r.upstreamRequest!.headers;
    expect(up["x-mcp-agent"]).toBe("support-bot");
    expect(up["x-mcp-request-id"]).toBe(r.authzMetadata!.request_id);
    expect(up.authorization).toBeUndefined();
    expect(up["x-mcp-extra"]).toBeUndefined();
    expect(up["mcp-session-id"]).toBe("session-1");
    expect(up["mcp-protocol-version"]).toBe("2025-06-18");
    expect(gw.logs.auditsFor(up["x-mcp-request-id"]!)).toHaveLength(1);
  });

  it("answers 401 with WWW-Authenticate resource_metadata and a JSON-RPC error when the token is missing", async () => {
    const r = await gw.client.exchange(
      { method: "POST", path: "/mcp/tickets", headers: MCP_POST_HEADERS, body: "{}" },
      () => {
        throw new Error("must not reach the upstream");
      },
    );
    expect(r.answeredBy).toBe("ext_authz");
    expect(r.check.status.code).toBe(16);
    expect(r.check.denied_response?.status?.code).toBe("Unauthorized");
    expect(r.response.status).toBe(401);
    const h = headersOf(r.check.denied_response?.headers);
    expect(h["www-authenticate"]).toMatchObject({
      header: {
        value:
          'Bearer resource_metadata="https://gateway.test/.well-known/oauth-protected-resource/mcp/tickets"',
      },
      append: { value: false },
    });
    expect(h["content-type"]!.header.value).toBe("application/json");
    const body = JSON.parse(r.response.body.toString());
    expect(body).toMatchObject({
      jsonrpc: "2.0",
      id: null,
      error: { code: -32001, data: { reason: "token_missing" } },
    });
    const audits = gw.logs.auditsFor(body.error.data.request_id);
    expect(audits).toHaveLength(1);
    expect(audits[0]).toMatchObject({ decision: "deny", reasons: ["token_missing"], status: 401 });
  });

  it("answers 401 with error=invalid_token for a tampered token", async () => {
    const t = await token("support-bot");
    const [h, p, s] = t.split(".");
    const claims = JSON.parse(Buffer.from(p!, "base64url").toString());
    const forged = `${h}.${Buffer.from(JSON.stringify({ ...claims, sub: "admin" })).toString("base64url")}.${s}`;
    tokens.push(forged);
    const r = await gw.client.exchange(
      { method: "GET", path: "/mcp/tickets", headers: { authorization: `Bearer ${forged}` } },
      () => {
        throw new Error("must not reach the upstream");
      },
    );
    expect(r.response.status).toBe(401);
    expect(r.response.headers["www-authenticate"]).toContain('error="invalid_token"');
    expect(JSON.parse(r.response.body.toString()).error.data.reason).toBe("jwt_signature_invalid");
  });

  it("answers 404, as for an unknown server, when the agent may reach nothing on the server", async () => {
    for (const agent of ["idle-bot", "research-bot"]) {
      const t = await token(agent);
      const r = await gw.client.exchange(
        { method: "GET", path: "/mcp/tickets", headers: { authorization: `Bearer ${t}` } },
        () => {
          throw new Error("must not reach the upstream");
        },
      );
      expect(r.check.status.code).toBe(5);
      expect(r.check.denied_response?.status?.code).toBe("NotFound");
      expect(r.response.status).toBe(404);
      const body = JSON.parse(r.response.body.toString());
      expect(body.error).toMatchObject({
        code: -32601,
        message: "No such MCP server",
        data: { reason: "server_unknown" },
      });
      expect(gw.logs.auditsFor(body.error.data.request_id)[0]).toMatchObject({
        agent,
        status: 404,
        reasons: ["server_forbidden"],
      });
    }
  });

  it("answers 404 for unknown servers and paths", async () => {
    const t = await token("support-bot");
    for (const path of ["/mcp/nope", "/elsewhere", "/mcp/tickets/../kb"]) {
      const r = await gw.client.exchange(
        { method: "GET", path, headers: { authorization: `Bearer ${t}` } },
        () => {
          throw new Error("must not reach the upstream");
        },
      );
      expect(r.check.status.code).toBe(5);
      expect(httpStatus(r.check.denied_response?.status?.code)).toBe(404);
      expect(JSON.parse(r.response.body.toString()).error.data.reason).toBe("server_unknown");
    }
  });

  it("serves RFC 9728 protected resource metadata itself, as a 200 denied_response, without a token", async () => {
    for (const [path, resource] of [
      ["/.well-known/oauth-protected-resource/mcp/tickets", "https://gateway.test/mcp/tickets"],
      ["/.well-known/oauth-protected-resource", "https://gateway.test"],
    ] as const) {
      const r = await gw.client.exchange({ method: "GET", path }, () => {
        throw new Error("must not reach the upstream");
      });
      expect(r.answeredBy).toBe("ext_authz");
      expect(r.check.status.code).not.toBe(0);
      expect(r.check.denied_response?.status?.code).toBe("OK");
      expect(r.response.status).toBe(200);
      expect(r.response.headers["content-type"]).toBe("application/json");
      expect(JSON.parse(r.response.body.toString())).toEqual({
        resource,
        bearer_methods_supported: ["header"],
        resource_name: expect.any(String),
      });
    }
    const metadataAudits = gw.logs.audits().filter((a) => a.status === 200 && a.http_method === "GET");
    expect(metadataAudits.length).toBeGreaterThanOrEqual(2);
  });

  it("fails closed with 500 when the CheckRequest carries no HTTP attributes", async () => {
    const res = await gw.client.check({ attributes: {} });
    expect(res.status.code).toBe(13);
    expect(httpStatus(res.denied_response?.status?.code)).toBe(500);
    expect(JSON.parse(res.denied_response!.body!).error.data.reason).toBe("internal_error");
  });
});
