import { describe, expect, it } from "vitest";
import type { Principal } from "../../ext-service/src/policy/identity.js";
import { Rbac, RbacConfigError, globToRegExp } from "../../ext-service/src/policy/rbac.js";
import type { SubjectKind } from "../../ext-service/src/mcp/methods.js";
import { gatewayConfig } from "./support.js";

function principal(roles: string[], claims: Record<string, unknown> = {}, agent = "bot"): Principal {
  return { agent, roles, claims, issuer: "i", anonymous: false };
}

function rbac(
  roles: Record<string, unknown>,
  now: () => number = Date.now,
  agents: Record<string, unknown> = {},
): Rbac {
  const config = gatewayConfig({ auth: { mode: "optional" }, roles, agents });
  return new Rbac(config, now);
}

const allow = (
  r: Rbac,
  p: Principal,
  server: string,
  name: string,
  kind: SubjectKind = "tools",
  args?: Record<string, unknown>,
) => r.decide({ principal: p, server, kind, name, arguments: args }).allowed;

describe("globs", () => {
  const matches = (glob: string, subject: string) => globToRegExp(glob).test(subject);

  it("* matches within one segment, ** across segments", () => {
    expect(matches("kb/*", "kb/search")).toBe(true);
    expect(matches("kb/*", "kb/")).toBe(true);
    expect(matches("kb/*", "kb/a/b")).toBe(false);
    expect(matches("kb/**", "kb/a/b")).toBe(true);
    expect(matches("*/search", "tickets/search")).toBe(true);
    expect(matches("*/search", "a/b/search")).toBe(false);
    expect(matches("**/search", "a/b/search")).toBe(true);
    expect(matches("kb/get_*", "kb/get_article")).toBe(true);
    expect(matches("kb/get_*", "kb/list")).toBe(false);
    expect(matches("k*/s*", "kb/search")).toBe(true);
    expect(matches("kb/search", "kb/search2")).toBe(false);
    expect(matches("kb/search", "xkb/search")).toBe(false);
  });

  it("treats every other character literally", () => {
    expect(matches("kb/a.b", "kb/aXb")).toBe(false);
    expect(matches("kb/a.b", "kb/a.b")).toBe(true);
    for (const name of ["a+b", "a?", "(x)", "[y]", "{z}", "a|b", "^$", "a\\b"]) {
      expect(matches(`kb/${name}`, `kb/${name}`), name).toBe(true);
    }
    expect(matches("kb/a?", "kb/ab")).toBe(false);
    expect(matches("kb/(x)", "kb/x")).toBe(false);
  });

  it("matches resource URIs, newlines included", () => {
    expect(matches("kb/**", "kb/file:///docs/a.md")).toBe(true);
    expect(matches("kb/file:///docs/*", "kb/file:///docs/a.md")).toBe(true);
    expect(matches("kb/file:///docs/*", "kb/file:///docs/sub/a.md")).toBe(false);
    expect(matches("kb/**", "kb/a\nb")).toBe(true);
    expect(matches("kb/*", "kb/a\nb")).toBe(true);
  });
});

describe("RBAC decisions", () => {
  const r = rbac({
    reader: {
      rules: [
        { effect: "allow", tools: ["kb/*"], prompts: ["kb/summarise"], resources: ["kb/file:///public/**"] },
      ],
    },
    support: {
      rules: [
        { effect: "deny", tools: ["tickets/delete_ticket"] },
        { effect: "allow", tools: ["tickets/*"] },
      ],
    },
    lockdown: { rules: [{ effect: "deny", tools: ["**/*"], prompts: ["*/**"], resources: ["*/**"] }] },
  });

  it("allows what a rule allows and denies everything else by default", () => {
    const p = principal(["reader"]);
    expect(allow(r, p, "kb", "search")).toBe(true);
    expect(r.decide({ principal: p, server: "tickets", kind: "tools", name: "list" })).toEqual({
      allowed: false,
      cause: "rbac_no_rule",
    });
  });

  it("deny wins over allow, in any order and across roles", () => {
    const p = principal(["support"]);
    expect(allow(r, p, "tickets", "list")).toBe(true);
    expect(r.decide({ principal: p, server: "tickets", kind: "tools", name: "delete_ticket" })).toEqual({
      allowed: false,
      cause: "rbac_denied_by:roles.support.rules[0]",
    });
    const both = principal(["reader", "lockdown"]);
    expect(allow(r, both, "kb", "search")).toBe(false);
    expect(allow(r, principal(["lockdown", "reader"]), "kb", "search")).toBe(false);
  });

  it("decides prompts and resources separately from tools", () => {
    const p = principal(["reader"]);
    expect(allow(r, p, "kb", "summarise", "prompts")).toBe(true);
    expect(allow(r, p, "kb", "search", "prompts")).toBe(false);
    expect(allow(r, p, "kb", "summarise", "resources")).toBe(false);
    expect(allow(r, p, "kb", "file:///public/a/b.md", "resources")).toBe(true);
    expect(allow(r, p, "kb", "file:///private/a.md", "resources")).toBe(false);
    expect(allow(r, p, "tickets", "file:///public/a.md", "resources")).toBe(false);
  });

  it("ignores roles that do not exist (e.g. from a token)", () => {
    expect(allow(r, principal(["nonexistent", "reader"]), "kb", "search")).toBe(true);
    expect(allow(r, principal(["nonexistent"]), "kb", "search")).toBe(false);
  });

  it("denies a principal without roles", () => {
    expect(allow(r, principal([]), "kb", "search")).toBe(false);
    expect(r.mayReachServer(principal([]), "kb")).toBe(false);
  });
});

describe("RBAC conditions (CEL)", () => {
  let clock = Date.parse("2026-03-04T10:30:00Z");
  const r = rbac(
    {
      deployer: {
        rules: [
          {
            effect: "allow",
            tools: ["deploy/deploy_service"],
            when: "arguments.environment == 'staging' || ('scope' in claims && claims.scope.contains('deploy:prod'))",
          },
          { effect: "allow", tools: ["deploy/status"], when: "now.getHours() >= 9 && now.getHours() < 17" },
          {
            effect: "allow",
            tools: ["deploy/*"],
            when: "claims.tier == 'gold' && server == 'deploy' && name.startsWith('gold_')",
          },
          {
            effect: "allow",
            tools: ["deploy/whoami"],
            when: "agent == 'release-bot' && 'deployer' in roles && kind == 'tools'",
          },
          { effect: "allow", tools: ["deploy/limit"], when: "arguments.count <= 5" },
        ],
      },
      guarded: {
        rules: [
          { effect: "allow", tools: ["ops/*"] },
          { effect: "deny", tools: ["ops/*"], when: "claims.team != 'sre'" },
          { effect: "deny", tools: ["ops/reboot"], when: "'yes'" },
          { effect: "deny", tools: ["ops/restart"], when: "false" },
        ],
      },
      odd: { rules: [{ effect: "allow", tools: ["odd/*"], when: "'not a boolean'" }] },
    },
    () => clock,
  );

  it("reads arguments and claims", () => {
    const p = principal(["deployer"]);
    expect(allow(r, p, "deploy", "deploy_service", "tools", { environment: "staging" })).toBe(true);
    expect(allow(r, p, "deploy", "deploy_service", "tools", { environment: "production" })).toBe(false);
    const prod = principal(["deployer"], { scope: "read deploy:prod" });
    expect(allow(r, prod, "deploy", "deploy_service", "tools", { environment: "production" })).toBe(true);
    expect(allow(r, p, "deploy", "limit", "tools", { count: 5 })).toBe(true);
    expect(allow(r, p, "deploy", "limit", "tools", { count: 6 })).toBe(false);
    expect(allow(r, p, "deploy", "limit", "tools", { count: "5" })).toBe(false);
  });

  it("reads server, name, agent, roles and kind", () => {
    const gold = principal(["deployer"], { tier: "gold" });
    expect(allow(r, gold, "deploy", "gold_rollout")).toBe(true);
    expect(allow(r, gold, "deploy", "rollout")).toBe(false);
    expect(allow(r, principal(["deployer"], {}, "release-bot"), "deploy", "whoami")).toBe(true);
    expect(allow(r, principal(["deployer"], {}, "other-bot"), "deploy", "whoami")).toBe(false);
  });

  it("reads the time: business hours from now.getHours() (UTC)", () => {
    const p = principal(["deployer"]);
    clock = Date.parse("2026-03-04T10:30:00Z");
    expect(allow(r, p, "deploy", "status")).toBe(true);
    clock = Date.parse("2026-03-04T20:00:00Z");
    expect(allow(r, p, "deploy", "status")).toBe(false);
    clock = Date.parse("2026-03-04T08:59:59Z");
    expect(allow(r, p, "deploy", "status")).toBe(false);
  });

  it("fails closed when a condition errors: an allow does not allow, a deny still denies", () => {
    // The allow for deploy_service reads arguments.environment: missing arguments is an error.
    expect(allow(r, principal(["deployer"]), "deploy", "deploy_service")).toBe(false);
    // claims.tier is missing: the gold allow errors and does not apply.
    expect(allow(r, principal(["deployer"]), "deploy", "gold_rollout")).toBe(false);
    // claims.team is missing: the deny errors and still denies.
    expect(allow(r, principal(["guarded"]), "ops", "status")).toBe(false);
    expect(allow(r, principal(["guarded"], { team: "sre" }), "ops", "status")).toBe(true);
    expect(allow(r, principal(["guarded"], { team: "dev" }), "ops", "status")).toBe(false);
  });

  it("treats a non-boolean result like an error: no allow, still a deny", () => {
    expect(allow(r, principal(["odd"]), "odd", "x")).toBe(false);
    expect(allow(r, principal(["guarded"], { team: "sre" }), "ops", "reboot")).toBe(false);
    // A deny whose condition is false does not apply.
    expect(allow(r, principal(["guarded"], { team: "sre" }), "ops", "restart")).toBe(true);
  });
});

describe("mayList (what list responses show)", () => {
  const r = rbac({
    deployer: {
      rules: [
        { effect: "allow", tools: ["deploy/deploy_service"], when: "arguments.environment == 'staging'" },
        { effect: "deny", tools: ["deploy/rollback"], when: "arguments.force == true" },
        { effect: "allow", tools: ["deploy/rollback", "deploy/status"] },
        { effect: "deny", tools: ["deploy/status"], when: "claims.team != 'sre'" },
        { effect: "allow", tools: ["deploy/gold"], when: "claims.tier == 'gold'" },
        { effect: "deny", tools: ["deploy/nuke"] },
        { effect: "allow", tools: ["deploy/nuke"] },
      ],
    },
  });
  const p = principal(["deployer"], { team: "sre", tier: "silver" });

  it("keeps entries whose allow depends on arguments, and whose deny depends on arguments", () => {
    expect(r.mayList(p, "deploy", "tools", "deploy_service")).toBe(true);
    expect(r.mayList(p, "deploy", "tools", "rollback")).toBe(true);
  });

  it("drops entries whose allow is certainly false or whose deny certainly applies", () => {
    expect(r.mayList(p, "deploy", "tools", "gold")).toBe(false);
    expect(r.mayList(p, "deploy", "tools", "nuke")).toBe(false);
    expect(r.mayList(principal(["deployer"], { team: "dev" }), "deploy", "tools", "status")).toBe(false);
    expect(r.mayList(p, "deploy", "tools", "status")).toBe(true);
    expect(r.mayList(p, "deploy", "tools", "unknown")).toBe(false);
    expect(r.mayList(principal([]), "deploy", "tools", "status")).toBe(false);
  });
});

describe("mayReachServer", () => {
  const r = rbac({
    reader: { rules: [{ effect: "allow", tools: ["kb/*"], resources: ["docs/**"] }] },
    wild: { rules: [{ effect: "allow", prompts: ["*/greeting"] }] },
    conditional: { rules: [{ effect: "allow", tools: ["deploy/*"], when: "claims.x == 1" }] },
    denier: { rules: [{ effect: "deny", tools: ["kb/*"] }] },
  });

  it("is true when some allow rule could apply to something on the server", () => {
    expect(r.mayReachServer(principal(["reader"]), "kb")).toBe(true);
    expect(r.mayReachServer(principal(["reader"]), "docs")).toBe(true);
    expect(r.mayReachServer(principal(["reader"]), "tickets")).toBe(false);
    expect(r.mayReachServer(principal(["wild"]), "anything")).toBe(true);
    // Conditions are decided per message, with its arguments: the server is reachable.
    expect(r.mayReachServer(principal(["conditional"]), "deploy")).toBe(true);
  });

  it("follows a ** that starts in the server part across the slash", () => {
    const spanning = rbac({ s: { rules: [{ effect: "allow", tools: ["ti**x/list"] }] } });
    expect(allow(spanning, principal(["s"]), "tickets", "zx/list")).toBe(true);
    expect(spanning.mayReachServer(principal(["s"]), "tickets")).toBe(true);
    expect(spanning.mayReachServer(principal(["s"]), "kb")).toBe(false);
  });

  it("is false with only deny rules or no roles", () => {
    expect(r.mayReachServer(principal(["denier"]), "kb")).toBe(false);
    expect(r.mayReachServer(principal([]), "kb")).toBe(false);
  });
});

describe("RBAC configuration errors", () => {
  it("lists every problem with its path", () => {
    let error: unknown;
    try {
      rbac(
        {
          a: {
            rules: [
              { effect: "allow", tools: ["noslash"] },
              { effect: "allow", tools: ["kb/*"], when: "arguments.x ==" },
              { effect: "allow", tools: ["kb/*"], when: "argumnets.x == 1" },
              {
                effect: "allow",
                tools: ["kb/*"],
                when: "arguments.tags.exists(t, t == 'x') && [1].all(n, n > 0)",
              },
            ],
          },
        },
        Date.now,
        { bot: { roles: ["a", "b"] }, other: { roles: ["c"] } },
      );
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(RbacConfigError);
    expect(
      (error as RbacConfigError).problems.map((p) => [p.path.join("."), p.message.split(":")[0]]),
    ).toEqual([
      ["roles.a.rules.0.tools.0", "'noslash' must be 'server/name' (globs allowed)"],
      ["roles.a.rules.1.when", "invalid CEL condition"],
      ["roles.a.rules.2.when", "invalid CEL condition"],
      ["agents.bot.roles.1", "unknown role 'b'"],
      ["agents.other.roles.0", "unknown role 'c'"],
    ]);
    expect((error as RbacConfigError).problems[2]!.message).toContain("unknown name 'argumnets'");
  });
});
