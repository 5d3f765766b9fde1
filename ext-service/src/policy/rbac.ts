import { celEnv, isCelError, parse, plan } from "@bufbuild/cel";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { PolicyConfig, Rule } from "./settings.js";
import type { SubjectKind } from "../mcp/methods.js";
import type { Principal } from "./identity.js";

/**
 * Role-based access with optional CEL conditions. Subjects are `server/name` strings (for
 * resources `server/uri`). Deny wins over allow; nothing is allowed unless a rule allows it.
 */

export interface AccessContext {
  principal: Principal;
  server: string;
  kind: SubjectKind;
  name: string;
  arguments?: Record<string, unknown> | undefined;
}

/**
 * `approval`: an applying allow rule says `approval: required` (its label).
 * `cause` is the precise internal cause of a refusal, for the audit record and `explain` (the
 * agent only sees the public reason): `rbac_no_rule` (no allow rule names the subject),
 * `rbac_denied_by:<rule>` (a deny rule applies), `condition_false:<rule>` or
 * `condition_error:<rule>` (the first allow rule naming the subject whose condition did not hold).
 * Rules are named by their place in gateway.yaml, `roles.<role>.rules[<i>]`.
 */
export type AccessDecision = { allowed: true; approval?: string } | { allowed: false; cause: string };

/** A condition's outcome; "error" covers a missing claim or a type mismatch at evaluation. */
export type ConditionOutcome = "true" | "false" | "error";
export type Condition = (ctx: AccessContext) => ConditionOutcome;

/** How one rule took part in a decision (`Rbac.explain`). */
export interface RuleEvaluation {
  rule: string;
  role: string;
  effect: "allow" | "deny";
  description: string | undefined;
  /** The CEL condition's source, if the rule has one. */
  when: string | undefined;
  /** Whether the rule asks for a human approval of the calls it allows. */
  approval: boolean;
  /** Whether one of the rule's globs names the subject. */
  matches: boolean;
  /**
   * The condition's outcome; "none" when the rule has no condition, "not_evaluated" when the
   * rule does not match or the decision was made before it was reached.
   */
  condition: ConditionOutcome | "none" | "not_evaluated";
  /** Whether the rule decided (the deny that applied) or counted (an allow that held). */
  applied: boolean;
}

interface CompiledRule {
  effect: "allow" | "deny";
  kinds: Partial<Record<SubjectKind, RegExp[]>>;
  /** Globs of the server part, used to answer "may this agent reach this server at all?". */
  serverPatterns: RegExp[];
  condition: Condition | undefined;
  label: string;
  approval: boolean;
  role: string;
  description: string | undefined;
  when: string | undefined;
}

/** Rules or agents that cannot work; config/compile.ts turns these into located ConfigProblems. */
export class RbacConfigError extends Error {
  constructor(readonly problems: readonly { path: readonly (string | number)[]; message: string }[]) {
    super(problems.map((p) => `${p.path.join(".")}: ${p.message}`).join("; "));
    this.name = "RbacConfigError";
  }
}

/** One problem while compiling a rule; `path` is relative to the rule. */
export class RuleProblem extends Error {
  constructor(
    readonly path: readonly (string | number)[],
    message: string,
  ) {
    super(message);
  }
}

/** Variables a condition may use, plus CEL's type names (usable as values, as in `type(x) == int`). */
const CEL_NAMES: ReadonlySet<string> = new Set([
  "claims",
  "agent",
  "roles",
  "server",
  "name",
  "kind",
  "arguments",
  "now",
  "int",
  "uint",
  "double",
  "bool",
  "string",
  "bytes",
  "list",
  "map",
  "null_type",
  "type",
  "dyn",
]);

type CelExpr = ReturnType<typeof parse>["expr"];

/**
 * Names a condition uses that are neither variables nor bound by a macro (`exists(x, ...)`): a
 * typo such as `argumnets.env` would otherwise make the rule fail closed on every request.
 */
function unknownNames(expr: CelExpr | undefined, bound: ReadonlySet<string>, out: Set<string>): void {
  if (!expr) return;
  const k = expr.exprKind;
  switch (k.case) {
    case "identExpr":
      if (!CEL_NAMES.has(k.value.name) && !bound.has(k.value.name)) out.add(k.value.name);
      return;
    case "selectExpr":
      return unknownNames(k.value.operand, bound, out);
    case "callExpr":
      unknownNames(k.value.target, bound, out);
      for (const a of k.value.args) unknownNames(a, bound, out);
      return;
    case "listExpr":
      for (const e of k.value.elements) unknownNames(e, bound, out);
      return;
    case "structExpr":
      for (const e of k.value.entries) {
        if (e.keyKind.case === "mapKey") unknownNames(e.keyKind.value, bound, out);
        unknownNames(e.value, bound, out);
      }
      return;
    case "comprehensionExpr": {
      const c = k.value;
      unknownNames(c.iterRange, bound, out);
      unknownNames(c.accuInit, bound, out);
      const inner = new Set([...bound, c.iterVar, c.iterVar2, c.accuVar].filter(Boolean));
      unknownNames(c.loopCondition, inner, out);
      unknownNames(c.loopStep, inner, out);
      unknownNames(c.result, inner, out);
      return;
    }
    default:
      return;
  }
}

function escapeRegExp(s: string): string {
  return s.replace(/[.+?^${}()|[\]\\]/g, "\\$&");
}

/** `*` matches within one `/`-separated segment, `**` across segments. */
export function globToRegExp(glob: string): RegExp {
  let out = "";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === "*") {
      if (glob[i + 1] === "*") {
        out += ".*";
        i++;
      } else out += "[^/]*";
    } else out += escapeRegExp(c);
  }
  return new RegExp(`^${out}$`, "s");
}

function toCelValue(v: unknown, depth = 0): unknown {
  if (depth > 32) return null;
  if (Array.isArray(v)) return v.map((x) => toCelValue(x, depth + 1));
  if (v !== null && typeof v === "object") {
    return new Map(Object.entries(v).map(([k, x]) => [k, toCelValue(x, depth + 1)]));
  }
  if (typeof v === "number" || typeof v === "string" || typeof v === "boolean" || v === null) return v;
  return null;
}

const env = celEnv();

/**
 * A CEL condition over an access context (claims, agent, roles, server, name, kind, arguments,
 * now). Throws RuleProblem at ["when"] when it does not compile or names unknown variables.
 */
export function compileCondition(source: string, now: () => number): Condition {
  let evaluate: ReturnType<typeof plan>;
  try {
    const parsed = parse(source);
    const unknown = new Set<string>();
    unknownNames(parsed.expr, new Set(), unknown);
    if (unknown.size > 0) {
      throw new Error(
        `unknown name${unknown.size > 1 ? "s" : ""} ${[...unknown].map((n) => `'${n}'`).join(", ")}; ` +
          "conditions may use claims, agent, roles, server, name, kind, arguments, now",
      );
    }
    evaluate = plan(env, parsed);
  } catch (err) {
    throw new RuleProblem(["when"], `invalid CEL condition: ${(err as Error).message}`);
  }
  return (ctx) => {
    const result = evaluate({
      claims: toCelValue(ctx.principal.claims),
      agent: ctx.principal.agent,
      roles: [...ctx.principal.roles],
      server: ctx.server,
      name: ctx.name,
      kind: ctx.kind,
      arguments: toCelValue(ctx.arguments ?? {}),
      now: timestampFromDate(new Date(now())),
    } as never);
    // A result that is not a boolean is a broken condition, like an error: fail closed.
    if (isCelError(result) || typeof result !== "boolean") return "error";
    return result ? "true" : "false";
  };
}

export class Rbac {
  private readonly roles: ReadonlyMap<string, readonly CompiledRule[]>;
  private readonly byRoleSet = new Map<string, readonly CompiledRule[]>();

  constructor(config: Pick<PolicyConfig, "roles" | "agents">, now: () => number = Date.now) {
    const roles = new Map<string, CompiledRule[]>();
    const problems: { path: (string | number)[]; message: string }[] = [];
    for (const [roleName, role] of Object.entries(config.roles)) {
      const compiled: CompiledRule[] = [];
      role.rules.forEach((rule, i) => {
        try {
          compiled.push(compileRule(rule, roleName, `roles.${roleName}.rules[${i}]`, now));
        } catch (err) {
          if (!(err instanceof RuleProblem)) throw err;
          problems.push({ path: ["roles", roleName, "rules", i, ...err.path], message: err.message });
        }
      });
      roles.set(roleName, compiled);
    }
    for (const [agent, a] of Object.entries(config.agents)) {
      a.roles.forEach((r, i) => {
        if (!roles.has(r))
          problems.push({ path: ["agents", agent, "roles", i], message: `unknown role '${r}'` });
      });
    }
    if (problems.length > 0) throw new RbacConfigError(problems);
    this.roles = roles;
  }

  hasRole(role: string): boolean {
    return this.roles.has(role);
  }

  private rulesFor(principal: Principal): readonly CompiledRule[] {
    const key = principal.roles.join("\u0000");
    let rules = this.byRoleSet.get(key);
    if (!rules) {
      rules = principal.roles.flatMap((r) => this.roles.get(r) ?? []);
      // Role sets are few (they come from config and token claims); bound the memo anyway.
      if (this.byRoleSet.size > 4096) this.byRoleSet.clear();
      this.byRoleSet.set(key, rules);
    }
    return rules;
  }

  decide(ctx: AccessContext): AccessDecision {
    return this.evaluate(ctx, undefined);
  }

  /** The decision and how each of the principal's rules took part in it (for `explain`). */
  explain(ctx: AccessContext): { decision: AccessDecision; rules: RuleEvaluation[] } {
    const rules: RuleEvaluation[] = [];
    const decision = this.evaluate(ctx, rules);
    return { decision, rules };
  }

  /** The one decision procedure; `trace`, when given, receives every rule in order. */
  private evaluate(ctx: AccessContext, trace: RuleEvaluation[] | undefined): AccessDecision {
    const subject = `${ctx.server}/${ctx.name}`;
    let allowed = false;
    let approval: string | undefined;
    let denied: AccessDecision | undefined;
    // The first allow rule naming the subject whose condition did not hold: the cause of a refusal.
    let unmet: string | undefined;
    for (const rule of this.rulesFor(ctx.principal)) {
      if (denied) {
        trace?.push(evaluation(rule, ruleMatches(rule, ctx, subject), "not_evaluated", false));
        continue;
      }
      if (!ruleMatches(rule, ctx, subject)) {
        trace?.push(evaluation(rule, false, "not_evaluated", false));
        continue;
      }
      if (rule.effect === "deny") {
        // A deny whose condition cannot be evaluated still denies: both rule kinds fail closed.
        const outcome = rule.condition ? rule.condition(ctx) : "none";
        const applies = outcome !== "false";
        trace?.push(evaluation(rule, true, outcome, applies));
        if (applies) {
          denied = { allowed: false, cause: `rbac_denied_by:${rule.label}` };
          if (!trace) return denied;
        }
      } else if (!allowed || (rule.approval && !approval)) {
        // Any applying allow rule that asks for approval makes the call need one, even when
        // another role allows it without: the stricter rule holds.
        const outcome = rule.condition ? rule.condition(ctx) : "none";
        const holds = outcome === "none" || outcome === "true";
        trace?.push(evaluation(rule, true, outcome, holds));
        if (holds) {
          allowed = true;
          if (rule.approval) approval = rule.label;
        } else if (!allowed) {
          unmet ??= `condition_${outcome === "false" ? "false" : "error"}:${rule.label}`;
        }
      } else {
        trace?.push(evaluation(rule, true, "not_evaluated", false));
      }
    }
    if (denied) return denied;
    if (!allowed) return { allowed: false, cause: unmet ?? "rbac_no_rule" };
    return approval ? { allowed: true, approval } : { allowed: true };
  }

  /**
   * Whether a list response (tools/list, prompts/list, resources/list) shows `name`: whether some
   * call to it could be allowed. The arguments of that call are not known yet, so a condition
   * that cannot be decided without them counts as "maybe": an allow rule with it keeps the entry,
   * and a deny rule with it does not remove the entry. Only an allow that is certainly false
   * and a deny that certainly applies count as such. Each call is still decided in full by
   * `decide`, so listing more than can be called never lets a call through.
   */
  mayList(principal: Principal, server: string, kind: SubjectKind, name: string): boolean {
    const subject = `${server}/${name}`;
    const ctx: AccessContext = { principal, server, kind, name, arguments: undefined };
    let listed = false;
    for (const rule of this.rulesFor(principal)) {
      const patterns = rule.kinds[kind];
      if (!patterns || !patterns.some((p) => p.test(subject))) continue;
      const outcome = rule.condition ? rule.condition(ctx) : "true";
      if (rule.effect === "deny" && outcome === "true") return false;
      if (rule.effect === "allow" && outcome !== "false") listed = true;
    }
    return listed;
  }

  /** Whether any allow rule of this principal could apply to something on `server`. */
  mayReachServer(principal: Principal, server: string): boolean {
    return this.rulesFor(principal).some(
      (r) => r.effect === "allow" && r.serverPatterns.some((p) => p.test(server)),
    );
  }
}

function ruleMatches(rule: CompiledRule, ctx: AccessContext, subject: string): boolean {
  const patterns = rule.kinds[ctx.kind];
  return patterns !== undefined && patterns.some((p) => p.test(subject));
}

function evaluation(
  rule: CompiledRule,
  matches: boolean,
  condition: RuleEvaluation["condition"],
  applied: boolean,
): RuleEvaluation {
  return {
    rule: rule.label,
    role: rule.role,
    effect: rule.effect,
    description: rule.description,
    when: rule.when,
    approval: rule.approval,
    matches,
    condition,
    applied,
  };
}

function compileRule(rule: Rule, role: string, path: string, now: () => number): CompiledRule {
  const kinds: Partial<Record<SubjectKind, RegExp[]>> = {};
  const serverPatterns: RegExp[] = [];
  for (const kind of ["tools", "prompts", "resources"] as const) {
    const globs = rule[kind];
    if (!globs) continue;
    kinds[kind] = globs.map((g, i) => {
      const slash = g.indexOf("/");
      if (slash <= 0) throw new RuleProblem([kind, i], `'${g}' must be 'server/name' (globs allowed)`);
      // The server part ends at the first '/', unless a '**' that can span it starts before.
      const across = g.indexOf("**");
      serverPatterns.push(
        globToRegExp(across >= 0 && across < slash ? g.slice(0, across + 2) : g.slice(0, slash)),
      );
      return globToRegExp(g);
    });
  }
  return {
    effect: rule.effect,
    kinds,
    serverPatterns,
    condition: rule.when ? compileCondition(rule.when, now) : undefined,
    label: path,
    approval: rule.approval === "required",
    role,
    description: rule.description,
    when: rule.when,
  };
}
