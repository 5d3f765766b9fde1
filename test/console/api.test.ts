import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { request } from "undici";
import { parse, stringify } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuditRing, type AuditRecord } from "../../ext-service/src/telemetry/audit.js";
import { startKbServer } from "../../examples/servers/kb.js";
import type { RunningServer } from "../../examples/servers/http.js";
import { connectClient, startGateway, type Gateway } from "../e2e/harness.js";
import { KB, startConsoleAdmin } from "./support.js";

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
      config: {
        approvals: { approvers: [{ roles: ["approver"] }] },
        tracing: { traceUrl: "http://127.0.0.1:16686/trace/{trace_id}" },
      },
    });
    for (const name of ["reader", "boss", "alice"]) tokens[name] = await gw.token(name);
    const admin = await startConsoleAdmin(gw, { approvalsApi: true });
    adminUrl = admin.url;
    close = admin.close;
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

  it("links a record's trace to tracing.traceUrl", async () => {
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    await request(gw.url("kb"), {
      method: "POST",
      headers: {
        authorization: `Bearer ${tokens.reader}`,
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
        traceparent: `00-${traceId}-00f067aa0ba902b7-01`,
      },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "ping" }),
    }).then((r) => r.body.dump());
    const { body } = await audit("?agent=reader");
    const traced = body.records.find((r) => r.trace_id === traceId) as AuditRecord & { trace_url?: string };
    expect(traced.trace_url).toBe(`http://127.0.0.1:16686/trace/${traceId}`);
    expect(body.records.filter((r) => r.trace_id === null).every((r) => !("trace_url" in r))).toBe(true);
  });

  it("answers admins only, never without a token or cross-site", async () => {
    expect((await audit("", tokens.alice)).status).toBe(403);
    expect((await audit("", "")).status).toBe(401);
    expect((await audit("", tokens.boss, { origin: "https://evil.example" })).status).toBe(403);
    expect((await audit("", tokens.boss, { "sec-fetch-site": "cross-site" })).status).toBe(403);
    expect((await audit("", tokens.boss, { origin: adminUrl })).status).toBe(200);
  });
});

interface MatrixCell {
  access: string;
  rule: string | undefined;
  cause: string | undefined;
  conditions: { rule: string; when: string }[];
  approval: { rule: string; when: string | undefined } | undefined;
}
interface Matrix {
  by: string;
  columns: { server: string; tool: string }[];
  rows: { name: string; roles: string[]; cells: MatrixCell[]; patterns: { prompts: string[] }[] }[];
}

/** /console/api/access, /explain and /budgets over real HTTP against a running edge. */
describe("console API: access, explain, budgets", () => {
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
        reader: {
          rules: [
            { effect: "allow", tools: ["kb/search_articles"], prompts: ["kb/*"] },
            { effect: "allow", tools: ["kb/get_article"], when: "arguments.id.startsWith('kb-')" },
          ],
        },
        blocked: {
          rules: [
            { effect: "allow", tools: ["kb/*"] },
            { effect: "deny", tools: ["kb/get_article"] },
          ],
        },
        approver: { rules: [] },
        admin: { rules: [] },
      },
      agents: {
        reader: { roles: ["reader"] },
        mallory: { roles: ["blocked"] },
        boss: { roles: ["admin"] },
        alice: { roles: ["approver"] },
      },
      config: {
        approvals: {
          approvers: [{ roles: ["approver"] }],
          rules: [{ name: "article-two", tools: ["kb/get_article"], when: "arguments.id == 'kb-2'" }],
        },
        budgets: {
          rules: [
            { name: "kb-per-agent", per: "agent", tools: ["kb/*"], period: "day", limit: 3 },
            {
              name: "search-shared",
              per: "shared",
              tools: ["kb/search_articles"],
              period: "hour",
              limit: 50,
            },
          ],
        },
      },
    });
    for (const name of ["reader", "mallory", "boss", "alice"]) tokens[name] = await gw.token(name);
    const admin = await startConsoleAdmin(gw);
    adminUrl = admin.url;
    close = admin.close;
  });
  afterAll(async () => {
    await close?.();
    await gw?.close();
    await kb?.close();
  });

  const get = async <T>(path: string, token = tokens.boss) => {
    const res = await request(`${adminUrl}/console/api/${path}`, {
      headers: token ? { authorization: `Bearer ${token}` } : {},
    });
    return { status: res.statusCode, body: (await res.body.json()) as T };
  };
  const explain = async (
    question: unknown,
    token = tokens.boss,
    headers: Record<string, string> = { "content-type": "application/json" },
  ) => {
    const res = await request(`${adminUrl}/console/api/explain`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, ...headers },
      body: JSON.stringify(question),
    });
    return {
      status: res.statusCode,
      body: (await res.body.json()) as {
        decision: string;
        reason: string | null;
        cause: string | null;
        rules: { rule: string; applied: boolean; condition: string }[];
        assumptions: string[];
        error?: { message: string };
      },
    };
  };

  it("answers each matrix cell with the rule that grants or denies it", async () => {
    const { status, body } = await get<Matrix>("access");
    expect(status).toBe(200);
    expect(body.columns.map((c) => `${c.server}/${c.tool}`)).toEqual(KB.tools.map((t) => `kb/${t.name}`));
    const cell = (agent: string, tool: string) => {
      const row = body.rows.find((r) => r.name === agent)!;
      return row.cells[body.columns.findIndex((c) => c.tool === tool)]!;
    };
    expect(cell("reader", "search_articles")).toMatchObject({
      access: "allow",
      rule: "roles.reader.rules[0]",
    });
    expect(cell("reader", "search_articles").approval).toBeUndefined();
    expect(cell("reader", "get_article")).toMatchObject({
      access: "conditional",
      rule: "roles.reader.rules[1]",
      conditions: [{ rule: "roles.reader.rules[1]", when: "arguments.id.startsWith('kb-')" }],
      approval: { rule: "article-two", when: "arguments.id == 'kb-2'" },
    });
    expect(cell("mallory", "get_article")).toMatchObject({
      access: "deny",
      rule: "roles.blocked.rules[1]",
      cause: "rbac_denied_by:roles.blocked.rules[1]",
    });
    expect(cell("mallory", "search_articles")).toMatchObject({
      access: "allow",
      rule: "roles.blocked.rules[0]",
    });
    expect(cell("boss", "search_articles")).toMatchObject({ access: "deny", cause: "rbac_no_rule" });
    expect(cell("boss", "search_articles").rule).toBeUndefined();
    expect(body.rows.find((r) => r.name === "reader")!.patterns).toMatchObject([{ prompts: ["kb/*"] }]);

    const byRole = await get<Matrix>("access?by=role");
    expect(byRole.body.by).toBe("role");
    expect(byRole.body.rows.map((r) => r.name)).toEqual(["reader", "blocked", "approver", "admin"]);
  });

  it("explains a call as `mcp-gateway explain` does, and never logs the arguments", async () => {
    const allowed = await explain({
      agent: "reader",
      server: "kb",
      tool: "get_article",
      arguments: { id: "kb-zebra-7731" },
    });
    expect(allowed.status).toBe(200);
    expect(allowed.body.decision).toBe("allow");
    expect(allowed.body.rules.find((r) => r.rule === "roles.reader.rules[1]")).toMatchObject({
      applied: true,
      condition: "true",
    });
    const denied = await explain({
      agent: "reader",
      server: "kb",
      tool: "get_article",
      arguments: { id: "zebra-7731" },
    });
    expect(denied.body).toMatchObject({
      decision: "deny",
      // The reader's tools/list shows get_article: the refusal says the policy refused it.
      reason: "policy_denied",
      cause: "condition_false:roles.reader.rules[1]",
    });
    const bad = await explain({
      agent: "reader",
      server: "kb",
      tool: "search_articles",
      arguments: { query: 7 },
    });
    expect(bad.body).toMatchObject({ decision: "deny", reason: "invalid_arguments" });
    expect(JSON.stringify(gw.log.lines)).not.toContain("zebra-7731");
    expect(gw.log.lines.some((l) => l.msg === "console explain" && l.agent === "reader")).toBe(true);
  });

  it("leaves the running gateway's drift state as it was", async () => {
    const engine = gw.edge.engine;
    const changed = KB.tools.map((t) => (t.name === "get_article" ? { ...t, description: "Changed." } : t));
    engine.security.recordToolList("kb", changed);
    engine.security.drift.markStale("kb");
    const answer = await explain({
      agent: "reader",
      server: "kb",
      tool: "get_article",
      arguments: { id: "kb-1" },
    });
    expect(answer.body.assumptions.join(" ")).toContain("live tools/list matches the registry's pins");
    expect(engine.security.drift.drift("kb", "get_article")?.fields).toEqual(["description"]);
    expect(engine.security.drift.isStale("kb")).toBe(true);
    engine.security.recordToolList("kb", KB.tools);
    expect(engine.security.drift.drift("kb", "get_article")).toBeUndefined();
  });

  it("refuses malformed questions, non-JSON bodies, approvers and cross-site callers", async () => {
    expect((await explain({ agent: "reader", server: "kb" })).status).toBe(400);
    expect((await explain({ agent: "reader", server: "kb", tool: "x", extra: 1 })).status).toBe(400);
    expect(
      (
        await explain({ agent: "reader", server: "kb", tool: "x" }, tokens.boss, {
          "content-type": "text/plain",
        })
      ).status,
    ).toBe(415);
    expect((await explain({ agent: "reader", server: "kb", tool: "x" }, tokens.alice)).status).toBe(403);
    const crossSite = await explain({ agent: "reader", server: "kb", tool: "x" }, tokens.boss, {
      "content-type": "application/json",
      origin: "https://evil.example",
    });
    expect(crossSite.status).toBe(403);
    expect((await get("access", tokens.alice)).status).toBe(403);
    expect((await get("budgets", "")).status).toBe(401);
  });

  it("shows each budget's counters as the planes charged them", async () => {
    const c = await connectClient(gw.url("kb"), tokens.reader);
    try {
      await c.client.callTool({ name: "search_articles", arguments: { query: "vpn" } });
      await c.client.callTool({ name: "get_article", arguments: { id: "kb-1" } });
      await c.client.callTool({ name: "search_articles", arguments: { query: "mail" } });
      // The fourth kb call passes every check but the spent per-agent budget.
      await expect(c.client.callTool({ name: "search_articles", arguments: { query: "x" } })).rejects.toThrow(
        /budget/i,
      );
    } finally {
      await c.close();
    }
    type Page = {
      store: { kind: string };
      budgets: {
        budget: string;
        limit: number;
        counters: { agent: string | null; used: number; state: string }[];
      }[];
    };
    const { status, body } = await get<Page>("budgets");
    expect(status).toBe(200);
    expect(body.store.kind).toBe("memory");
    const perAgent = body.budgets.find((b) => b.budget === "kb-per-agent")!;
    expect(perAgent.counters.find((c) => c.agent === "reader")).toMatchObject({
      used: 3,
      state: "exhausted",
    });
    expect(perAgent.counters.find((c) => c.agent === "mallory")).toMatchObject({ used: 0, state: "ok" });
    const shared = body.budgets.find((b) => b.budget === "search-shared")!;
    expect(shared.counters).toHaveLength(1);
    expect(shared.counters[0]).toMatchObject({ used: 2, state: "ok" });
    expect(shared.counters[0]!.agent).toBeUndefined();
  });
});

interface OverviewServer {
  name: string;
  health: string;
  problems: string[];
  upstreams: { upstream: string; breaker: string }[] | null;
  traffic: { total: { requests: number; denied: number; errors: number }; perMinute: { requests: number } };
  drifted: string[];
  pending_approvals: number;
}
interface RegistryTool {
  name: string;
  risk: string;
  owner: string | null;
  pin: string;
  pin_recorded: boolean;
  live: { state: string; fields?: string[] };
  calls: number | null;
  last_used: string | null;
}
interface RegistryBody {
  servers: { name: string; tools: RegistryTool[] }[];
  disk: { file: string; identical?: boolean; error?: string; diff?: { changedServers: unknown[] } };
}

/**
 * /console/api/overview and /console/api/registry over real HTTP against an edge in front of the
 * demo kb server: traffic, usage, the registry file changing on disk, a rug pull, a dead upstream.
 */
describe("console API: overview and registry", () => {
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
      edge: { breaker: { consecutiveFailures: 1, cooldown: "1h" } },
      config: { approvals: { approvers: [{ roles: ["approver"] }] } },
    });
    for (const name of ["reader", "boss", "alice"]) tokens[name] = await gw.token(name);
    const admin = await startConsoleAdmin(gw);
    adminUrl = admin.url;
    close = admin.close;
  });
  afterAll(async () => {
    await close?.();
    await gw?.close();
    await kb?.close();
  });

  const get = async <T>(page: string, token = tokens.boss) => {
    const res = await request(`${adminUrl}/console/api/${page}`, {
      headers: token ? { authorization: `Bearer ${token}` } : {},
    });
    return { status: res.statusCode, body: (await res.body.json()) as T };
  };
  const overviewOf = async (server: string) =>
    (await get<{ servers: OverviewServer[] }>("overview")).body.servers.find((s) => s.name === server)!;
  const registryTool = async (tool: string) =>
    (await get<RegistryBody>("registry")).body.servers[0]!.tools.find((t) => t.name === tool)!;

  it("tells a token who it is; overview and registry are for admins", async () => {
    expect((await get("session", tokens.alice)).body).toEqual({ agent: "alice", access: "approver" });
    expect((await get("session")).body).toEqual({ agent: "boss", access: "admin" });
    expect((await get("session", tokens.reader)).status).toBe(403);
    expect((await get("overview", tokens.alice)).status).toBe(403);
    expect((await get("registry", tokens.alice)).status).toBe(403);
    expect((await get("overview", "")).status).toBe(401);
  });

  it("overview: a healthy server, its breaker, and the traffic the edge counted", async () => {
    const before = await overviewOf("kb");
    expect(before.health).toBe("ok");
    expect(before.upstreams).toEqual([{ server: "kb", upstream: kb.url, breaker: "closed", inflight: 0 }]);
    const c = await connectClient(gw.url("kb"), tokens.reader);
    try {
      await c.client.callTool({ name: "search_articles", arguments: { query: "vpn" } });
      await c.client.callTool({ name: "get_article", arguments: { id: "kb-101" } }).catch(() => undefined);
    } finally {
      await c.close();
    }
    const after = await overviewOf("kb");
    // initialize, notifications/initialized, two calls (the SDK may add a DELETE on close).
    expect(after.traffic.total.requests - before.traffic.total.requests).toBeGreaterThanOrEqual(4);
    expect(after.traffic.total.denied - before.traffic.total.denied).toBe(1);
    expect(after.traffic.perMinute.requests).toBeGreaterThan(0);
  });

  it("registry: pins, live state and usage of each tool", async () => {
    await expect.poll(async () => (await registryTool("search_articles")).calls).toBe(1);
    const search = await registryTool("search_articles");
    expect(search.pin).toBe(KB.tools.find((t) => t.name === "search_articles")!.pin);
    expect(search.pin_recorded).toBe(true);
    expect(search.live).toEqual({ state: "verified" });
    expect(Date.now() - Date.parse(search.last_used!)).toBeLessThan(60_000);
    const get_article = await registryTool("get_article");
    expect(get_article.calls).toBe(0);
    expect(get_article.last_used).toBeNull();
  });

  it("registry: the running registry against the file on disk", async () => {
    const file = join(dirname(gw.configFile), "registry.yaml");
    const first = (await get<RegistryBody>("registry")).body.disk;
    expect(first).toEqual({ file, identical: true, diff: expect.any(Object) });
    const original = readFileSync(file, "utf8");
    const edited = parse(original) as { servers: { tools: { name: string; risk?: string }[] }[] };
    edited.servers[0]!.tools.find((t) => t.name === "get_article")!.risk = "critical";
    writeFileSync(file, stringify(edited));
    try {
      const { disk } = (await get<RegistryBody>("registry")).body;
      expect(disk.identical).toBe(false);
      expect(disk.diff!.changedServers).toEqual([
        expect.objectContaining({
          name: "kb",
          changedTools: [
            expect.objectContaining({
              name: "get_article",
              risk: expect.objectContaining({ after: "critical", escalated: true }),
            }),
          ],
        }),
      ]);
      writeFileSync(file, "servers: [");
      expect((await get<RegistryBody>("registry")).body.disk.error).toMatch(/./);
    } finally {
      writeFileSync(file, original);
    }
  });

  it("a rug pull shows as drift on both pages", async () => {
    const port = kb.port;
    await kb.close();
    kb = await startKbServer(port, "127.0.0.1", { rugPull: true });
    const c = await connectClient(gw.url("kb"), tokens.reader);
    try {
      const { tools } = await c.client.listTools();
      expect(tools.map((t) => t.name)).not.toContain("search_articles");
    } finally {
      await c.close();
    }
    expect((await registryTool("search_articles")).live).toMatchObject({
      state: "drifted",
      fields: ["description"],
    });
    const server = await overviewOf("kb");
    expect(server.drifted).toEqual(["search_articles"]);
    expect(server.health).toBe("degraded");
    const { body } = await get<{ drift_alerts: { server: string; tool: string }[] }>("overview");
    expect(body.drift_alerts).toEqual([expect.objectContaining({ server: "kb", tool: "search_articles" })]);
  });

  it("an upstream that stops answering opens its breaker: the server is down", async () => {
    await kb.close();
    const c = await connectClient(gw.url("kb"), tokens.reader).catch((err: unknown) => err);
    if (!(c instanceof Error)) await (c as Awaited<ReturnType<typeof connectClient>>).close();
    const server = await overviewOf("kb");
    expect(server.upstreams![0]!.breaker).toBe("open");
    expect(server.health).toBe("down");
    expect(server.traffic.total.errors).toBeGreaterThan(0);
  });
});
