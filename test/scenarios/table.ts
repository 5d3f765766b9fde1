import { expect } from "vitest";
import type { Reason } from "../../ext-service/src/policy/reasons.js";

/**
 * One scenario table for both data planes: the local edge (over HTTP, test/scenarios/edge.test.ts)
 * and the Envoy adapters (ext_authz + ext_proc over gRPC). Rows are data only; how a row is sent
 * is the runner's business. The rows assume the demo setup: examples/gateway.yaml (agents
 * research-bot, support-bot, release-bot and their roles) and registry/registry.yaml (servers
 * kb, tickets, deploy), with the dev issuer. A behaviour that differs between planes is a bug.
 */

/** Who calls. Tokens are minted by the runner with the dev issuer's key (see identity.ts). */
export type Identity =
  | { agent: string }
  | { token: "none" }
  /** `Authorization: Bearer not-a-jwt` */
  | { token: "malformed" }
  | { token: "expired"; agent: string }
  | { token: "wrong_audience"; agent: string }
  | { token: "unknown_issuer"; agent: string }
  /** Signed by a key the gateway does not trust, under the trusted key's kid. */
  | { token: "foreign_key"; agent: string }
  /** An unsigned token (`alg: none`). */
  | { token: "alg_none"; agent: string };

export type Body =
  | { json: unknown }
  | { text: string }
  /** Raw bytes, hex encoded (for bodies that are not valid UTF-8). */
  | { hex: string }
  /** `json` serialised, then padded with spaces to exactly `padTo` bytes. */
  | { json: unknown; padTo: number };

export interface ScenarioRequest {
  method: "POST" | "GET" | "DELETE" | "PUT";
  path: string;
  /**
   * Header changes over the defaults (POST: content-type application/json, accept
   * "application/json, text/event-stream", mcp-protocol-version 2025-06-18; GET: accept
   * text/event-stream). `null` removes a default.
   */
  headers?: Record<string, string | null>;
  body?: Body;
  /**
   * The request belongs to an initialized MCP session of the identity's agent on that server:
   * "shared" may reuse one, "fresh" needs its own (the row ends or holds it).
   */
  session?: "shared" | "fresh";
}

export type Expected =
  /** Allowed: the request reaches the MCP server. */
  | {
      verdict: "forward";
      /** HTTP status the demo server answers with. */
      status: number;
      /** "result": the answer carries a JSON-RPC result for the request; "none": no body (202). */
      answer?: "result" | "none";
      /** For tools/list: the tool names the agent sees after filtering, in server order. */
      tools?: string[];
      /** A server-to-client stream (GET) opens. */
      stream?: true;
    }
  /** Refused by the gateway with a JSON-RPC error (one per request for a batch). */
  | {
      verdict: "deny";
      status: number;
      code: number;
      reason: Reason;
      /** For batches: each request's error, in request order. */
      batch?: { code: number; reason: Reason }[];
      /** Response headers that must start with the given text. */
      headers?: Record<string, string>;
    }
  /** Answered by the gateway itself (RFC 9728 metadata), without identity. */
  | { verdict: "local"; status: number; json: Record<string, unknown>; absent?: string[] };

export interface Scenario {
  name: string;
  identity: Identity;
  request: ScenarioRequest;
  expect: Expected;
}

const call = (name: string, args: Record<string, unknown> = {}, id = 1) => ({
  json: { jsonrpc: "2.0", id, method: "tools/call", params: { name, arguments: args } },
});
const req = (method: string, params?: Record<string, unknown>, id = 1) => ({
  json: { jsonrpc: "2.0", id, method, ...(params ? { params } : {}) },
});
const listTools = req("tools/list");
const RESEARCH = { agent: "research-bot" };
const SUPPORT = { agent: "support-bot" };
const RELEASE = { agent: "release-bot" };
const UNAUTHORIZED = { "www-authenticate": 'Bearer resource_metadata="' };

const deny = (status: number, code: number, reason: Reason, headers?: Record<string, string>): Expected => ({
  verdict: "deny",
  status,
  code,
  reason,
  ...(headers ? { headers } : {}),
});

function nested(depth: number): unknown {
  let v: unknown = 1;
  for (let i = 0; i < depth; i++) v = [v];
  return { jsonrpc: "2.0", id: 1, method: "ping", params: { deep: v } };
}

export const scenarios: readonly Scenario[] = [
  // identity
  {
    name: "no token",
    identity: { token: "none" },
    request: { method: "POST", path: "/mcp/kb", body: listTools },
    expect: deny(401, -32001, "token_missing", UNAUTHORIZED),
  },
  {
    name: "not a JWT",
    identity: { token: "malformed" },
    request: { method: "POST", path: "/mcp/kb", body: listTools },
    expect: deny(401, -32001, "token_malformed", UNAUTHORIZED),
  },
  {
    name: "not a bearer scheme",
    identity: { token: "none" },
    request: {
      method: "POST",
      path: "/mcp/kb",
      headers: { authorization: "Basic dXNlcjpwYXNz" },
      body: listTools,
    },
    expect: deny(401, -32001, "token_malformed", UNAUTHORIZED),
  },
  {
    name: "expired token",
    identity: { token: "expired", agent: "research-bot" },
    request: { method: "POST", path: "/mcp/kb", body: listTools },
    expect: deny(401, -32001, "jwt_expired", UNAUTHORIZED),
  },
  {
    name: "token for another audience",
    identity: { token: "wrong_audience", agent: "research-bot" },
    request: { method: "POST", path: "/mcp/kb", body: listTools },
    expect: deny(401, -32001, "jwt_audience_invalid", UNAUTHORIZED),
  },
  {
    name: "token from an unknown issuer",
    identity: { token: "unknown_issuer", agent: "research-bot" },
    request: { method: "POST", path: "/mcp/kb", body: listTools },
    expect: deny(401, -32001, "jwt_issuer_unknown", UNAUTHORIZED),
  },
  {
    name: "token signed by a foreign key",
    identity: { token: "foreign_key", agent: "research-bot" },
    request: { method: "POST", path: "/mcp/kb", body: listTools },
    expect: deny(401, -32001, "jwt_signature_invalid", UNAUTHORIZED),
  },
  {
    name: "unsigned token (alg none)",
    identity: { token: "alg_none", agent: "research-bot" },
    request: { method: "POST", path: "/mcp/kb", body: listTools },
    expect: deny(401, -32001, "jwt_algorithm_rejected", UNAUTHORIZED),
  },
  {
    name: "client-sent x-mcp-agent does not change who calls",
    identity: RESEARCH,
    request: {
      method: "POST",
      path: "/mcp/tickets",
      headers: { "x-mcp-agent": "support-bot" },
      body: call("create_ticket", { title: "spoofed" }),
      session: "shared",
    },
    expect: deny(200, -32602, "tool_unknown"),
  },
  // routing
  {
    name: "unknown server",
    identity: RESEARCH,
    request: { method: "POST", path: "/mcp/nope", body: listTools },
    expect: deny(404, -32601, "server_unknown"),
  },
  {
    name: "unknown server, no token: 401 as for a real one (names are not revealed before authentication)",
    identity: { token: "none" },
    request: { method: "POST", path: "/mcp/nope", body: listTools },
    expect: deny(401, -32001, "token_missing", UNAUTHORIZED),
  },
  {
    name: "path that is no server name at all, no token",
    identity: { token: "none" },
    request: { method: "POST", path: "/admin", body: listTools },
    expect: deny(404, -32601, "server_unknown"),
  },
  {
    name: "dot-dot path",
    identity: RESEARCH,
    request: { method: "POST", path: "/mcp/../mcp/kb", body: listTools },
    expect: deny(404, -32601, "server_unknown"),
  },
  {
    name: "percent-encoded server name",
    identity: RESEARCH,
    request: { method: "POST", path: "/mcp/%6bb", body: listTools },
    expect: deny(404, -32601, "server_unknown"),
  },
  {
    name: "trailing slash",
    identity: RESEARCH,
    request: { method: "POST", path: "/mcp/kb/", body: listTools },
    expect: deny(404, -32601, "server_unknown"),
  },
  {
    name: "server the agent's roles never reach",
    identity: RESEARCH,
    request: { method: "POST", path: "/mcp/deploy", body: listTools },
    // Answered as an unknown server: a 403 would tell the agent the name exists (F16).
    expect: deny(404, -32601, "server_unknown"),
  },
  {
    name: "protected resource metadata, no token needed",
    identity: { token: "none" },
    request: { method: "GET", path: "/.well-known/oauth-protected-resource/mcp/kb" },
    expect: {
      verdict: "local",
      status: 200,
      json: { resource: expect.stringMatching(/\/mcp\/kb$/), bearer_methods_supported: ["header"] },
      // The demo issuer `mcp-gateway-dev` is no URL: advertising it crashed mcp-remote (B3).
      absent: ["authorization_servers"],
    },
  },
  // HTTP framing
  {
    name: "HTTP method other than POST, GET, DELETE",
    identity: RESEARCH,
    request: { method: "PUT", path: "/mcp/kb", body: listTools },
    expect: deny(405, -32600, "http_method_not_allowed", { allow: "GET, POST, DELETE" }),
  },
  {
    name: "wrong content-type",
    identity: RESEARCH,
    request: { method: "POST", path: "/mcp/kb", headers: { "content-type": "text/plain" }, body: listTools },
    expect: deny(415, -32600, "unsupported_media_type"),
  },
  {
    name: "POST accepting only JSON",
    identity: RESEARCH,
    request: { method: "POST", path: "/mcp/kb", headers: { accept: "application/json" }, body: listTools },
    expect: deny(406, -32600, "not_acceptable"),
  },
  {
    name: "POST without Accept",
    identity: RESEARCH,
    request: { method: "POST", path: "/mcp/kb", headers: { accept: null }, body: listTools },
    expect: deny(406, -32600, "not_acceptable"),
  },
  {
    name: "GET not accepting an event stream",
    identity: RESEARCH,
    request: { method: "GET", path: "/mcp/kb", headers: { accept: "application/json" } },
    expect: deny(406, -32600, "not_acceptable"),
  },
  {
    name: "body over the limit",
    identity: RESEARCH,
    request: { method: "POST", path: "/mcp/kb", body: { json: listTools.json, padTo: 1_048_577 } },
    expect: deny(413, -32600, "body_too_large"),
  },
  // message shape
  {
    name: "malformed JSON",
    identity: RESEARCH,
    request: { method: "POST", path: "/mcp/kb", body: { text: '{"jsonrpc":"2.0","id":1,' } },
    expect: deny(400, -32700, "parse_error"),
  },
  {
    name: "JSON that is not JSON-RPC",
    identity: RESEARCH,
    request: { method: "POST", path: "/mcp/kb", body: { json: { hello: "world" } } },
    expect: deny(400, -32600, "invalid_request"),
  },
  {
    name: "empty batch",
    identity: RESEARCH,
    request: { method: "POST", path: "/mcp/kb", body: { json: [] } },
    expect: deny(400, -32600, "batch_empty"),
  },
  {
    name: "batch over the limit",
    identity: RESEARCH,
    request: {
      method: "POST",
      path: "/mcp/kb",
      body: { json: Array.from({ length: 33 }, (_, i) => ({ jsonrpc: "2.0", id: i + 1, method: "ping" })) },
    },
    expect: deny(400, -32600, "batch_too_large"),
  },
  {
    name: "body that is not UTF-8",
    identity: RESEARCH,
    request: {
      method: "POST",
      path: "/mcp/kb",
      // {"jsonrpc":"2.0","id":1,"method":"ping","x":"<C3 28>"}
      body: {
        hex: Buffer.from('{"jsonrpc":"2.0","id":1,"method":"ping","x":"').toString("hex") + "c328" + "227d",
      },
    },
    expect: deny(400, -32700, "invalid_utf8"),
  },
  {
    name: "JSON nested deeper than the limit",
    identity: RESEARCH,
    request: { method: "POST", path: "/mcp/kb", body: { json: nested(70) } },
    expect: deny(400, -32600, "json_too_deep"),
  },
  {
    name: "Mcp-Method header contradicting the body",
    identity: RESEARCH,
    request: {
      method: "POST",
      path: "/mcp/kb",
      headers: { "mcp-method": "ping" },
      body: listTools,
      session: "shared",
    },
    expect: deny(400, -32020, "header_mismatch"),
  },
  {
    name: "method MCP does not define",
    identity: RESEARCH,
    request: { method: "POST", path: "/mcp/kb", body: req("tools/delete"), session: "shared" },
    expect: deny(200, -32601, "method_unknown"),
  },
  {
    name: "tools/call without a name",
    identity: RESEARCH,
    request: {
      method: "POST",
      path: "/mcp/kb",
      body: req("tools/call", { arguments: {} }),
      session: "shared",
    },
    expect: deny(200, -32602, "invalid_params"),
  },
  // policy on messages
  {
    name: "initialize",
    identity: RESEARCH,
    request: {
      method: "POST",
      path: "/mcp/kb",
      body: req("initialize", {
        protocolVersion: "2025-06-18",
        capabilities: {},
        clientInfo: { name: "scenario", version: "1" },
      }),
    },
    expect: { verdict: "forward", status: 200, answer: "result" },
  },
  {
    name: "ping",
    identity: RESEARCH,
    request: { method: "POST", path: "/mcp/kb", body: req("ping"), session: "shared" },
    expect: { verdict: "forward", status: 200, answer: "result" },
  },
  {
    name: "research-bot lists kb tools",
    identity: RESEARCH,
    request: { method: "POST", path: "/mcp/kb", body: listTools, session: "shared" },
    expect: { verdict: "forward", status: 200, answer: "result", tools: ["search_articles", "get_article"] },
  },
  {
    name: "research-bot lists ticket tools: read only",
    identity: RESEARCH,
    request: { method: "POST", path: "/mcp/tickets", body: listTools, session: "shared" },
    expect: { verdict: "forward", status: 200, answer: "result", tools: ["list_tickets", "get_ticket"] },
  },
  {
    name: "support-bot lists ticket tools: no delete",
    identity: SUPPORT,
    request: { method: "POST", path: "/mcp/tickets", body: listTools, session: "shared" },
    expect: {
      verdict: "forward",
      status: 200,
      answer: "result",
      tools: ["list_tickets", "get_ticket", "create_ticket"],
    },
  },
  {
    name: "support-bot creates a ticket",
    identity: SUPPORT,
    request: {
      method: "POST",
      path: "/mcp/tickets",
      body: call("create_ticket", { title: "From the table" }),
      session: "shared",
    },
    expect: { verdict: "forward", status: 200, answer: "result" },
  },
  {
    name: "research-bot may not create a ticket: unknown tool",
    identity: RESEARCH,
    request: {
      method: "POST",
      path: "/mcp/tickets",
      body: call("create_ticket", { title: "Nope" }),
      session: "shared",
    },
    expect: deny(200, -32602, "tool_unknown"),
  },
  {
    name: "support-bot may not delete (explicit deny rule)",
    identity: SUPPORT,
    request: {
      method: "POST",
      path: "/mcp/tickets",
      body: call("delete_ticket", { id: "T-1" }),
      session: "shared",
    },
    expect: deny(200, -32602, "tool_unknown"),
  },
  {
    name: "nobody may run_command (critical, denied)",
    identity: RELEASE,
    request: {
      method: "POST",
      path: "/mcp/deploy",
      body: call("run_command", { command: "uptime" }),
      session: "shared",
    },
    expect: deny(200, -32602, "tool_unknown"),
  },
  {
    name: "release-bot deploys to staging",
    identity: RELEASE,
    request: {
      method: "POST",
      path: "/mcp/deploy",
      body: call("deploy_service", { service: "search", version: "1.9.1", environment: "staging" }),
      session: "shared",
    },
    expect: { verdict: "forward", status: 200, answer: "result" },
  },
  {
    name: "release-bot may not deploy to production without the scope (CEL): refused by policy, not unknown",
    identity: RELEASE,
    request: {
      method: "POST",
      path: "/mcp/deploy",
      body: call("deploy_service", { service: "search", version: "1.9.1", environment: "production" }),
      session: "shared",
    },
    // deploy_service is in release-bot's tools/list: "Unknown tool" would read as a gateway bug.
    expect: deny(200, -32010, "policy_denied"),
  },
  {
    name: "release-bot reads deploy status",
    identity: RELEASE,
    request: {
      method: "POST",
      path: "/mcp/deploy",
      body: call("deploy_status", { service: "billing" }),
      session: "shared",
    },
    expect: { verdict: "forward", status: 200, answer: "result" },
  },
  {
    name: "unregistered tool",
    identity: RESEARCH,
    request: { method: "POST", path: "/mcp/kb", body: call("drop_database"), session: "shared" },
    expect: deny(200, -32602, "tool_unknown"),
  },
  {
    name: "research-bot gets a kb prompt",
    identity: RESEARCH,
    request: {
      method: "POST",
      path: "/mcp/kb",
      body: req("prompts/get", { name: "answer_from_kb", arguments: { question: "refunds?" } }),
      session: "shared",
    },
    expect: { verdict: "forward", status: 200, answer: "result" },
  },
  {
    name: "prompt outside the agent's grants",
    identity: RESEARCH,
    request: {
      method: "POST",
      path: "/mcp/tickets",
      body: req("prompts/get", { name: "escalate" }),
      session: "shared",
    },
    expect: deny(200, -32602, "prompt_unknown"),
  },
  {
    name: "support-bot reads a kb resource",
    identity: SUPPORT,
    request: {
      method: "POST",
      path: "/mcp/kb",
      body: req("resources/read", { uri: "kb://style-guide" }),
      session: "shared",
    },
    expect: { verdict: "forward", status: 200, answer: "result" },
  },
  {
    name: "resource outside the agent's grants",
    identity: RESEARCH,
    request: {
      method: "POST",
      path: "/mcp/tickets",
      body: req("resources/read", { uri: "file:///etc/passwd" }),
      session: "shared",
    },
    expect: deny(200, -32602, "resource_unknown"),
  },
  {
    name: "batch with one denied request: nothing is forwarded",
    identity: SUPPORT,
    request: {
      method: "POST",
      path: "/mcp/tickets",
      body: { json: [call("list_tickets", {}, 1).json, call("delete_ticket", { id: "T-2" }, 2).json] },
      session: "shared",
    },
    expect: {
      verdict: "deny",
      status: 200,
      code: -32010,
      reason: "batch_rejected",
      batch: [
        { code: -32010, reason: "batch_rejected" },
        { code: -32602, reason: "tool_unknown" },
      ],
    },
  },
  // sessions and streams
  {
    name: "notification: 202 without a body",
    identity: RESEARCH,
    request: {
      method: "POST",
      path: "/mcp/kb",
      body: { json: { jsonrpc: "2.0", method: "notifications/initialized" } },
      session: "shared",
    },
    expect: { verdict: "forward", status: 202, answer: "none" },
  },
  {
    name: "GET opens the server-to-client stream",
    identity: SUPPORT,
    request: { method: "GET", path: "/mcp/tickets", session: "fresh" },
    expect: { verdict: "forward", status: 200, stream: true },
  },
  {
    name: "DELETE ends a session",
    identity: SUPPORT,
    request: { method: "DELETE", path: "/mcp/tickets", session: "fresh" },
    expect: { verdict: "forward", status: 200 },
  },
];
