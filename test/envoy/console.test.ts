import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CONSOLE_CSP } from "../../ext-service/src/console/routes.js";
import {
  GATEWAY_YAML,
  MCP_POST_HEADERS,
  jsonResult,
  startGateway,
  toolsCall,
  type Gateway,
} from "./harness.js";

/**
 * The admin console on the Envoy plane: the real ext-service (`mcp-gateway serve`) in this
 * process, its admin listener on a free port, over real HTTP. The console's own tests run against
 * the local edge; this checks the ext-service wires the same routes to its own engine, state and
 * audit trail, with breakers reported as Envoy's (the ext-service holds no upstream endpoints).
 */

const CONSOLE_YAML = GATEWAY_YAML.replace("  reader:\n", "  admin:\n    rules: []\n  reader:\n")
  .replace("  idle-bot: { roles: [] }\n", "  idle-bot: { roles: [] }\n  boss: { roles: [admin] }\n")
  .concat(
    `budgets:
  rules:
    - { name: tickets-daily, per: agent, tools: ["tickets/*"], period: day, limit: 10 }
`,
  );

let gw: Gateway;
let adminUrl: string;
let bossToken: string;

beforeAll(async () => {
  expect(CONSOLE_YAML).toContain("boss: { roles: [admin] }");
  gw = await startGateway({ gatewayYaml: CONSOLE_YAML });
  adminUrl = `http://127.0.0.1:${gw.service.adminPort}`;
  bossToken = await gw.token("boss");
  // One call through the Envoy model, so the audit trail and the budget have something to show.
  const agentToken = await gw.token("support-bot");
  const r = await gw.client.exchange(
    {
      method: "POST",
      path: "/mcp/tickets",
      headers: { ...MCP_POST_HEADERS, authorization: `Bearer ${agentToken}` },
      body: JSON.stringify(toolsCall(1, "list_tickets")),
    },
    () => ({
      status: 200,
      headers: { "content-type": "application/json" },
      body: jsonResult(1, { content: [] }),
    }),
  );
  expect(r.answeredBy).toBe("upstream");
});
afterAll(async () => {
  await gw?.close();
});

async function api(name: string, headers: Record<string, string> = { authorization: `Bearer ${bossToken}` }) {
  const res = await request(`${adminUrl}/console/api/${name}`, { headers });
  return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown> };
}

describe("admin console on the ext-service's admin listener", () => {
  it("serves the page and its modules with the strict CSP", async () => {
    const page = await request(`${adminUrl}/console/`);
    expect(page.statusCode).toBe(200);
    expect(page.headers["content-type"]).toBe("text/html; charset=utf-8");
    expect(page.headers["content-security-policy"]).toBe(CONSOLE_CSP);
    expect(CONSOLE_CSP).toContain("script-src 'self'");
    expect(page.headers["x-frame-options"]).toBe("DENY");
    const html = await page.body.text();
    expect(html).toMatch(/<script[^>]+src="[^"]*app\.js"/);
    const app = await request(`${adminUrl}/console/app.js`);
    expect(app.statusCode).toBe(200);
    expect(app.headers["content-type"]).toBe("text/javascript; charset=utf-8");
    expect(await app.body.text()).toContain("import");
  });

  it("answers the admin's token on every page, from the ext-service's own state", async () => {
    const overview = await api("overview");
    expect(overview.status).toBe(200);
    expect(overview.body.breakers).toBe("envoy");
    expect(overview.body.registry_version).toBe("test-1");
    const servers = overview.body.servers as { name: string; upstreams: unknown; traffic: unknown }[];
    expect(servers.map((s) => s.name).sort()).toEqual(["kb", "tickets"]);
    expect(servers.every((s) => s.upstreams === null)).toBe(true);

    const registry = await api("registry");
    expect(registry.status).toBe(200);
    const tickets = (registry.body.servers as { name: string; tools: { name: string }[] }[]).find(
      (s) => s.name === "tickets",
    )!;
    expect(tickets.tools.map((t) => t.name).sort()).toEqual(["delete_ticket", "get_ticket", "list_tickets"]);

    const access = await api("access");
    expect(access.status).toBe(200);
    const rows = access.body.rows as { name: string; cells: { allowed?: unknown }[] }[];
    expect(rows.map((r) => r.name)).toEqual(expect.arrayContaining(["support-bot", "research-bot", "boss"]));

    const audit = await api("audit?agent=support-bot");
    expect(audit.status).toBe(200);
    const records = audit.body.records as { agent: string; decision: string; tools: string[] }[];
    expect(records).toEqual([
      expect.objectContaining({ agent: "support-bot", decision: "allow", tools: ["list_tickets"] }),
    ]);

    const budgets = await api("budgets");
    expect(budgets.status).toBe(200);
    const [daily] = budgets.body.budgets as { budget: string; counters: { agent: string; used: number }[] }[];
    expect(daily!.budget).toBe("tickets-daily");
    expect(daily!.counters).toContainEqual(expect.objectContaining({ agent: "support-bot", used: 1 }));
  });

  it("refuses a request without a token, and a cross-site one with it", async () => {
    const anonymous = await api("overview", {});
    expect(anonymous.status).toBe(401);
    expect(anonymous.body).not.toHaveProperty("servers");
    const crossSite = await api("audit", {
      authorization: `Bearer ${bossToken}`,
      origin: "https://evil.example",
    });
    expect(crossSite.status).toBe(403);
    expect(crossSite.body).not.toHaveProperty("records");
    const fetchMetadata = await api("overview", {
      authorization: `Bearer ${bossToken}`,
      "sec-fetch-site": "cross-site",
    });
    expect(fetchMetadata.status).toBe(403);
  });
});
