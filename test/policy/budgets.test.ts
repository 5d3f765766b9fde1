import { describe, expect, it } from "vitest";
import { crossReferenceProblems } from "../../ext-service/src/config/compile.js";
import { BudgetsSchema, GatewayConfigSchema } from "../../ext-service/src/config/schema.js";
import { BudgetPolicy, periodWindow } from "../../ext-service/src/policy/budgets.js";
import type { Principal } from "../../ext-service/src/policy/identity.js";

const iso = (ms: number) => new Date(ms).toISOString();
const NOW = Date.parse("2026-12-03T14:25:37.123Z"); // a Thursday

function principal(agent: string, roles: string[] = [], issuer = "https://idp.example"): Principal {
  return { agent, roles, claims: {}, issuer, anonymous: false };
}

function policy(rules: unknown[], extra: Record<string, unknown> = {}) {
  return new BudgetPolicy(BudgetsSchema.parse({ rules, ...extra }));
}

describe("calendar periods (UTC)", () => {
  it.each([
    ["minute", "2026-12-03T14:25:00.000Z", "2026-12-03T14:26:00.000Z"],
    ["hour", "2026-12-03T14:00:00.000Z", "2026-12-03T15:00:00.000Z"],
    ["day", "2026-12-03T00:00:00.000Z", "2026-12-04T00:00:00.000Z"],
    ["week", "2026-11-30T00:00:00.000Z", "2026-12-07T00:00:00.000Z"],
    ["month", "2026-12-01T00:00:00.000Z", "2027-01-01T00:00:00.000Z"],
  ] as const)("%s", (period, start, end) => {
    const w = periodWindow(period, NOW);
    expect([iso(w.start), iso(w.end)]).toEqual([start, end]);
  });

  it("starts an ISO week on Monday, also from a Sunday and across a month", () => {
    const sunday = Date.parse("2026-03-01T23:59:59Z");
    const w = periodWindow("week", sunday);
    expect([iso(w.start), iso(w.end)]).toEqual(["2026-02-23T00:00:00.000Z", "2026-03-02T00:00:00.000Z"]);
  });
});

describe("which budgets a call counts against", () => {
  const p = policy([
    { name: "bot-daily", agents: ["bot"], period: "day", limit: 10 },
    {
      name: "support-tickets",
      roles: ["support"],
      per: "agent",
      tools: ["tickets/*"],
      period: "hour",
      limit: 5,
    },
    { name: "idp-spend", issuers: ["https://idp.example"], unit: "cost", period: "month", limit: 1000 },
    { name: "everyone", tools: ["kb/**"], period: "minute", limit: 100 },
  ]);

  it("matches agents, roles and issuers, and the tool globs", () => {
    const charges = p.charges(
      principal("bot", ["support"]),
      [{ server: "tickets", tool: "get", cost: 7 }],
      NOW,
    );
    expect(charges.map((c) => [c.budget, c.amount])).toEqual([
      ["bot-daily", 1],
      ["support-tickets", 1],
      ["idp-spend", 7],
    ]);
    const kb = p.charges(principal("x", [], "other-idp"), [{ server: "kb", tool: "search", cost: 3 }], NOW);
    expect(kb.map((c) => c.budget)).toEqual(["everyone"]);
  });

  it("sums a batch per budget, in calls or cost", () => {
    const calls = [
      { server: "tickets", tool: "a", cost: 2 },
      { server: "tickets", tool: "b", cost: 5 },
      { server: "kb", tool: "c", cost: 1 },
    ];
    const charges = p.charges(principal("bot", ["support"]), calls, NOW);
    expect(Object.fromEntries(charges.map((c) => [c.budget, c.amount]))).toEqual({
      "bot-daily": 3,
      "support-tickets": 2,
      "idp-spend": 8,
      everyone: 1,
    });
  });

  it("keys shared counters once, per-agent counters per issuer and agent, and by period", () => {
    const [shared] = p.charges(principal("bot"), [{ server: "x", tool: "y", cost: 1 }], NOW);
    expect(shared!.key).toBe(`budget:bot-daily:day:${Date.parse("2026-12-03T00:00:00Z")}:shared`);
    const a = p.charges(principal("a", ["support"]), [{ server: "tickets", tool: "t", cost: 1 }], NOW);
    const b = p.charges(
      principal("a", ["support"], "idp-2"),
      [{ server: "tickets", tool: "t", cost: 1 }],
      NOW,
    );
    expect(a.find((c) => c.budget === "support-tickets")!.key).toMatch(/:agent:https:\/\/idp.example:a$/);
    expect(b.find((c) => c.budget === "support-tickets")!.key).toMatch(/:agent:idp-2:a$/);
    const later = p.charges(principal("bot"), [{ server: "x", tool: "y", cost: 1 }], NOW + 86_400_000);
    expect(later[0]!.key).not.toBe(shared!.key);
  });

  it("gives counters a lifetime to the end of their period (plus a margin) and says when they reset", () => {
    const [c] = p.charges(principal("bot"), [{ server: "x", tool: "y", cost: 1 }], NOW);
    expect(iso(c!.resetsAt)).toBe("2026-12-04T00:00:00.000Z");
    expect(c!.ttlMs).toBe(Date.parse("2026-12-04T00:00:00Z") - NOW + 60_000);
  });

  it("charges nothing when no budget counts the call (a zero-cost call still counts in calls)", () => {
    expect(p.charges(principal("x", [], "other"), [{ server: "tickets", tool: "t", cost: 1 }], NOW)).toEqual(
      [],
    );
    const zero = p.charges(principal("y"), [{ server: "kb", tool: "free", cost: 0 }], NOW);
    expect(zero.map((c) => [c.budget, c.amount])).toEqual([
      ["idp-spend", 0],
      ["everyone", 1],
    ]);
  });
});

describe("deciding from the store's answer", () => {
  const p = policy(
    [
      { name: "b", period: "day", limit: 10 },
      { name: "c", period: "hour", limit: 100, warnAt: 0.5 },
    ],
    {
      warnAt: 0.8,
    },
  );
  const charges = (amount: number) =>
    p.charges(
      principal("bot"),
      Array.from({ length: amount }, () => ({ server: "s", tool: "t", cost: 1 })),
      NOW,
    );

  it("warns once, when a charge reaches the threshold", () => {
    expect(p.decide(charges(1), { applied: true, values: [7, 49] })).toEqual({ allowed: true, warnings: [] });
    const crossing = p.decide(charges(1), { applied: true, values: [8, 50] });
    expect(crossing.allowed && crossing.warnings.map((w) => w.budget)).toEqual(["b", "c"]);
    expect(p.decide(charges(1), { applied: true, values: [9, 51] })).toEqual({ allowed: true, warnings: [] });
    // a batch that jumps over the threshold warns too
    const jump = p.decide(charges(3), { applied: true, values: [10, 52] });
    expect(jump.allowed && jump.warnings.map((w) => w.budget)).toEqual(["b", "c"]);
  });

  it("names the budgets a refused charge would pass, and the latest reset among them", () => {
    const d = p.decide(charges(2), { applied: false, values: [9, 99] });
    expect(d.allowed).toBe(false);
    if (d.allowed) return;
    expect(d.exhausted.map((c) => c.budget)).toEqual(["b", "c"]);
    expect(iso(d.resetsAt)).toBe("2026-12-04T00:00:00.000Z");
    const onlyHour = p.decide(charges(1), { applied: false, values: [3, 100] });
    expect(!onlyHour.allowed && onlyHour.exhausted.map((c) => c.budget)).toEqual(["c"]);
    expect(!onlyHour.allowed && iso(onlyHour.resetsAt)).toBe("2026-12-03T15:00:00.000Z");
  });
});

describe("budget config", () => {
  it("refuses duplicate names, non-integer limits and unknown keys", () => {
    const bad = BudgetsSchema.safeParse({
      rules: [
        { name: "a", period: "day", limit: 1 },
        { name: "a", period: "day", limit: 1.5 },
        { name: "b", period: "fortnight", limit: 1, colour: "red" },
      ],
    });
    expect(bad.success).toBe(false);
    const messages = bad.error!.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("\n");
    expect(messages).toMatch(/rules\.1\.limit/);
    expect(messages).toMatch(/rules\.2\.period/);
    expect(messages).toMatch(/colour/);
  });

  it("defaults to refusing while the store is down, warning at 80%", () => {
    expect(BudgetsSchema.parse({})).toEqual({ whenStoreDown: "refuse", warnAt: 0.8, rules: [] });
  });
});

describe("budget cross-references", () => {
  it("refuses budgets naming unknown roles or untrusted issuers (they would never apply)", () => {
    const config = GatewayConfigSchema.parse({
      registry: "registry.yaml",
      auth: { mode: "optional" },
      roles: { support: {} },
      budgets: {
        rules: [
          { name: "ok", roles: ["support"], period: "day", limit: 1 },
          {
            name: "bad",
            roles: ["support", "ghost"],
            issuers: ["https://nope.example"],
            period: "day",
            limit: 1,
          },
        ],
      },
    });
    expect(crossReferenceProblems(config, "gateway.yaml").map((p) => `${p.path}: ${p.message}`)).toEqual([
      "budgets.rules[1].roles[1]: unknown role 'ghost'",
      "budgets.rules[1].issuers[0]: 'https://nope.example' is not one of auth.issuers",
    ]);
  });
});
