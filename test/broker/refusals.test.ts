import { describe, expect, it } from "vitest";
import type { AuditRecord } from "../../ext-service/src/telemetry/audit.js";
import { connectClient, httpCall, MCP_HEADERS, rpc } from "../e2e/harness.js";
import { connectModern, demoPlane } from "./support.js";

/**
 * Issue 14: what the aggregated endpoint refuses on its own (a missing or unknown session, a
 * name that routes to no server of the agent's view, an answer no request waits for, an error the
 * SDK's transport writes) was audited as `allow` with the HTTP status, without a request id, and
 * partly without `error.data.reason`. Each is now a denial with its reason in the audit record and
 * the metrics, and carries the record's request id, on both planes.
 */

interface RpcError {
  code: number;
  message: string;
  data?: { reason?: string; request_id?: string };
}

describe.each(["edge", "envoy"] as const)("the broker's own refusals, %s plane", (plane) => {
  const demo = demoPlane(plane);
  const url = demo.url;
  const headers = () => ({ ...MCP_HEADERS, authorization: `Bearer ${demo.gw.token("support-bot")}` });

  /** The aggregated endpoint's record of the request (not a hop's: those name a server route). */
  async function recordOf(requestId: string | undefined): Promise<AuditRecord> {
    expect(typeof requestId).toBe("string");
    const records = await demo.gw.log.auditFor(requestId!);
    expect(records).toHaveLength(1);
    expect(records[0]!.plane).toBe(plane);
    return records[0]!;
  }

  async function expectRefused(
    r: { status: number; text: string },
    status: number,
    reason: string,
    id: number | null,
  ): Promise<AuditRecord> {
    expect([reason, r.status]).toEqual([reason, status]);
    const body = JSON.parse(r.text) as { id: unknown; error: RpcError };
    expect(body.id).toBe(id);
    expect(body.error.data?.reason).toBe(reason);
    const record = await recordOf(body.error.data?.request_id);
    expect(record).toMatchObject({ decision: "deny", reasons: [reason], status, agent: "support-bot" });
    return record;
  }

  it("1.x client: a name whose server is unknown or outside the agent's view is a denial, audited", async () => {
    const mcp = await connectClient(url(), demo.gw.token("support-bot"));
    try {
      const cases: [string, string, string | null][] = [
        ["zzz__foo", "server_not_registered", null],
        ["nosuchseparator", "server_not_registered", null],
        // support-bot's roles reach no tool of deploy: told exactly as for a name that does not exist.
        ["deploy__deploy_status", "not_in_view", "deploy"],
      ];
      for (const [name, cause, server] of cases) {
        const err = (await mcp.client.callTool({ name, arguments: {} }).then(
          () => undefined,
          (e: unknown) => e,
        )) as RpcError | undefined;
        expect(err?.code, name).toBe(-32602);
        expect(err?.message).toContain(`Unknown tool: ${name}`);
        expect(err?.data?.reason).toBe("tool_unknown");
        const record = await recordOf(err?.data?.request_id);
        expect(record).toMatchObject({
          decision: "deny",
          reasons: ["tool_unknown"],
          causes: [cause],
          server,
          tools: [name],
          methods: ["tools/call"],
          status: 200,
        });
      }
      // Prompts and resources alike.
      const prompt = (await mcp.client.getPrompt({ name: "zzz__p" }).catch((e: unknown) => e)) as RpcError;
      expect(prompt.data?.reason).toBe("prompt_unknown");
      expect((await recordOf(prompt.data?.request_id)).reasons).toEqual(["prompt_unknown"]);
      const read = (await mcp.client
        .readResource({ uri: "deploy.x://y" })
        .catch((e: unknown) => e)) as RpcError;
      expect(read.data?.reason).toBe("resource_unknown");
      expect(await recordOf(read.data?.request_id)).toMatchObject({
        decision: "deny",
        reasons: ["resource_unknown"],
        server: "deploy",
        resources: ["deploy.x://y"],
      });
    } finally {
      await mcp.close();
    }
  });

  it("v2 client (2026-07-28): the same denial, audited", async () => {
    const client = await connectModern(url(), demo.gw.token("support-bot"));
    try {
      const err = (await client.callTool({ name: "zzz__foo", arguments: {} }).then(
        () => undefined,
        (e: unknown) => e,
      )) as RpcError | undefined;
      expect(err?.code).toBe(-32602);
      expect(err?.data?.reason).toBe("tool_unknown");
      expect(await recordOf(err?.data?.request_id)).toMatchObject({
        decision: "deny",
        reasons: ["tool_unknown"],
        causes: ["server_not_registered"],
        tools: ["zzz__foo"],
      });
    } finally {
      await client.close();
    }
  });

  it("a request without a session, with an unknown one, or with an unsupported revision is refused with its reason and request id", async () => {
    await expectRefused(
      await httpCall(url(), { headers: headers(), body: rpc("tools/list", {}, 5) }),
      400,
      "session_required",
      5,
    );
    const mcp = await connectClient(url(), demo.gw.token("support-bot"));
    try {
      const sessionId = mcp.transport.sessionId!;
      await expectRefused(
        await httpCall(url(), {
          headers: { ...headers(), "mcp-session-id": `${sessionId}x` },
          body: rpc("tools/list", {}, 6),
        }),
        404,
        "session_unknown",
        6,
      );
      // No request of the session waits for this answer.
      await expectRefused(
        await httpCall(url(), {
          headers: { ...headers(), "mcp-session-id": sessionId },
          body: JSON.stringify({ jsonrpc: "2.0", id: 77, result: {} }),
        }),
        409,
        "answer_not_pending",
        null,
      );
      // Written by the SDK's session transport, which gives no reason of its own; the broker adds
      // the reason and answers the request's id, as /mcp/<server> does (d666791).
      await expectRefused(
        await httpCall(url(), {
          headers: { ...headers(), "mcp-session-id": sessionId, "mcp-protocol-version": "1999-01-01" },
          body: rpc("tools/list", {}, 8),
        }),
        400,
        "unsupported_protocol_version",
        8,
      );
    } finally {
      await mcp.close();
    }
  });

  it("counts the broker's refusals as denials in the metrics, as /mcp/<server> denials are", async () => {
    const metric = async (name: string) => demo.gw.metrics.registry.getSingleMetricAsString(name);
    const count = (text: string, pattern: RegExp) => Number(pattern.exec(text)?.[1] ?? 0);
    const violations = /mcp_gateway_violations_total\{reason="session_unknown"\} (\d+)/;
    const before = count(await metric("mcp_gateway_violations_total"), violations);
    const r = await httpCall(url(), {
      headers: { ...headers(), "mcp-session-id": "not-a-session" },
      body: rpc("tools/list", {}, 9),
    });
    await expectRefused(r, 404, "session_unknown", 9);
    expect(count(await metric("mcp_gateway_violations_total"), violations)).toBe(before + 1);
    expect(await metric("mcp_gateway_requests_total")).toMatch(
      /mcp_gateway_requests_total\{server="-",method="tools\/list",decision="deny"\} [1-9]/,
    );
    expect(await metric("mcp_gateway_denial_causes_total")).toMatch(
      /mcp_gateway_denial_causes_total\{cause="server_not_registered"\} [1-9]/,
    );
  });
});
