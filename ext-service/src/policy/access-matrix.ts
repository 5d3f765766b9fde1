import type { PolicyEngine } from "./engine.js";
import type { Principal } from "./identity.js";
import type { RuleEvaluation } from "./rbac.js";

/**
 * Who may call what, as one table: every principal (the configured agents, or each role on its
 * own) against every registered tool, each cell answered by the engine's own RBAC decision
 * (`Rbac.explain`, the trace `explain` prints) and listing (`Rbac.mayList`), and the approvals
 * policy's requirement. Nothing here decides anything itself: it asks the core the question a
 * call without arguments would ask, and reports which rule answered.
 *
 * A cell is `allow` (some rule grants it and no deny applies), `deny` (no call can pass RBAC), or
 * `conditional` (a rule's CEL condition decides per call: on its arguments, claims or time).
 */

export type CellAccess = "allow" | "deny" | "conditional";

export interface AccessCell {
  access: CellAccess;
  /** The rule that grants or denies the cell (`roles.<role>.rules[<i>]`); none when no rule names it. */
  rule: string | undefined;
  /** The precise cause of a refusal, as in the audit record (`rbac_no_rule`, `rbac_denied_by:<rule>`, ...). */
  cause: string | undefined;
  /** The conditions that decide a conditional cell (or that held for an allowed one). */
  conditions: { rule: string; effect: "allow" | "deny"; when: string }[];
  /** A human approval is (or may be, for some arguments) required first: the approvals rule or role rule. */
  approval: { rule: string; when: string | undefined } | undefined;
}

export interface AccessColumn {
  server: string;
  tool: string;
  risk: string;
  /** The date from which the registry refuses the tool. */
  deprecated: string | undefined;
  /** Deprecated as of today: every call is refused as unknown, whatever RBAC says. */
  retired: boolean;
}

/** The prompts and resources globs a principal's rules name (these have no registry to list). */
export interface PatternGrant {
  rule: string;
  effect: "allow" | "deny";
  prompts: string[];
  resources: string[];
  when: string | undefined;
}

export interface AccessRow {
  /** The agent's name, or the role's (by role). */
  name: string;
  description: string | undefined;
  issuer: string | undefined;
  roles: string[];
  /** One cell per column, in the columns' order. */
  cells: AccessCell[];
  patterns: PatternGrant[];
}

export interface AccessMatrix {
  by: "agent" | "role";
  columns: AccessColumn[];
  rows: AccessRow[];
}

export function accessMatrix(engine: PolicyEngine, by: "agent" | "role" = "agent"): AccessMatrix {
  const today = engine.today();
  const columns: AccessColumn[] = [];
  for (const server of engine.registry.serverNames()) {
    for (const tool of engine.registry.server(server)!.config.tools) {
      columns.push({
        server,
        tool: tool.name,
        risk: tool.risk,
        deprecated: tool.deprecated,
        retired: tool.deprecated !== undefined && tool.deprecated <= today,
      });
    }
  }
  const principals: { principal: Principal; description: string | undefined }[] =
    by === "agent"
      ? Object.entries(engine.config.agents).map(([name, agent]) => ({
          principal: engine.authenticator.principalFor(name),
          description: agent.description,
        }))
      : Object.entries(engine.config.roles).map(([name, role]) => ({
          principal: { agent: name, roles: [name], claims: {}, issuer: undefined, anonymous: false },
          description: role.description,
        }));
  const rows = principals.map(({ principal, description }) => ({
    name: principal.agent,
    description,
    issuer: by === "agent" ? principal.issuer : undefined,
    roles: [...principal.roles],
    cells: columns.map((column) => accessCell(engine, principal, column)),
    patterns: patternGrants(engine, principal.roles),
  }));
  return { by, columns, rows };
}

function accessCell(engine: PolicyEngine, principal: Principal, column: AccessColumn): AccessCell {
  const { server, tool } = column;
  const ctx = { principal, server, kind: "tools" as const, name: tool, arguments: undefined };
  const { decision, rules } = engine.rbac.explain(ctx);
  const conditions = rules
    .filter((r): r is RuleEvaluation & { when: string } => r.matches && r.when !== undefined)
    .map((r) => ({ rule: r.rule, effect: r.effect, when: r.when }));
  let access: CellAccess;
  let rule: string | undefined;
  let cause: string | undefined;
  if (decision.allowed) {
    access = "allow";
    rule = rules.find((r) => r.effect === "allow" && r.applied)?.rule;
  } else {
    cause = decision.cause;
    rule = cause.includes(":") ? cause.slice(cause.indexOf(":") + 1) : undefined;
    // Without the call's arguments a condition may not be decidable; the listing decision says
    // whether some call could still pass (the same answer tools/list gives the agent).
    access = engine.rbac.mayList(principal, server, "tools", tool) ? "conditional" : "deny";
  }
  let approval: AccessCell["approval"];
  if (access !== "deny") {
    const registered = engine.registry.server(server)?.tools.get(tool);
    const roleRule = decision.allowed
      ? decision.approval
      : rules.find((r) => r.matches && r.effect === "allow" && r.approval)?.rule;
    const requirement = registered
      ? engine.approvals.requirement(
          principal,
          { server, name: tool, tool: registered, arguments: undefined },
          roleRule,
        )
      : undefined;
    if (requirement) {
      const approvalsRule = engine.config.approvals.rules.find((r) => r.name === requirement.rule);
      approval = { rule: requirement.rule, when: approvalsRule?.when };
    }
  }
  return { access, rule, cause, conditions, approval };
}

function patternGrants(engine: PolicyEngine, roles: readonly string[]): PatternGrant[] {
  const grants: PatternGrant[] = [];
  for (const role of roles) {
    engine.config.roles[role]?.rules.forEach((r, i) => {
      if (!r.prompts?.length && !r.resources?.length) return;
      grants.push({
        rule: `roles.${role}.rules[${i}]`,
        effect: r.effect,
        prompts: r.prompts ?? [],
        resources: r.resources ?? [],
        when: r.when,
      });
    });
  }
  return grants;
}
