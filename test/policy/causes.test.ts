import { beforeAll, describe, expect, it } from "vitest";
import type { PolicyEngine } from "../../ext-service/src/policy/engine.js";
import type { Exchange } from "../../ext-service/src/policy/exchange.js";
import { explainToolCall, formatExplanation } from "../../ext-service/src/policy/explain.js";
import { REGISTRY, engineFor, gatewayFor, makeKey, sign, type TestKey } from "./support.js";

/**
 * The precise cause of a denial goes to the audit record (exchange.causes) while the agent is
 * told the public reason; `explain` reaches the same decision through the same engine calls.
 */

let key: TestKey;
let engine: PolicyEngine;
const tokens: Record<string, string> = {};

function config(jwk: unknown) {
  const base = gatewayFor(jwk);
  return {
    ...base,
    roles: {
      ...base.roles,
      deployer: {
        rules: [
          {
            effect: "allow",
            tools: ["deploy/deploy_service"],
            when: "arguments.environment == 'staging'",
            description: "staging only",
          },
        ],
      },
      claimed: { rules: [{ effect: "allow", tools: ["deploy/*"], when: "claims.team == 'ops'" }] },
    },
    agents: {
      ...base.agents,
      "deploy-bot": { roles: ["deployer"] },
      "claims-bot": { roles: ["claimed"] },
    },
  };
}

beforeAll(async () => {
  key = await makeKey("ES256", "k1");
  engine = engineFor(config(key.publicJwk), REGISTRY);
  for (const sub of ["research-bot", "support-bot", "limited-bot", "deploy-bot", "claims-bot"]) {
    tokens[sub] = await sign(key, { iss: "https://idp.example", aud: "mcp-gateway", sub });
  }
});

async function decide(
  agent: string,
  server: string,
  name: string,
  args: unknown = {},
): Promise<{ exchange: Exchange; answer: { error?: { message: string; data: { reason: string } } } }> {
  const exchange = engine.newExchange("POST");
  const admission = await engine.admit(
    { method: "POST", path: `/mcp/${server}`, headers: { authorization: `Bearer ${tokens[agent]}` } },
    exchange,
  );
  if (!admission.ok) return { exchange, answer: JSON.parse(admission.reply.body) };
  const message = { jsonrpc: "2.0", id: 1, method: "tools/call", params: { name, arguments: args } };
  const verdict = engine.evaluateRequestBody(exchange, new TextEncoder().encode(JSON.stringify(message)), {});
  return { exchange, answer: verdict.action === "reply" ? JSON.parse(verdict.reply.body) : {} };
}

describe("denial causes", () => {
  const cases: [string, string, string, unknown, string, string][] = [
    // agent, server, tool, arguments, what the agent sees, what the audit record says
    ["research-bot", "kb", "nope", {}, "tool_unknown", "not_registered"],
    ["limited-bot", "tickets", "delete_ticket", {}, "tool_unknown", "rbac_no_rule"],
    ["support-bot", "tickets", "delete_ticket", {}, "tool_unknown", "rbac_denied_by:roles.support.rules[1]"],
    [
      "deploy-bot",
      "deploy",
      "deploy_service",
      { environment: "prod" },
      // Listed to the agent (its rule's condition could hold): refused by policy, not unknown.
      "policy_denied",
      "condition_false:roles.deployer.rules[0]",
    ],
    ["claims-bot", "deploy", "deploy_service", {}, "policy_denied", "condition_error:roles.claimed.rules[0]"],
    ["support-bot", "tickets", "old_export", {}, "tool_deprecated", "deprecated"],
    ["research-bot", "tickets", "old_export", {}, "server_unknown", "rbac_no_rule"],
  ];

  it.each(cases)("%s -> %s/%s: the agent sees %s, the audit record %s", async (...c) => {
    const [agent, server, tool, args, reason, cause] = c;
    const { exchange, answer } = await decide(agent, server, tool, args);
    expect(answer.error?.data.reason).toBe(reason);
    // Nothing of the cause reaches the agent.
    for (const word of ["rbac", "condition_", "not_registered", "roles."]) {
      expect(JSON.stringify(answer)).not.toContain(word);
    }
    expect(exchange.causes).toEqual([cause]);
    expect(exchange.decision).toBe("deny");
  });

  it("an allowed call records no cause", async () => {
    const { exchange } = await decide("deploy-bot", "deploy", "deploy_service", { environment: "staging" });
    expect(exchange.decision).toBe("allow");
    expect(exchange.causes).toEqual([]);
  });

  it("a refusal whose reason says it all keeps the reason as its cause", async () => {
    const { exchange, answer } = await decide("research-bot", "kb", "search", { query: 42 });
    expect(answer.error?.data.reason).toBe("invalid_arguments");
    expect(exchange.causes).toEqual(["invalid_arguments"]);
  });
});

describe("explain", () => {
  it("gives the decision, the public reason and the cause the planes reach, for each case", async () => {
    const cases: [string, string, string, unknown][] = [
      ["research-bot", "kb", "nope", {}],
      ["research-bot", "kb", "search", { query: "q" }],
      ["limited-bot", "tickets", "delete_ticket", {}],
      ["support-bot", "tickets", "delete_ticket", {}],
      ["deploy-bot", "deploy", "deploy_service", { environment: "prod" }],
      ["deploy-bot", "deploy", "deploy_service", { environment: "staging" }],
      ["support-bot", "tickets", "old_export", {}],
      ["research-bot", "tickets", "list_tickets", {}],
      ["research-bot", "nowhere", "x", {}],
    ];
    for (const [agent, server, tool, args] of cases) {
      const planes = await decide(agent, server, tool, args);
      const e = explainToolCall(engine, { agent, server, tool, arguments: args });
      const label = `${agent} ${server}/${tool}`;
      expect(e.decision, label).toBe(planes.exchange.decision);
      expect(e.reason, label).toBe(planes.answer.error?.data.reason);
      expect(e.message, label).toBe(planes.answer.error?.message);
      expect(e.cause, label).toBe(planes.exchange.causes[0]);
    }
  });

  it("lists the rules in order with how each took part", () => {
    const e = explainToolCall(engine, { agent: "support-bot", server: "tickets", tool: "delete_ticket" });
    expect(e.roles).toEqual(["reader", "support"]);
    expect(e.rules.map((r) => [r.rule, r.effect, r.matches, r.applied])).toEqual([
      ["roles.reader.rules[0]", "allow", false, false],
      ["roles.support.rules[0]", "allow", true, true],
      ["roles.support.rules[1]", "deny", true, true],
    ]);
    expect(e.registry).toMatchObject({ server: "registered", tool: "registered" });
    const text = formatExplanation(e);
    expect(text).toMatch(/^DENY {2}support-bot -> tickets\/delete_ticket$/m);
    expect(text).toContain("cause:      rbac_denied_by:roles.support.rules[1]");
    expect(text).toMatch(/roles\.support\.rules\[1\] +deny +APPLIES/);
  });

  it("evaluates conditions on the arguments and claims given", () => {
    const prod = explainToolCall(engine, {
      agent: "deploy-bot",
      server: "deploy",
      tool: "deploy_service",
      arguments: { environment: "prod" },
    });
    expect(prod.rules[0]).toMatchObject({ condition: "false", applied: false, description: "staging only" });
    const ops = explainToolCall(engine, {
      agent: "claims-bot",
      server: "deploy",
      tool: "deploy_service",
      claims: { team: "ops" },
    });
    expect(ops.decision).toBe("allow");
    expect(ops.rules[0]).toMatchObject({ condition: "true", applied: true });
    const other = explainToolCall(engine, {
      agent: "claims-bot",
      server: "deploy",
      tool: "deploy_service",
      claims: { team: "dev" },
    });
    expect(other.cause).toBe("condition_false:roles.claimed.rules[0]");
  });

  it("an agent not in gateway.yaml holds only the roles its token would carry", () => {
    const e = explainToolCall(engine, {
      agent: "stranger",
      server: "kb",
      tool: "search",
      tokenRoles: ["reader"],
    });
    expect(e.agentConfigured).toBe(false);
    // The test issuer does not trust token roles: the stranger holds none.
    expect(e.roles).toEqual([]);
    expect(e.decision).toBe("deny");
    expect(e.reason).toBe("server_unknown");
    expect(e.cause).toBe("rbac_no_rule");
  });
});
