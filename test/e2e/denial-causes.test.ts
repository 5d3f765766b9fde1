import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../config/cli-capture.js";
import { httpCall, MCP_HEADERS, rpc, startGateway, type Gateway } from "./harness.js";

/**
 * "Why was this denied": through the edge over real HTTP, the agent is told `tool_unknown`
 * whatever the cause (`policy_denied` for a tool its own list shows), and the audit record and
 * metrics carry the cause; `mcp-gateway explain` on the same gateway.yaml names the same cause
 * and the rule behind it.
 */

let gw: Gateway;

beforeAll(async () => {
  gw = await startGateway({
    servers: [
      {
        name: "ops",
        // Never reached: every call here is refused before forwarding.
        upstreams: ["http://127.0.0.1:9/mcp"],
        tools: [{ name: "restart" }, { name: "status" }, { name: "purge" }],
      },
    ],
    roles: {
      operator: {
        rules: [
          { effect: "allow", tools: ["ops/*"] },
          { effect: "deny", tools: ["ops/purge"], description: "never from an agent" },
          { effect: "allow", tools: ["ops/restart"], when: "arguments.env == 'staging'" },
        ],
      },
      watcher: { rules: [{ effect: "allow", tools: ["ops/status"] }] },
      restarter: { rules: [{ effect: "allow", tools: ["ops/restart"], when: "arguments.env == 'staging'" }] },
    },
    agents: {
      "op-bot": { roles: ["operator"] },
      "watch-bot": { roles: ["watcher"] },
      "r-bot": { roles: ["restarter"] },
    },
    security: { pins: { verifyBeforeCall: false } },
  });
});
afterAll(async () => {
  await gw?.close();
});

async function call(agent: string, tool: string, args: Record<string, unknown> = {}) {
  const res = await httpCall(gw.url("ops"), {
    headers: { ...MCP_HEADERS, authorization: `Bearer ${await gw.token(agent)}` },
    body: rpc("tools/call", { name: tool, arguments: args }),
  });
  const answer = res.messages[0] as {
    error: { code: number; message: string; data: { reason: string; request_id: string } };
  };
  const [record] = await gw.log.auditFor(answer.error.data.request_id);
  return { answer, record: record! };
}

describe("denial causes through the edge", () => {
  it("tells the agent 'unknown' (or, for a listed tool, 'refused by policy') and the audit record the cause", async () => {
    const cases: [string, string, Record<string, unknown>, string, string][] = [
      ["op-bot", "nope", {}, "not_registered", "tool_unknown"],
      ["watch-bot", "restart", {}, "rbac_no_rule", "tool_unknown"],
      ["op-bot", "purge", {}, "rbac_denied_by:roles.operator.rules[1]", "tool_unknown"],
      // r-bot's tools/list shows restart (its rule's condition could hold): "unknown" would read as
      // a gateway bug, so the agent is told the policy refused the call, not the condition.
      ["r-bot", "restart", { env: "prod" }, "condition_false:roles.restarter.rules[0]", "policy_denied"],
    ];
    for (const [agent, tool, args, cause, reason] of cases) {
      const { answer, record } = await call(agent, tool, args);
      expect(answer.error.data.reason, cause).toBe(reason);
      if (reason === "tool_unknown") expect(answer.error.message).toBe(`Unknown tool: ${tool}`);
      else {
        expect(answer.error.code).toBe(-32010);
        expect(answer.error.message).toMatch(/^The gateway's policy refused this request/);
        expect(answer.error.message).not.toMatch(/staging|env|restarter|roles\./);
      }
      expect(record, cause).toMatchObject({ decision: "deny", reasons: [reason], causes: [cause] });
    }
    const text = await gw.metrics.registry.getSingleMetricAsString("mcp_gateway_denial_causes_total");
    for (const kind of ["not_registered", "rbac_no_rule", "rbac_denied_by", "condition_false"]) {
      expect(text).toContain(`mcp_gateway_denial_causes_total{cause="${kind}"} 1`);
    }
    // The rule names stay out of the labels.
    expect(text).not.toContain("roles.");
  });

  /** `mcp-gateway explain` on the gateway's config, for `agent` and `tool`, then `more` options. */
  const explain = (agent: string, tool: string, ...more: string[]) =>
    runCli(["explain", "--config", gw.configFile, "--agent", agent, "--tool", tool, ...more]);

  it("mcp-gateway explain names the same cause and shows the rules", async () => {
    const denied = await explain("op-bot", "ops/purge");
    expect(denied.code).toBe(1);
    expect(denied.stdout).toMatch(/^DENY {2}op-bot -> ops\/purge$/m);
    expect(denied.stdout).toContain('agent sees: tool_unknown ("Unknown tool: purge")');
    expect(denied.stdout).toContain("cause:      rbac_denied_by:roles.operator.rules[1]");
    expect(denied.stdout).toMatch(/roles\.operator\.rules\[1\] +deny +APPLIES/);
    expect(denied.stdout).toContain("never from an agent");

    const allowed = await explain("r-bot", "ops/restart", "--arguments", '{"env":"staging"}', "--json");
    expect(allowed.code).toBe(0);
    const json = JSON.parse(allowed.stdout) as Record<string, unknown>;
    expect(json).toMatchObject({
      decision: "allow",
      reason: null,
      cause: null,
      rules: [{ rule: "roles.restarter.rules[0]", condition: "true", applied: true }],
    });
  });

  // New-user trial: a client of /mcp sees ops__purge; explain took only ops/purge.
  it("explain takes the aggregated endpoint's name of a tool too", async () => {
    const denied = await explain("op-bot", "ops__purge");
    expect(denied.code).toBe(1);
    expect(denied.stdout).toMatch(/^DENY {2}op-bot -> ops\/purge$/m);
    expect(denied.stdout).toContain("cause:      rbac_denied_by:roles.operator.rules[1]");
  });

  // A token from an issuer not in auth.issuers never reaches the rules (the console refused the
  // question; the CLI answered "deny, no roles" as if the rules had been read).
  it("explain answers an unconfigured issuer as the gateway would: jwt_issuer_unknown", async () => {
    const known = await explain("op-bot", "ops/restart", "--json");
    const unknown = await explain("op-bot", "ops/restart", "--issuer", "https://elsewhere.example", "--json");
    expect(JSON.parse(known.stdout)).toMatchObject({ decision: "allow" });
    expect(unknown.code).toBe(1);
    expect(JSON.parse(unknown.stdout)).toMatchObject({
      decision: "deny",
      reason: "jwt_issuer_unknown",
      cause: "jwt_issuer_unknown",
      issuer: "https://elsewhere.example",
    });
  });

  it("explain refuses bad input with a usage error", async () => {
    const bare = await explain("op-bot", "purge");
    expect(bare.code).toBe(2);
    expect(bare.stderr).toContain("--tool must be <server>/<tool> or, as on /mcp, <server>__<tool>");
    expect((await explain("op-bot", "ops__")).code).toBe(2);
    const bad = await explain("op-bot", "ops/purge", "--arguments", "{");
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("--arguments is not JSON");
  });
});
