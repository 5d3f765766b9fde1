import { createHash, createHmac } from "node:crypto";
import type { ApprovalsConfig, ApproverConfig, PolicyConfig, RegistryTool } from "./settings.js";
import { durationMs } from "../model/duration.js";
import { canonicalJson, toolPin } from "./canonical.js";
import type { Principal } from "./identity.js";
import { compileCondition, globToRegExp, RuleProblem, type Condition } from "./rbac.js";
import type { SessionOwner, SessionSealer } from "./session-seal.js";

/**
 * Human approval of high-risk tool calls: which calls need one, who may decide, and what an
 * approval binds. Pure: the pending approvals live in the state store (approvals/), this module
 * only says what they mean. docs/APPROVALS.md is the user's view.
 *
 * An approval binds the exact call: issuer, agent, server, tool, the tool's pin and a digest of
 * the canonical arguments. Anything that differs is another call, which needs its own approval.
 */

/** Who may decide, as stored with each pending approval (so a decision is judged by the rule it was asked under). */
export interface ApproverSpec {
  roles?: readonly string[];
  /** Named agents, each with the issuer gateway.yaml binds it to (null: any configured issuer). */
  agents?: readonly { name: string; issuer: string | null }[];
  issuer?: string;
  /** server/tool globs the entry may decide. */
  tools: readonly string[];
}

/** What an approval is bound to: the call, exactly. */
export interface ApprovalBinding {
  issuer: string | null;
  agent: string;
  server: string;
  tool: string;
  /** The registry pin of the tool's definition (re-pinning the tool voids every approval). */
  pin: string;
  /** sha256 hex of the canonical JSON of the arguments. */
  arguments: string;
}

/** A call that needs approval, and the terms of the approval it needs. */
export interface ApprovalRequirement {
  /** The approvals rule's name, or the role rule's location (roles.<role>.rules[i]). */
  rule: string;
  approvers: readonly ApproverSpec[];
  /** How long an approval may be used once granted. */
  ttlMs: number;
  /** How long a request waits for a decision (and a denial holds). */
  pendingMs: number;
  uses: number;
  /** The caller's own user may approve in the client (2026-07-28 elicitation). */
  inBand: boolean;
}

export interface CallToApprove {
  server: string;
  name: string;
  tool: RegistryTool;
  arguments: unknown;
}

export type DecisionRefusal =
  /** The approver is the caller: nobody approves their own call. */
  | "self"
  /** The approver matches no approver entry of the approval (role, name, issuer or tool scope). */
  | "not_approver";

interface CompiledRule {
  name: string;
  risk: ReadonlySet<string> | undefined;
  tools: readonly RegExp[] | undefined;
  condition: Condition | undefined;
  requirement: ApprovalRequirement;
}

function approverSpec(a: ApproverConfig, agents: PolicyConfig["agents"]): ApproverSpec {
  return {
    ...(a.roles ? { roles: [...a.roles] } : {}),
    ...(a.agents ? { agents: a.agents.map((name) => ({ name, issuer: agents[name]?.issuer ?? null })) } : {}),
    ...(a.issuer !== undefined ? { issuer: a.issuer } : {}),
    tools: [...a.tools],
  };
}

/** A located problem in gateway.yaml's approvals section or the approvers it names. */
export class ApprovalsConfigError extends Error {
  constructor(readonly problems: readonly { path: readonly (string | number)[]; message: string }[]) {
    super(problems.map((p) => `${p.path.join(".")}: ${p.message}`).join("; "));
    this.name = "ApprovalsConfigError";
  }
}

function sha256Hex(text: string): string {
  return createHash("sha256").update(text, "utf8").digest("hex");
}

/** Approver entries that name roles or agents the config does not have, or malformed globs. */
function approverProblems(
  config: Pick<PolicyConfig, "roles" | "agents" | "auth">,
  approvers: readonly ApproverConfig[],
  at: readonly (string | number)[],
): { path: (string | number)[]; message: string }[] {
  const problems: { path: (string | number)[]; message: string }[] = [];
  const issuers = new Set(config.auth.issuers.map((i) => i.issuer));
  approvers.forEach((a, i) => {
    a.roles?.forEach((role, j) => {
      if (!(role in config.roles))
        problems.push({ path: [...at, i, "roles", j], message: `unknown role '${role}'` });
    });
    a.agents?.forEach((agent, j) => {
      if (!(agent in config.agents))
        problems.push({ path: [...at, i, "agents", j], message: `unknown agent '${agent}'` });
    });
    if (a.issuer !== undefined && !issuers.has(a.issuer))
      problems.push({ path: [...at, i, "issuer"], message: `'${a.issuer}' is not one of auth.issuers` });
    a.tools.forEach((glob, j) => {
      if (glob !== "**" && glob.indexOf("/") <= 0)
        problems.push({
          path: [...at, i, "tools", j],
          message: `'${glob}' must be 'server/name' (globs allowed)`,
        });
    });
  });
  return problems;
}

export class ApprovalPolicy {
  private readonly rules: readonly CompiledRule[];
  private readonly defaults: ApprovalRequirement;
  private readonly adminRoles: ReadonlySet<string>;
  private readonly adminIssuers: ReadonlySet<string> | undefined;
  /** Every approver entry of every rule: who may use the admin API as an approver. */
  private readonly everyApprover: readonly ApproverSpec[];
  readonly config: ApprovalsConfig;

  constructor(
    config: Pick<PolicyConfig, "approvals" | "roles" | "agents" | "auth">,
    private readonly now: () => number = Date.now,
  ) {
    const approvals = config.approvals;
    this.config = approvals;
    const problems = approverProblems(config, approvals.approvers, ["approvals", "approvers"]);
    const approvers = approvals.approvers.map((a) => approverSpec(a, config.agents));
    this.defaults = {
      rule: "",
      approvers,
      ttlMs: durationMs(approvals.ttl),
      pendingMs: durationMs(approvals.pendingFor),
      uses: approvals.uses,
      inBand: false,
    };
    const rules: CompiledRule[] = [];
    approvals.rules.forEach((rule, i) => {
      const at = ["approvals", "rules", i];
      if (rule.approvers) problems.push(...approverProblems(config, rule.approvers, [...at, "approvers"]));
      let condition: Condition | undefined;
      if (rule.when !== undefined) {
        try {
          condition = compileCondition(rule.when, now);
        } catch (err) {
          if (!(err instanceof RuleProblem)) throw err;
          problems.push({ path: [...at, ...err.path], message: err.message });
        }
      }
      const tools = rule.tools?.map((glob, j) => {
        if (glob.indexOf("/") <= 0)
          problems.push({
            path: [...at, "tools", j],
            message: `'${glob}' must be 'server/name' (globs allowed)`,
          });
        return globToRegExp(glob);
      });
      rules.push({
        name: rule.name,
        risk: rule.risk ? new Set(rule.risk) : undefined,
        tools,
        condition,
        requirement: {
          rule: rule.name,
          approvers: rule.approvers ? rule.approvers.map((a) => approverSpec(a, config.agents)) : approvers,
          ttlMs: rule.ttl !== undefined ? durationMs(rule.ttl) : this.defaults.ttlMs,
          pendingMs: this.defaults.pendingMs,
          uses: rule.uses ?? approvals.uses,
          inBand: rule.inBand,
        },
      });
    });
    const roleRulesNeedApprovers = Object.values(config.roles).some((r) =>
      r.rules.some((rule) => rule.approval === "required"),
    );
    if (roleRulesNeedApprovers && approvers.length === 0) {
      problems.push({
        path: ["approvals", "approvers"],
        message: "role rules with approval: required need approvers here: nobody could approve those calls",
      });
    }
    // admin.roles are not checked against `roles`: the default names `admin`, which a gateway
    // without the admin API need not define (an undefined role is held by nobody).
    const issuers = new Set(config.auth.issuers.map((i) => i.issuer));
    approvals.admin.issuers?.forEach((issuer, j) => {
      if (!issuers.has(issuer))
        problems.push({
          path: ["approvals", "admin", "issuers", j],
          message: `'${issuer}' is not one of auth.issuers`,
        });
    });
    if (problems.length > 0) throw new ApprovalsConfigError(problems);
    this.rules = rules;
    this.adminRoles = new Set(approvals.admin.roles);
    this.adminIssuers = approvals.admin.issuers ? new Set(approvals.admin.issuers) : undefined;
    this.everyApprover = [...approvers, ...rules.flatMap((r) => r.requirement.approvers)];
  }

  /**
   * Whether the call needs approval: the first approvals rule that matches (risk, tools, when),
   * else an allow rule of the caller's roles with `approval: required` (`roleRule`, from Rbac).
   * A condition that cannot be evaluated counts as matching: asking a human is the closed side.
   */
  requirement(principal: Principal, call: CallToApprove, roleRule?: string): ApprovalRequirement | undefined {
    const subject = `${call.server}/${call.name}`;
    for (const rule of this.rules) {
      if (rule.risk && !rule.risk.has(call.tool.risk)) continue;
      if (rule.tools && !rule.tools.some((re) => re.test(subject))) continue;
      if (rule.condition) {
        const args = call.arguments;
        const outcome = rule.condition({
          principal,
          server: call.server,
          kind: "tools",
          name: call.name,
          arguments:
            typeof args === "object" && args !== null && !Array.isArray(args)
              ? (args as Record<string, unknown>)
              : undefined,
        });
        if (outcome === "false") continue;
      }
      return rule.requirement;
    }
    return roleRule === undefined ? undefined : { ...this.defaults, rule: roleRule };
  }

  /** The binding of a call by this principal. */
  binding(principal: Principal, call: CallToApprove): ApprovalBinding {
    return {
      issuer: principal.issuer ?? null,
      agent: principal.agent,
      server: call.server,
      tool: call.name,
      pin: call.tool.pin ?? toolPin(call.tool),
      arguments: sha256Hex(canonicalJson(call.arguments ?? {})),
    };
  }

  /** One key per binding: the store finds an approval of the same call by it. */
  bindingKey(binding: ApprovalBinding): string {
    return sha256Hex(
      canonicalJson([
        "mcp-gateway approval v1",
        binding.issuer,
        binding.agent,
        binding.server,
        binding.tool,
        binding.pin,
        binding.arguments,
      ]),
    );
  }

  /**
   * Whether `approver` may decide an approval of `binding` asked under `approvers`. The caller
   * never may, whatever roles it holds; anonymous principals never may.
   */
  mayDecide(
    approver: Principal,
    approval: { binding: ApprovalBinding; approvers: readonly ApproverSpec[] },
  ): { ok: true } | { ok: false; refusal: DecisionRefusal } {
    const { binding } = approval;
    if (approver.agent === binding.agent && (approver.issuer ?? null) === binding.issuer)
      return { ok: false, refusal: "self" };
    if (approver.anonymous) return { ok: false, refusal: "not_approver" };
    const subject = `${binding.server}/${binding.tool}`;
    const matches = approval.approvers.some(
      (spec) => specNames(spec, approver) && spec.tools.some((glob) => globToRegExp(glob).test(subject)),
    );
    return matches ? { ok: true } : { ok: false, refusal: "not_approver" };
  }

  /**
   * Whether a principal may use the admin API at all: a token (not the anonymous principal) of
   * an accepted issuer, holding an admin role or named by some approver entry.
   */
  adminAccess(principal: Principal): "admin" | "approver" | undefined {
    if (principal.anonymous || principal.issuer === undefined) return undefined;
    if (this.adminIssuers && !this.adminIssuers.has(principal.issuer)) return undefined;
    if (principal.roles.some((r) => this.adminRoles.has(r))) return "admin";
    return this.everyApprover.some((spec) => specNames(spec, principal)) ? "approver" : undefined;
  }

  /** Milliseconds since the epoch, on the policy's clock. */
  time(): number {
    return this.now();
  }
}

/** Whether an approver entry names this principal (roles or agent name, and issuer). */
function specNames(spec: ApproverSpec, principal: Principal): boolean {
  if (spec.issuer !== undefined && principal.issuer !== spec.issuer) return false;
  if (
    spec.agents?.some(
      (a) => a.name === principal.agent && (a.issuer ?? principal.issuer) === principal.issuer,
    )
  )
    return true;
  return spec.roles?.some((r) => principal.roles.includes(r)) ?? false;
}

// ---------------------------------------------------------------- in band (MCP 2026-07-28)

/** The key of the gateway's own input request in `inputRequests` / `inputResponses`. */
export const IN_BAND_KEY = "mcp_gateway_approval";
const STATE_PREFIX = "mcpgw-approval.";

/**
 * The sealed requestState binds the exact call: the sealer's owner is issuer and agent, and its
 * "server" carries server, tool, pin and arguments digest (JSON, so no two calls share one).
 */
function stateOwner(binding: ApprovalBinding): SessionOwner {
  return {
    issuer: binding.issuer ?? undefined,
    agent: binding.agent,
    server: JSON.stringify(["approval", binding.server, binding.tool, binding.pin, binding.arguments]),
  };
}

/** A gateway requestState for one in-band approval round of this call; `nonce` makes it single use. */
export function sealApprovalState(
  sealer: SessionSealer,
  binding: ApprovalBinding,
  expiresAt: number,
  nonce: string,
): string {
  return STATE_PREFIX + sealer.seal(stateOwner(binding), JSON.stringify([nonce, expiresAt]));
}

/** Whether a requestState is the gateway's (the retry of an in-band approval round). */
export function isApprovalState(requestState: unknown): requestState is string {
  return typeof requestState === "string" && requestState.startsWith(STATE_PREFIX);
}

/**
 * Opens a gateway requestState for this call: its nonce and expiry, "expired", or undefined when
 * it was sealed for another call (arguments, agent, tool, pin), altered, or with a key no longer held.
 */
export function openApprovalState(
  sealer: SessionSealer,
  requestState: string,
  binding: ApprovalBinding,
  now: number,
): { nonce: string; expiresAt: number } | "expired" | undefined {
  if (!isApprovalState(requestState)) return undefined;
  const content = sealer.open(requestState.slice(STATE_PREFIX.length), stateOwner(binding));
  if (content === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(content);
  } catch {
    return undefined;
  }
  if (!Array.isArray(value) || typeof value[0] !== "string" || typeof value[1] !== "number") return undefined;
  return now >= value[1] ? "expired" : { nonce: value[0], expiresAt: value[1] };
}

/** The elicitation the client shows its user: what will run, with secrets redacted. */
export function approvalElicitation(
  call: { server: string; name: string },
  agent: string,
  redactedArguments: unknown,
): Record<string, unknown> {
  let args = JSON.stringify(redactedArguments ?? {});
  if (args.length > 2_000) args = `${args.slice(0, 2_000)}… (${args.length} characters)`;
  return {
    method: "elicitation/create",
    params: {
      mode: "form",
      message:
        `The MCP gateway needs your approval before this call runs: ${agent} calls ` +
        `${call.server}/${call.name} with ${args}. Approve it once?`,
      requestedSchema: {
        type: "object",
        properties: {
          approve: { type: "boolean", title: "Approve", description: "Run this call once, as shown" },
        },
        required: ["approve"],
      },
    },
  };
}

/** The user's answer to the gateway's elicitation in a retry: approved, declined, or absent. */
export function inBandAnswer(
  params: Readonly<Record<string, unknown>> | undefined,
): "approved" | "declined" | undefined {
  const responses = params?.inputResponses;
  if (typeof responses !== "object" || responses === null) return undefined;
  const answer = (responses as Record<string, unknown>)[IN_BAND_KEY];
  if (typeof answer !== "object" || answer === null) return undefined;
  const { action, content } = answer as { action?: unknown; content?: unknown };
  if (action !== "accept") return "declined";
  return typeof content === "object" &&
    content !== null &&
    (content as { approve?: unknown }).approve === true
    ? "approved"
    : "declined";
}

/** The retry's params as the upstream gets them: the gateway's round (its requestState and answer) removed. */
export function withoutApprovalRound(params: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const { requestState: _state, inputResponses, ...rest } = params;
  if (typeof inputResponses === "object" && inputResponses !== null) {
    const { [IN_BAND_KEY]: _ours, ...others } = inputResponses as Record<string, unknown>;
    if (Object.keys(others).length > 0) return { ...rest, inputResponses: others };
  }
  return rest;
}

/** The key that seals in-band approval states, derived from a session secret (never the same key). */
export function approvalStateSecret(secret: string | Uint8Array): Buffer {
  return createHmac("sha256", secret).update("mcp-gateway/approval-request-state v1").digest();
}
