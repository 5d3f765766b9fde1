import type { PolicyEngine } from "./engine.js";
import type { RuleEvaluation } from "./rbac.js";
import { Reasons, type Reason } from "./reasons.js";

/**
 * "Why was this allowed or denied?" for one tools/call, answered by the code the data planes
 * run: the engine's reachability check (admission) and its body decision (evaluateRequestBody)
 * on the call as an agent would send it, plus the RBAC rules' own account of the decision.
 * Pure like the rest of the core: the caller builds the engine from gateway.yaml, or passes the
 * running gateway's engine (the console), whose state the explanation leaves as it found it.
 */

export interface ExplainRequest {
  agent: string;
  /** `server/tool`'s parts. */
  server: string;
  tool: string;
  /** The call's arguments (checked against the pinned schema, injection and DLP rules). */
  arguments?: unknown;
  /** Roles the token would carry (counted only where the issuer trusts token roles). */
  tokenRoles?: readonly string[];
  /** Claims for CEL conditions (`claims.*`); `sub` is the agent. */
  claims?: Record<string, unknown>;
  /** The token's issuer; the agent's configured issuer by default. */
  issuer?: string;
}

export interface ToolCallExplanation {
  agent: string;
  /** Whether gateway.yaml's `agents` names the agent (else only token roles count). */
  agentConfigured: boolean;
  issuer: string | undefined;
  roles: string[];
  server: string;
  tool: string;
  registry: {
    server: "registered" | "unregistered";
    tool: "registered" | "unregistered" | "deprecated";
    deprecated: string | undefined;
    risk: string | undefined;
    pin: string | undefined;
  };
  /** Whether any allow rule of the agent's roles names the server (else the server reads as unknown). */
  serverReachable: boolean;
  /** Each of the agent's rules, in the order the decision visits them, for this tool. */
  rules: RuleEvaluation[];
  decision: "allow" | "deny" | "error";
  /** The reason code the agent sees (`error.data.reason`); undefined when allowed. */
  reason: Reason | undefined;
  /** The message the agent sees. */
  message: string | undefined;
  /** The precise internal cause (as in the audit record's `causes`). */
  cause: string | undefined;
  /** Reason codes recorded without refusing (e.g. `injection_suspected`). */
  flags: Reason[];
  /** What the answer takes for granted: checks that happen at call time against live state. */
  assumptions: string[];
}

/** Explains one tools/call by `agent` to `server/tool`. */
export function explainToolCall(engine: PolicyEngine, request: ExplainRequest): ToolCallExplanation {
  const { server, tool } = request;
  const principal = engine.authenticator.principalFor(request.agent, {
    ...(request.issuer !== undefined ? { issuer: request.issuer } : {}),
    tokenRoles: request.tokenRoles ?? [],
    claims: request.claims ?? {},
  });
  const registered = engine.registry.server(server);
  const entry = registered?.config.tools.find((t) => t.name === tool);
  const today = engine.today();
  const found = registered ? engine.registry.tool(server, tool, today) : undefined;
  const rules = engine.rbac.explain({
    principal,
    server,
    kind: "tools",
    name: tool,
    arguments: objectOrUndefined(request.arguments),
  }).rules;
  const assumptions = [
    "budgets, approvals and rate limits are checked by the planes after this decision, against the state store",
  ];

  const exchange = engine.newExchange("POST");
  const route = engine.route(`/mcp/${encodeURIComponent(server)}`);
  let refused = route.kind === "not_found";
  const issuerKnown =
    request.issuer === undefined || engine.config.auth.issuers.some((i) => i.issuer === request.issuer);
  if (!issuerKnown) {
    // Such a token is refused before any rule is read; the rules above say what its roles would do.
    engine.rejection(exchange, "jwt_issuer_unknown", `issuer '${request.issuer}' is not one of auth.issuers`);
    refused = true;
  } else if (route.kind === "mcp" || route.kind === "unknown_server") {
    refused = engine.reachServer(exchange, principal, route) !== undefined;
  }
  let message: string | undefined;
  if (!refused && route.kind !== "not_found") {
    exchange.server = server;
    const body = new TextEncoder().encode(
      JSON.stringify({
        jsonrpc: "2.0",
        id: 1,
        method: "tools/call",
        params: { name: tool, ...(request.arguments !== undefined ? { arguments: request.arguments } : {}) },
      }),
    );
    let verdict = engine.evaluateRequestBody(exchange, body, {});
    if (verdict.action === "list_tools") {
      // The planes fetch the server's tools/list and compare each definition with its pin before
      // the first call; here the registry's own definitions stand in for the live ones, and the
      // drift state is put back afterwards (synchronously: no live call sees the stand-in).
      const restore = engine.security.drift.checkpoint(server);
      try {
        engine.security.recordToolList(
          server,
          (registered?.config.tools ?? []).map((t) => t as unknown as Record<string, unknown>),
        );
        verdict = engine.evaluateRequestBody(exchange, body, {}, { toolsListed: true });
      } finally {
        restore();
      }
      assumptions.push(
        "the server's live tools/list matches the registry's pins (the planes check it before the first call)",
      );
    }
    if (verdict.action === "reply") message = replyMessage(verdict.reply.body);
  } else if (route.kind === "not_found" && issuerKnown) {
    engine.rejection(exchange, "server_unknown");
  }
  const denied = exchange.decision !== "allow";
  const reason = denied ? publicReason(exchange.reasons) : undefined;
  return {
    agent: principal.agent,
    agentConfigured: engine.authenticator.knowsAgent(principal.agent),
    issuer: principal.issuer,
    roles: [...principal.roles],
    server,
    tool,
    registry: {
      server: registered ? "registered" : "unregistered",
      tool: !entry ? "unregistered" : found && "missing" in found ? "deprecated" : "registered",
      deprecated: entry?.deprecated,
      risk: entry?.risk,
      pin: entry ? engine.security.pins.expected(server, tool)?.pin : undefined,
    },
    serverReachable: engine.rbac.mayReachServer(principal, server),
    rules,
    decision: exchange.decision,
    reason,
    message: denied ? (message ?? (reason ? Reasons[reason].message : undefined)) : undefined,
    cause: denied ? exchange.causes[0] : undefined,
    flags: denied ? [] : [...exchange.reasons],
    assumptions,
  };
}

/** The audit record keeps `server_forbidden`; the agent is told `server_unknown`. */
function publicReason(reasons: readonly Reason[]): Reason | undefined {
  const first = reasons[0];
  return first === "server_forbidden" ? "server_unknown" : first;
}

function replyMessage(body: string): string | undefined {
  try {
    const parsed = JSON.parse(body) as { error?: { message?: unknown } };
    return typeof parsed.error?.message === "string" ? parsed.error.message : undefined;
  } catch {
    return undefined;
  }
}

function objectOrUndefined(value: unknown): Record<string, unknown> | undefined {
  return typeof value === "object" && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : undefined;
}

/** The explanation as text for a terminal. */
export function formatExplanation(e: ToolCallExplanation): string {
  const lines: string[] = [];
  const verdict = e.decision === "allow" ? "ALLOW" : e.decision === "deny" ? "DENY" : "ERROR";
  lines.push(`${verdict}  ${e.agent} -> ${e.server}/${e.tool}`);
  if (e.decision !== "allow") {
    lines.push(`  agent sees: ${e.reason ?? "-"} ("${e.message ?? ""}")`);
    lines.push(`  cause:      ${e.cause ?? "-"}`);
  } else if (e.flags.length > 0) {
    lines.push(`  flags:      ${e.flags.join(", ")}`);
  }
  lines.push("");
  lines.push(
    `agent:    ${e.agent}${e.agentConfigured ? "" : " (not in gateway.yaml agents: token roles only)"}` +
      `${e.issuer !== undefined ? `, issuer ${e.issuer}` : ""}`,
  );
  lines.push(`roles:    ${e.roles.length ? e.roles.join(", ") : "(none)"}`);
  const r = e.registry;
  lines.push(
    `registry: server ${r.server}; tool ${r.tool}` +
      (r.deprecated ? ` (deprecated from ${r.deprecated})` : "") +
      (r.risk ? `, risk ${r.risk}` : "") +
      (r.pin ? `, pin ${r.pin.slice(0, 19)}…` : ""),
  );
  lines.push(`server reachable by the agent's rules: ${e.serverReachable ? "yes" : "no"}`);
  lines.push("");
  lines.push("rules (in order):");
  if (e.rules.length === 0) lines.push("  (the agent's roles have no rules)");
  for (const rule of e.rules) {
    const condition =
      rule.when === undefined
        ? ""
        : `  when ${JSON.stringify(rule.when)} -> ${rule.condition === "not_evaluated" ? "not evaluated" : rule.condition}`;
    const state = !rule.matches ? "does not match" : rule.applied ? "APPLIES" : "matches, does not apply";
    lines.push(`  ${rule.rule}  ${rule.effect.padEnd(5)}  ${state}${condition}`);
    if (rule.description) lines.push(`      ${rule.description}`);
  }
  if (e.assumptions.length > 0) {
    lines.push("");
    lines.push("assumes:");
    for (const a of e.assumptions) lines.push(`  - ${a}`);
  }
  return lines.join("\n") + "\n";
}
