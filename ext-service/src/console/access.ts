import type { IncomingMessage } from "node:http";
import { accessMatrix, type AccessMatrix } from "../policy/access-matrix.js";
import type { PolicyEngine } from "../policy/engine.js";
import { explainToolCall, type ExplainRequest, type ToolCallExplanation } from "../policy/explain.js";

/**
 * The Access page's data: the permission matrix (policy/access-matrix.ts) and the answer to "may
 * this agent call this tool with these arguments?", from the same `explainToolCall` that
 * `mcp-gateway explain` prints, run on the policy in force. The arguments are only decided on:
 * never logged, never stored.
 */

export interface AccessPage extends AccessMatrix {
  /** The configured issuers (an agent is its issuer and subject), for the question box. */
  issuers: { issuer: string; trust_token_roles: boolean }[];
}

export function accessPage(engine: PolicyEngine, query: URLSearchParams): AccessPage {
  return {
    ...accessMatrix(engine, query.get("by") === "role" ? "role" : "agent"),
    issuers: engine.config.auth.issuers.map((i) => ({
      issuer: i.issuer,
      trust_token_roles: i.trustTokenRoles,
    })),
  };
}

export type ExplainAnswer = { ok: true; explanation: ToolCallExplanation } | { ok: false; message: string };

const EXPLAIN_FIELDS: ReadonlySet<string> = new Set([
  "agent",
  "server",
  "tool",
  "arguments",
  "roles",
  "claims",
  "issuer",
]);

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Reads an explain question, `{"agent", "server", "tool", "arguments"?, "roles"?, "claims"?,
 * "issuer"?}` (the options of `mcp-gateway explain`), and answers it.
 */
export function explainQuestion(engine: PolicyEngine, body: unknown): ExplainAnswer {
  if (!isObject(body)) return { ok: false, message: "The body must be a JSON object" };
  const unknown = Object.keys(body).filter((k) => !EXPLAIN_FIELDS.has(k));
  if (unknown.length > 0) return { ok: false, message: `Unknown field: ${unknown.join(", ")}` };
  const { agent, server, tool, roles, claims, issuer } = body;
  for (const [name, value] of [
    ["agent", agent],
    ["server", server],
    ["tool", tool],
  ] as const) {
    if (typeof value !== "string" || value.trim() === "") {
      return { ok: false, message: `${name} is required (a string)` };
    }
  }
  if (roles !== undefined && (!Array.isArray(roles) || roles.some((r) => typeof r !== "string"))) {
    return { ok: false, message: "roles must be a list of strings" };
  }
  if (claims !== undefined && !isObject(claims))
    return { ok: false, message: "claims must be a JSON object" };
  if (issuer !== undefined && (typeof issuer !== "string" || issuer === "")) {
    return { ok: false, message: "issuer must be a string" };
  }
  // A token from any other issuer is refused before any rule is read (jwt_issuer_unknown): an
  // answer about its roles would describe a call that cannot happen.
  const issuers = engine.config.auth.issuers.map((i) => i.issuer);
  if (issuer !== undefined && !issuers.includes(issuer as string)) {
    return {
      ok: false,
      message: `issuer '${bounded(issuer as string)}' is not configured (auth.issuers: ${issuers.join(", ") || "none"}); its tokens are refused as jwt_issuer_unknown`,
    };
  }
  const request: ExplainRequest = {
    agent: (agent as string).trim(),
    server: (server as string).trim(),
    tool: (tool as string).trim(),
    arguments: body.arguments,
    tokenRoles: ((roles as string[] | undefined) ?? []).map((r) => r.trim()).filter(Boolean),
    ...(claims !== undefined ? { claims: claims as Record<string, unknown> } : {}),
    ...(issuer !== undefined ? { issuer: issuer as string } : {}),
  };
  return { ok: true, explanation: explainToolCall(engine, request) };
}

function bounded(text: string, max = 128): string {
  return text.length <= max ? text : `${text.slice(0, max)}…`;
}

/** Whether the request says its body is JSON (a cross-site form cannot, without a preflight). */
export function sendsJson(req: IncomingMessage): boolean {
  const type = req.headers["content-type"] ?? "";
  return type.split(";")[0]!.trim().toLowerCase() === "application/json";
}
