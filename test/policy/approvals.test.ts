import { describe, expect, it } from "vitest";
import { ApprovalPolicy, ApprovalsConfigError } from "../../ext-service/src/policy/approvals.js";
import type { Principal } from "../../ext-service/src/policy/identity.js";
import { Rbac } from "../../ext-service/src/policy/rbac.js";
import { GatewayConfigSchema, ToolSchema, type RegistryTool } from "../../ext-service/src/config/schema.js";
import { crossReferenceProblems } from "../../ext-service/src/config/compile.js";

const IDP = "https://idp.example";
const OTHER_IDP = "https://other.example";

function principal(agent: string, roles: string[] = [], issuer: string | undefined = IDP): Principal {
  return { agent, roles, claims: { sub: agent }, issuer, anonymous: false };
}

function config(approvals: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  return GatewayConfigSchema.parse({
    registry: "registry.yaml",
    auth: {
      issuers: [
        { issuer: IDP, audiences: ["gw"], jwks: { inline: { keys: [{ kty: "oct" }] } } },
        { issuer: OTHER_IDP, audiences: ["gw"], jwks: { inline: { keys: [{ kty: "oct" }] } } },
      ],
    },
    roles: {
      deployer: { rules: [{ effect: "allow", tools: ["deploy/*"] }] },
      approver: {},
      admin: {},
      ...((extra.roles as object | undefined) ?? {}),
    },
    agents: {
      "release-bot": { issuer: IDP, roles: ["deployer"] },
      alice: { issuer: IDP, roles: ["approver"] },
      bob: { issuer: IDP, roles: [] },
    },
    approvals,
  });
}

const tool = (fields: Record<string, unknown>): RegistryTool =>
  ToolSchema.parse({ name: "deploy_service", description: "Deploy a service.", ...fields });

const CRITICAL = tool({ risk: "critical" });
const call = (args: unknown, t: RegistryTool = CRITICAL) => ({
  server: "deploy",
  name: t.name,
  tool: t,
  arguments: args,
});

describe("which calls need approval", () => {
  const policy = new ApprovalPolicy(
    config({
      approvers: [{ roles: ["approver"] }],
      rules: [
        {
          name: "production-deploys",
          risk: ["critical"],
          when: "arguments.environment == 'production'",
          ttl: "2m",
        },
        { name: "shell", tools: ["deploy/run_*"], uses: 3 },
      ],
    }),
  );
  const bot = principal("release-bot", ["deployer"]);

  it("matches risk and the CEL condition over arguments; the rule's terms apply", () => {
    const prod = policy.requirement(bot, call({ service: "billing", environment: "production" }));
    expect(prod).toMatchObject({ rule: "production-deploys", ttlMs: 120_000, pendingMs: 900_000, uses: 1 });
    expect(policy.requirement(bot, call({ service: "billing", environment: "staging" }))).toBeUndefined();
    // A lower risk level is not matched, whatever the arguments.
    expect(
      policy.requirement(bot, call({ environment: "production" }, tool({ risk: "high" }))),
    ).toBeUndefined();
  });

  it("a condition that cannot be evaluated asks a human (fails closed)", () => {
    // No `environment` at all: the condition errs, which counts as matching.
    expect(policy.requirement(bot, call({ service: "billing" }))?.rule).toBe("production-deploys");
    expect(policy.requirement(bot, call(undefined))?.rule).toBe("production-deploys");
  });

  it("matches tool globs and falls back to the default terms", () => {
    const shell = tool({ name: "run_command" });
    expect(policy.requirement(bot, call({ command: "ls" }, shell))).toMatchObject({
      rule: "shell",
      uses: 3,
      ttlMs: 300_000,
    });
  });

  it("a role rule with approval: required asks for one with the default approvers", () => {
    const cfg = config(
      { approvers: [{ roles: ["approver"] }] },
      {
        roles: {
          deployer: { rules: [{ effect: "allow", tools: ["deploy/*"], approval: "required" }] },
          staging: { rules: [{ effect: "allow", tools: ["deploy/*"] }] },
        },
      },
    );
    const rbac = new Rbac(cfg);
    const p = new ApprovalPolicy(cfg);
    const access = rbac.decide({
      principal: principal("release-bot", ["staging", "deployer"]),
      server: "deploy",
      kind: "tools",
      name: "deploy_service",
    });
    // Another role allows the call without approval: the stricter rule still holds.
    expect(access).toEqual({ allowed: true, approval: "roles.deployer.rules[0]" });
    const req = p.requirement(bot, call({}, tool({})), access.allowed ? access.approval : undefined);
    expect(req).toMatchObject({ rule: "roles.deployer.rules[0]", uses: 1 });
    expect(req?.approvers).toEqual([{ roles: ["approver"], tools: ["**"] }]);
    expect(p.requirement(bot, call({}, tool({})))).toBeUndefined();
  });
});

describe("what an approval binds", () => {
  const policy = new ApprovalPolicy(config({ approvers: [{ roles: ["approver"] }] }));
  const bot = principal("release-bot", ["deployer"]);
  const base = policy.binding(bot, call({ service: "billing", environment: "production" }));

  it("the same call in another key order is the same binding", () => {
    const again = policy.binding(bot, call({ environment: "production", service: "billing" }));
    expect(policy.bindingKey(again)).toBe(policy.bindingKey(base));
  });

  it("arguments, agent, issuer and pin each change it", () => {
    const keys = new Set([
      policy.bindingKey(base),
      policy.bindingKey(policy.binding(bot, call({ service: "billing", environment: "staging" }))),
      policy.bindingKey(
        policy.binding(principal("other-bot"), call({ service: "billing", environment: "production" })),
      ),
      policy.bindingKey(
        policy.binding(
          principal("release-bot", [], OTHER_IDP),
          call({ service: "billing", environment: "production" }),
        ),
      ),
      policy.bindingKey(
        policy.binding(
          bot,
          call(
            { service: "billing", environment: "production" },
            tool({ risk: "critical", description: "Deploy a service, now with a changed description." }),
          ),
        ),
      ),
    ]);
    expect(keys.size).toBe(5);
  });

  it("binds the registry pin when the tool has one", () => {
    const pinned = tool({ pin: `sha256:${"a".repeat(64)}` });
    expect(policy.binding(bot, call({}, pinned)).pin).toBe(`sha256:${"a".repeat(64)}`);
  });
});

describe("who may decide", () => {
  const policy = new ApprovalPolicy(
    config({
      approvers: [{ roles: ["approver"] }, { agents: ["bob"], tools: ["tickets/*"] }],
      admin: { roles: ["admin"] },
    }),
  );
  const approval = {
    binding: policy.binding(principal("release-bot"), call({ environment: "production" })),
    approvers: [
      { roles: ["approver"], tools: ["**"] },
      { agents: [{ name: "bob", issuer: IDP }], tools: ["tickets/*"] },
    ],
  };

  it("an approver of another identity may; the caller never, whatever its roles", () => {
    expect(policy.mayDecide(principal("alice", ["approver"]), approval)).toEqual({ ok: true });
    expect(policy.mayDecide(principal("release-bot", ["approver", "admin"]), approval)).toEqual({
      ok: false,
      refusal: "self",
    });
  });

  it("a named approver is limited to its tools and its issuer", () => {
    expect(policy.mayDecide(principal("bob"), approval)).toEqual({ ok: false, refusal: "not_approver" });
    const ticket = {
      ...approval,
      binding: { ...approval.binding, server: "tickets", tool: "close" },
    };
    expect(policy.mayDecide(principal("bob"), ticket)).toEqual({ ok: true });
    // A token of another issuer naming the same subject is another principal.
    expect(policy.mayDecide(principal("bob", [], OTHER_IDP), ticket)).toEqual({
      ok: false,
      refusal: "not_approver",
    });
  });

  it("admin access needs a token of an accepted issuer with an admin role or an approver entry", () => {
    expect(policy.adminAccess(principal("root", ["admin"]))).toBe("admin");
    expect(policy.adminAccess(principal("alice", ["approver"]))).toBe("approver");
    expect(policy.adminAccess(principal("bob"))).toBe("approver");
    expect(policy.adminAccess(principal("release-bot", ["deployer"]))).toBeUndefined();
    expect(
      policy.adminAccess({ ...principal("anonymous", ["admin"], undefined), anonymous: true }),
    ).toBeUndefined();
    const onlyIdp = new ApprovalPolicy(config({ admin: { roles: ["admin"], issuers: [IDP] } }));
    expect(onlyIdp.adminAccess(principal("root", ["admin"], OTHER_IDP))).toBeUndefined();
  });
});

describe("approvals config", () => {
  it("names every problem with its path", () => {
    const cfg = config({
      approvers: [{ roles: ["nobody"], agents: ["ghost"], tools: ["nope"] }],
      rules: [{ name: "bad", when: "argumnets.environment == 'production'" }],
    });
    let problems: readonly { path: readonly (string | number)[] }[] = [];
    try {
      new ApprovalPolicy(cfg);
    } catch (err) {
      expect(err).toBeInstanceOf(ApprovalsConfigError);
      problems = (err as ApprovalsConfigError).problems;
    }
    expect(problems.map((p) => p.path.join("."))).toEqual([
      "approvals.approvers.0.roles.0",
      "approvals.approvers.0.agents.0",
      "approvals.approvers.0.tools.0",
      "approvals.rules.0.when",
    ]);
    expect(crossReferenceProblems(cfg, "/x/gateway.yaml").map((p) => p.message)).toContain(
      "unknown role 'nobody'",
    );
  });

  it("refuses rules nobody could approve and approval on deny rules", () => {
    const noApprovers = GatewayConfigSchema.safeParse({
      registry: "r.yaml",
      auth: { mode: "optional" },
      approvals: { rules: [{ name: "x", risk: ["critical"] }] },
    });
    expect(noApprovers.success).toBe(false);
    expect(JSON.stringify(noApprovers.error?.issues)).toContain("nobody could approve");
    const onDeny = GatewayConfigSchema.safeParse({
      registry: "r.yaml",
      auth: { mode: "optional" },
      roles: { r: { rules: [{ effect: "deny", tools: ["a/b"], approval: "required" }] } },
    });
    expect(JSON.stringify(onDeny.error?.issues)).toContain("approval: required belongs on an allow rule");
    expect(
      () =>
        new ApprovalPolicy(
          config(
            {},
            { roles: { d: { rules: [{ effect: "allow", tools: ["a/b"], approval: "required" }] } } },
          ),
        ),
    ).toThrow(/role rules with approval: required need approvers/);
  });
});
