import { readFileSync } from "node:fs";
import { join } from "node:path";
import { request } from "undici";
import { parse } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { approvalsAdminApi } from "../../ext-service/src/approvals/admin-api.js";
import { consoleApi } from "../../ext-service/src/console/api.js";
import { AuditRing, type AuditRecord } from "../../ext-service/src/telemetry/audit.js";
import { adminBaseUrl, boundPort, startAdminServer } from "../../ext-service/src/telemetry/admin.js";
import { startKbServer } from "../../examples/servers/kb.js";
import type { RunningServer } from "../../examples/servers/http.js";
import { connectClient, startGateway, type Gateway } from "../e2e/harness.js";

const KB = (
  parse(readFileSync(join(import.meta.dirname, "../../registry/registry.yaml"), "utf8")) as {
    servers: { name: string; tools: Record<string, unknown>[] }[];
  }
).servers.find((s) => s.name === "kb")!;

describe("AuditRing", () => {
  it("keeps the newest `capacity` records, newest first", () => {
    const ring = new AuditRing(3);
    for (let i = 1; i <= 5; i++) ring.add({ request_id: String(i) } as AuditRecord);
    expect(ring.newestFirst().map((r) => r.request_id)).toEqual(["5", "4", "3"]);
    expect(new AuditRing(2).newestFirst()).toEqual([]);
  });
});

/** /console/api/audit over real HTTP: the edge's audit records, filtered; admins only, same-origin only. */
describe("console API: audit", () => {
  let kb: RunningServer;
  let gw: Gateway;
  let adminUrl: string;
  let close: () => Promise<void>;
  const tokens: Record<string, string> = {};

  beforeAll(async () => {
    kb = await startKbServer(0, "127.0.0.1");
    gw = await startGateway({
      servers: [{ name: "kb", upstreams: [kb.url], tools: KB.tools }],
      roles: {
        reader: { rules: [{ effect: "allow", tools: ["kb/search_articles"] }] },
        approver: { rules: [] },
        admin: { rules: [] },
      },
      agents: { reader: { roles: ["reader"] }, boss: { roles: ["admin"] }, alice: { roles: ["approver"] } },
      config: { approvals: { approvers: [{ roles: ["approver"] }] } },
    });
    for (const name of ["reader", "boss", "alice"]) tokens[name] = await gw.token(name);
    const approvals = gw.edge.state.approvals;
    const admin = await startAdminServer(gw.metrics, { ready: () => true }, "127.0.0.1", 0, [
      approvalsAdminApi(() => gw.edge.engine, approvals, gw.log.logger),
      consoleApi({ engine: () => gw.edge.engine, approvals, audit: gw.edge.audit, logger: gw.log.logger }),
    ]);
    adminUrl = adminBaseUrl("127.0.0.1", boundPort(admin));
    approvals.adminUrl = adminUrl;
    close = () => new Promise<void>((r) => admin.close(() => r()));
  });
  afterAll(async () => {
    await close?.();
    await gw?.close();
    await kb?.close();
  });

  const audit = async (query: string, token = tokens.boss, headers: Record<string, string> = {}) => {
    const res = await request(`${adminUrl}/console/api/audit${query}`, {
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
    });
    return { status: res.statusCode, body: (await res.body.json()) as { records: AuditRecord[] } };
  };

  it("lists the records the edge wrote, filtered by agent, tool, decision and reason", async () => {
    const c = await connectClient(gw.url("kb"), tokens.reader);
    try {
      await c.client.callTool({ name: "search_articles", arguments: { query: "vpn" } });
      await c.client.callTool({ name: "get_article", arguments: { id: "kb-1" } }).catch(() => undefined);
    } finally {
      await c.close();
    }
    const denied = await audit("?agent=reader&decision=deny");
    expect(denied.status).toBe(200);
    expect(denied.body.records.length).toBeGreaterThan(0);
    expect(denied.body.records.every((r) => r.agent === "reader" && r.decision === "deny")).toBe(true);
    expect(denied.body.records.some((r) => r.tools.includes("get_article"))).toBe(true);
    const byTool = await audit("?tool=search_articles");
    expect(byTool.body.records.length).toBeGreaterThan(0);
    expect(
      byTool.body.records.every((r) => r.tools.includes("search_articles") && r.decision === "allow"),
    ).toBe(true);
    const reason = denied.body.records.find((r) => r.tools.includes("get_article"))!.reasons[0]!;
    const byReason = await audit(`?reason=${reason}`);
    expect(byReason.body.records.every((r) => r.reasons.includes(reason))).toBe(true);
    expect((await audit("?agent=nobody")).body.records).toEqual([]);
  });

  it("answers admins only, never without a token or cross-site", async () => {
    expect((await audit("", tokens.alice)).status).toBe(403);
    expect((await audit("", "")).status).toBe(401);
    expect((await audit("", tokens.boss, { origin: "https://evil.example" })).status).toBe(403);
    expect((await audit("", tokens.boss, { "sec-fetch-site": "cross-site" })).status).toBe(403);
    expect((await audit("", tokens.boss, { origin: adminUrl })).status).toBe(200);
  });
});
