import { describe, expect, it } from "vitest";
import { connectClient, waitFor } from "../e2e/harness.js";
import { connect2025, connectModern, demoPlane } from "./support.js";

/**
 * A tool the agent's tools/list shows, refused by a rule's CEL condition on this call's
 * arguments (release-bot's production deploy without the deploy:prod scope, examples/gateway.yaml),
 * used to answer "Unknown tool", which read as a gateway bug. It answers `policy_denied`: the
 * gateway's policy refused the call, with the record's request id and without the condition's
 * text, on /mcp/<server> and on /mcp, on both planes, with the 1.x and the v2 client; the audit
 * record keeps the precise cause.
 */

interface Refusal {
  code?: unknown;
  message?: unknown;
  data?: { reason?: unknown; request_id?: unknown };
}

const PRODUCTION = { service: "billing", version: "2.5.0", environment: "production" };
const STAGING = { service: "billing", version: "2.5.0", environment: "staging" };

function expectPolicyRefusal(err: Refusal | undefined): string {
  expect(err?.code).toBe(-32010);
  expect(err?.data?.reason).toBe("policy_denied");
  expect(err?.message).toMatch(/The gateway's policy refused this request/);
  // Nothing of the rule or its condition reaches the agent.
  expect(JSON.stringify(err)).not.toMatch(/scope|deploy:prod|claims|staging|roles\.|condition/);
  expect(err?.data?.request_id).toEqual(expect.any(String));
  return err!.data!.request_id as string;
}

const refusal = (e: unknown) => e as Refusal;

describe.each(["edge", "envoy"] as const)("a listed tool refused by a condition, %s plane", (plane) => {
  const demo = demoPlane(plane);

  /** The audit record of the per-server decision: a deny with the condition's cause. */
  const expectAudited = async (requestId: string) => {
    await waitFor(() => demo.gw.log.audits.some((a) => a.request_id === requestId));
    const record = demo.gw.log.audits.find((a) => a.request_id === requestId)!;
    expect(record).toMatchObject({
      plane,
      server: "deploy",
      agent: "release-bot",
      decision: "deny",
      reasons: ["policy_denied"],
      causes: ["condition_false:roles.deployer.rules[0]"],
    });
  };

  it("/mcp/deploy, 1.x client: policy_denied, audited with the rule", async () => {
    const mcp = await connectClient(`${demo.origin()}/mcp/deploy`, demo.gw.token("release-bot"));
    try {
      const tools = (await mcp.client.listTools()).tools.map((t) => t.name);
      expect(tools).toContain("deploy_service");
      const err = await mcp.client
        .callTool({ name: "deploy_service", arguments: PRODUCTION })
        .then(() => undefined, refusal);
      await expectAudited(expectPolicyRefusal(err));
    } finally {
      await mcp.close();
    }
  });

  it("/mcp, 1.x client: the hop's policy_denied reaches the agent as it is", async () => {
    const mcp = await connectClient(demo.url(), demo.gw.token("release-bot"));
    try {
      const tools = (await mcp.client.listTools()).tools.map((t) => t.name);
      expect(tools).toContain("deploy__deploy_service");
      const err = await mcp.client
        .callTool({ name: "deploy__deploy_service", arguments: PRODUCTION })
        .then(() => undefined, refusal);
      await expectAudited(expectPolicyRefusal(err));
      // The same tool with arguments the condition accepts still runs.
      const ok = await mcp.client.callTool({ name: "deploy__deploy_service", arguments: STAGING });
      expect(JSON.stringify(ok.content)).toContain("Deployed billing@2.5.0 to staging");
    } finally {
      await mcp.close();
    }
  });

  it("/mcp, v2 client (2026-07-28): policy_denied", async () => {
    const client = await connectModern(demo.url(), demo.gw.token("release-bot"));
    try {
      const err = await client
        .callTool({ name: "deploy__deploy_service", arguments: PRODUCTION })
        .then(() => undefined, refusal);
      await expectAudited(expectPolicyRefusal(err));
    } finally {
      await client.close();
    }
  });

  it("/mcp/deploy, v2 client in a 2025 session (the deploy demo server speaks 2025 only): policy_denied", async () => {
    const client = await connect2025("2.x", `${demo.origin()}/mcp/deploy`, demo.gw.token("release-bot"));
    try {
      const err = await client.call("deploy_service", PRODUCTION).then(() => undefined, refusal);
      await expectAudited(expectPolicyRefusal(err));
    } finally {
      await client.close();
    }
  });

  it("a tool the agent's list does not show still reads as unknown", async () => {
    const mcp = await connectClient(demo.url(), demo.gw.token("release-bot"));
    try {
      const err = await mcp.client
        .callTool({ name: "deploy__run_command", arguments: { command: "uptime" } })
        .then(() => undefined, refusal);
      expect(err?.data?.reason).toBe("tool_unknown");
    } finally {
      await mcp.close();
    }
  });
});
