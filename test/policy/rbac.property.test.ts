import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { SubjectKind } from "../../ext-service/src/mcp/methods.js";
import type { Principal } from "../../ext-service/src/policy/identity.js";
import { Rbac } from "../../ext-service/src/policy/rbac.js";
import { gatewayConfig } from "./support.js";

/** Reference glob matcher, written independently of the regex compiler under test. */
function globMatch(glob: string, subject: string): boolean {
  const memo = new Map<string, boolean>();
  const go = (g: number, s: number): boolean => {
    const key = `${g},${s}`;
    const hit = memo.get(key);
    if (hit !== undefined) return hit;
    let result: boolean;
    if (g === glob.length) result = s === subject.length;
    else if (glob.startsWith("**", g)) {
      result = false;
      for (let k = s; k <= subject.length && !result; k++) result = go(g + 2, k);
    } else if (glob[g] === "*") {
      result = false;
      for (let k = s; k <= subject.length && !result; k++) {
        result = go(g + 1, k);
        if (subject[k] === "/") break;
      }
    } else result = s < subject.length && glob[g] === subject[s] && go(g + 1, s + 1);
    memo.set(key, result);
    return result;
  };
  return go(0, 0);
}

type Cond =
  undefined | "true" | "false" | "claims.missing == 1" | "'text'" | "arguments.x == 1" | "arguments.x != 1";
interface GenRule {
  effect: "allow" | "deny";
  kind: SubjectKind;
  globs: string[];
  when: Cond;
}

const segment = fc
  .array(fc.constantFrom("a", "b", ".", "*", "**", "?"), { minLength: 0, maxLength: 3 })
  .map((t) => t.join(""));
const glob = fc
  .tuple(
    fc.constantFrom("kb", "tickets", "*", "k*", "**", "k**a", "**b"),
    fc.array(segment, { minLength: 1, maxLength: 3 }),
  )
  .map(([server, parts]) => `${server}/${parts.join("/")}`);
const kind = fc.constantFrom<SubjectKind>("tools", "prompts", "resources");
const ruleWith = (...conditions: Cond[]): fc.Arbitrary<GenRule> =>
  fc.record({
    effect: fc.constantFrom("allow", "deny"),
    kind,
    globs: fc.array(glob, { minLength: 1, maxLength: 3 }),
    when: fc.constantFrom<Cond>(undefined, undefined, ...conditions),
  });
const rule = ruleWith("true", "false", "claims.missing == 1", "'text'");
const roleNames = ["r0", "r1", "r2", "r3"] as const;
const rolesOf = (r: fc.Arbitrary<GenRule>) => fc.tuple(...roleNames.map(() => fc.array(r, { maxLength: 4 })));
const roles = rolesOf(rule);
const subject = fc.record({
  server: fc.constantFrom("kb", "tickets", "kx"),
  name: fc
    .array(fc.constantFrom("a", "b", ".", "/", "*", "ab"), { minLength: 1, maxLength: 5 })
    .map((t) => t.join("")),
  kind,
});

function build(generated: GenRule[][]): Rbac {
  const config: Record<string, unknown> = {};
  generated.forEach((rules, i) => {
    config[roleNames[i]!] = {
      rules: rules.map((r) => ({ effect: r.effect, [r.kind]: r.globs, ...(r.when ? { when: r.when } : {}) })),
    };
  });
  return new Rbac(gatewayConfig({ auth: { mode: "optional" }, roles: config }));
}

/** The rule as the docs state it: deny applies unless its condition is false; allow only if true. */
function reference(
  generated: GenRule[][],
  held: number[],
  s: { server: string; name: string; kind: SubjectKind },
) {
  const target = `${s.server}/${s.name}`;
  let allowed = false;
  // The cause of a refusal without a deny: the first matching allow whose condition did not hold.
  let unmet: string | undefined;
  for (const i of held) {
    for (const [j, r] of generated[i]!.entries()) {
      if (r.kind !== s.kind || !r.globs.some((g) => globMatch(g, target))) continue;
      const label = `roles.${roleNames[i]}.rules[${j}]`;
      if (r.effect === "deny" && r.when !== "false")
        return { allowed: false, cause: `rbac_denied_by:${label}` };
      if (r.effect === "allow" && (r.when === undefined || r.when === "true")) allowed = true;
      else if (r.effect === "allow" && !allowed)
        unmet ??= `${r.when === "false" ? "condition_false" : "condition_error"}:${label}`;
    }
  }
  return allowed ? { allowed: true } : { allowed: false, cause: unmet ?? "rbac_no_rule" };
}

const principal = (held: number[]): Principal => ({
  agent: "bot",
  roles: held.map((i) => roleNames[i]!),
  claims: {},
  issuer: undefined,
  anonymous: false,
});

describe("RBAC properties", () => {
  it("deny wins, default deny: decisions equal the reference for random rule sets", () => {
    fc.assert(
      fc.property(
        roles,
        fc.uniqueArray(fc.integer({ min: 0, max: 3 }), { maxLength: 4 }),
        fc.array(subject, { minLength: 1, maxLength: 8 }),
        (generated, held, subjects) => {
          const rbac = build(generated);
          for (const s of subjects) {
            expect(
              rbac.decide({ principal: principal(held), ...s }),
              `${s.kind} ${s.server}/${s.name}`,
            ).toEqual(reference(generated, held, s));
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it("an unconditional deny that matches always denies, whatever else the principal holds", () => {
    fc.assert(
      fc.property(roles, subject, (generated, s) => {
        generated[0] = [
          ...generated[0]!,
          { effect: "deny", kind: s.kind, globs: [`${s.server}/${s.name}`], when: undefined },
        ];
        const rbac = build(generated);
        expect(rbac.decide({ principal: principal([0, 1, 2, 3]), ...s }).allowed).toBe(false);
      }),
      { numRuns: 200 },
    );
  });

  it("a principal with no roles is denied everything and reaches no server", () => {
    fc.assert(
      fc.property(roles, subject, (generated, s) => {
        const rbac = build(generated);
        expect(rbac.decide({ principal: principal([]), ...s })).toEqual({
          allowed: false,
          cause: "rbac_no_rule",
        });
        expect(rbac.mayReachServer(principal([]), s.server)).toBe(false);
      }),
      { numRuns: 200 },
    );
  });

  it("whatever a principal may do on a server, mayReachServer says it can reach it", () => {
    fc.assert(
      fc.property(
        roles,
        fc.uniqueArray(fc.integer({ min: 0, max: 3 }), { maxLength: 4 }),
        subject,
        (generated, held, s) => {
          const rbac = build(generated);
          if (rbac.decide({ principal: principal(held), ...s }).allowed) {
            expect(rbac.mayReachServer(principal(held), s.server)).toBe(true);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it("a list shows every entry that some call could use (mayList never hides an allowed call)", () => {
    fc.assert(
      fc.property(
        rolesOf(ruleWith("true", "false", "claims.missing == 1", "arguments.x == 1", "arguments.x != 1")),
        fc.uniqueArray(fc.integer({ min: 0, max: 3 }), { maxLength: 4 }),
        subject,
        (generated, held, s) => {
          const rbac = build(generated);
          const p = principal(held);
          const callable = [{}, { x: 1 }, { x: 2 }].some(
            (args) => rbac.decide({ principal: p, ...s, arguments: args }).allowed,
          );
          if (callable) expect(rbac.mayList(p, s.server, s.kind, s.name)).toBe(true);
          // And an unconditional deny always hides.
          const denied = generated.some(
            (rules, i) =>
              held.includes(i) &&
              rules.some(
                (r) =>
                  r.effect === "deny" &&
                  r.kind === s.kind &&
                  (r.when === undefined || r.when === "true") &&
                  r.globs.some((g) => globMatch(g, `${s.server}/${s.name}`)),
              ),
          );
          if (denied) expect(rbac.mayList(p, s.server, s.kind, s.name)).toBe(false);
        },
      ),
      { numRuns: 300 },
    );
  });
});
