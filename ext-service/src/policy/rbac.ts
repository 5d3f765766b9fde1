import { celEnv, isCelError, parse, plan } from "@bufbuild/cel";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { GatewayConfig, Rule } from "../config/schema.js";
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

export type AccessDecision = { allowed: true } | { allowed: false; rule: string };

/** A condition's outcome; "error" covers a missing claim or a type mismatch at evaluation. */
type Condition = (ctx: AccessContext) => "true" | "false" | "error";

interface CompiledRule {
  effect: "allow" | "deny";
  kinds: Partial<Record<SubjectKind, RegExp[]>>;
  /** Globs of the server part, used to answer "may this agent reach this server at all?". */
  serverPatterns: RegExp[];
  condition: Condition | undefined;
  label: string;
}

export class RbacConfigError extends Error {
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(`${path}: ${message}`);
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

function compileCondition(source: string, path: string, now: () => number): Condition {
  let evaluate: ReturnType<typeof plan>;
  try {
    evaluate = plan(env, parse(source));
  } catch (err) {
    throw new RbacConfigError(path, `invalid CEL condition: ${(err as Error).message}`);
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
    if (isCelError(result)) return "error";
    return result === true ? "true" : "false";
  };
}

export class Rbac {
  private readonly roles: ReadonlyMap<string, readonly CompiledRule[]>;
  private readonly byRoleSet = new Map<string, readonly CompiledRule[]>();

  constructor(config: Pick<GatewayConfig, "roles" | "agents">, now: () => number = Date.now) {
    const roles = new Map<string, CompiledRule[]>();
    for (const [roleName, role] of Object.entries(config.roles)) {
      roles.set(
        roleName,
        role.rules.map((rule, i) => compileRule(rule, `roles.${roleName}.rules[${i}]`, now)),
      );
    }
    for (const [agent, a] of Object.entries(config.agents)) {
      a.roles.forEach((r, i) => {
        if (!roles.has(r)) throw new RbacConfigError(`agents.${agent}.roles[${i}]`, `unknown role '${r}'`);
      });
    }
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
    const subject = `${ctx.server}/${ctx.name}`;
    let allowed = false;
    for (const rule of this.rulesFor(ctx.principal)) {
      const patterns = rule.kinds[ctx.kind];
      if (!patterns || !patterns.some((p) => p.test(subject))) continue;
      if (rule.effect === "deny") {
        // A deny whose condition cannot be evaluated still denies: both rule kinds fail closed.
        if (!rule.condition || rule.condition(ctx) !== "false") {
          return { allowed: false, rule: rule.label };
        }
      } else if (!allowed && (!rule.condition || rule.condition(ctx) === "true")) {
        allowed = true;
      }
    }
    return allowed ? { allowed: true } : { allowed: false, rule: "default_deny" };
  }

  /** Whether any allow rule of this principal could apply to something on `server`. */
  mayReachServer(principal: Principal, server: string): boolean {
    return this.rulesFor(principal).some(
      (r) => r.effect === "allow" && r.serverPatterns.some((p) => p.test(server)),
    );
  }
}

function compileRule(rule: Rule, path: string, now: () => number): CompiledRule {
  const kinds: Partial<Record<SubjectKind, RegExp[]>> = {};
  const serverPatterns: RegExp[] = [];
  for (const kind of ["tools", "prompts", "resources"] as const) {
    const globs = rule[kind];
    if (!globs) continue;
    kinds[kind] = globs.map((g, i) => {
      const slash = g.indexOf("/");
      if (slash <= 0) {
        throw new RbacConfigError(`${path}.${kind}[${i}]`, `'${g}' must be 'server/name' (globs allowed)`);
      }
      serverPatterns.push(globToRegExp(g.slice(0, slash)));
      return globToRegExp(g);
    });
  }
  return {
    effect: rule.effect,
    kinds,
    serverPatterns,
    condition: rule.when ? compileCondition(rule.when, `${path}.when`, now) : undefined,
    label: path,
  };
}
