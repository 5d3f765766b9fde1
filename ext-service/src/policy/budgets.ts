import type { BudgetRule, BudgetsConfig } from "./settings.js";
import type { Principal } from "./identity.js";
import { globToRegExp } from "./rbac.js";

/**
 * Budgets: how many calls (or cost units) a tenant may spend per calendar period. This module is
 * the decision only: which budgets a call counts against, what to charge, and what a counter
 * result means. The adapters charge the counters in the state store (atomically, all or none)
 * and hand the result back here.
 *
 * Periods are calendar periods in UTC (minute, hour, day, ISO week from Monday, month), not
 * sliding windows: one counter per period is exact under concurrency with a single atomic
 * increment, the reset time is a fact the agent can be told ("resets at 2026-12-04T00:00:00Z"),
 * and spend lines up with invoices and reports. The cost is that an agent can spend a limit at
 * the end of one period and again at the start of the next; per-second smoothing is the rate
 * limit's job, not the budget's.
 */

export type BudgetPeriod = BudgetRule["period"];

/** One tools/call as budgets see it. */
export interface BudgetCall {
  server: string;
  tool: string;
  /** The tool's registry cost (default 1). */
  cost: number;
}

/** One counter to charge, for one budget. */
export interface BudgetCharge {
  budget: string;
  /** Counter key in the store: budget, period start and whose counter it is. */
  key: string;
  amount: number;
  limit: number;
  /** The counter may be dropped after this long (the period's end, plus a margin). */
  ttlMs: number;
  /** Epoch ms when the period ends and the counter starts over. */
  resetsAt: number;
  /** The counter value from which a warning is due. */
  warnFrom: number;
}

export type BudgetDecision =
  | { allowed: true; warnings: BudgetCharge[] }
  | { allowed: false; exhausted: BudgetCharge[]; resetsAt: number };

/** One budget's counters in the current period (`BudgetPolicy.currentCounters`). */
export interface BudgetCounters {
  budget: string;
  per: BudgetRule["per"];
  unit: BudgetRule["unit"];
  period: BudgetPeriod;
  limit: number;
  warnFrom: number;
  tools: string[];
  periodStart: number;
  resetsAt: number;
  /** `agent` undefined: the shared counter. */
  counters: { agent: string | undefined; issuer: string | undefined; key: string }[];
}

/** The store key of a budget's counter: budget, period start and whose counter it is. */
function counterKey(rule: BudgetRule, periodStart: number, principal: Principal | undefined): string {
  const whose =
    rule.per === "agent" && principal ? `agent:${principal.issuer ?? "-"}:${principal.agent}` : "shared";
  return `budget:${rule.name}:${rule.period}:${periodStart}:${whose}`;
}

interface CompiledRule {
  rule: BudgetRule;
  tools: RegExp[];
  agents: ReadonlySet<string> | undefined;
  roles: ReadonlySet<string> | undefined;
  issuers: ReadonlySet<string> | undefined;
  warnAt: number;
}

/** Counters outlive their period by this much, so a clock a little behind still finds them. */
const COUNTER_MARGIN_MS = 60_000;

/** Start and end (epoch ms, UTC) of the calendar period containing `now`. */
export function periodWindow(period: BudgetPeriod, now: number): { start: number; end: number } {
  const d = new Date(now);
  const y = d.getUTCFullYear();
  const mo = d.getUTCMonth();
  const day = d.getUTCDate();
  switch (period) {
    case "minute": {
      const start = now - (now % 60_000);
      return { start, end: start + 60_000 };
    }
    case "hour": {
      const start = now - (now % 3_600_000);
      return { start, end: start + 3_600_000 };
    }
    case "day": {
      const start = Date.UTC(y, mo, day);
      return { start, end: Date.UTC(y, mo, day + 1) };
    }
    case "week": {
      const sinceMonday = (d.getUTCDay() + 6) % 7;
      const start = Date.UTC(y, mo, day - sinceMonday);
      return { start, end: Date.UTC(y, mo, day - sinceMonday + 7) };
    }
    case "month":
      return { start: Date.UTC(y, mo, 1), end: Date.UTC(y, mo + 1, 1) };
  }
}

function setOf(values: readonly string[] | undefined): ReadonlySet<string> | undefined {
  return values === undefined ? undefined : new Set(values);
}

export class BudgetPolicy {
  private readonly rules: CompiledRule[];
  readonly whenStoreDown: BudgetsConfig["whenStoreDown"];

  constructor(config: BudgetsConfig) {
    this.whenStoreDown = config.whenStoreDown;
    this.rules = config.rules.map((rule) => ({
      rule,
      tools: rule.tools.map(globToRegExp),
      agents: setOf(rule.agents),
      roles: setOf(rule.roles),
      issuers: setOf(rule.issuers),
      warnAt: rule.warnAt ?? config.warnAt,
    }));
  }

  /** True when any budget is configured (else the adapters skip the store entirely). */
  get active(): boolean {
    return this.rules.length > 0;
  }

  /** The counters `calls` charge for this principal at `now`; empty when no budget counts them. */
  charges(principal: Principal, calls: readonly BudgetCall[], now: number): BudgetCharge[] {
    const out: BudgetCharge[] = [];
    for (const compiled of this.rules) {
      if (!this.appliesTo(compiled, principal)) continue;
      const { rule } = compiled;
      let amount = 0;
      let counted = false;
      for (const call of calls) {
        const name = `${call.server}/${call.tool}`;
        if (!compiled.tools.some((re) => re.test(name))) continue;
        counted = true;
        amount += rule.unit === "cost" ? call.cost : 1;
      }
      if (!counted) continue;
      const window = periodWindow(rule.period, now);
      out.push({
        budget: rule.name,
        key: counterKey(rule, window.start, principal),
        amount,
        limit: rule.limit,
        ttlMs: window.end - now + COUNTER_MARGIN_MS,
        resetsAt: window.end,
        warnFrom: Math.ceil(compiled.warnAt * rule.limit),
      });
    }
    return out;
  }

  /**
   * What the store's answer means. `applied`: every counter was charged, `values` are the new
   * totals (a warning for each budget this charge carried to or past its threshold). Otherwise
   * nothing was charged and `values` are the current totals: the budgets the charge would pass
   * are exhausted, and the call may come back when the last of them resets.
   */
  decide(
    charges: readonly BudgetCharge[],
    result: { applied: boolean; values: readonly number[] },
  ): BudgetDecision {
    if (result.applied) {
      const warnings = charges.filter((c, i) => {
        const after = result.values[i] ?? 0;
        return after >= c.warnFrom && after - c.amount < c.warnFrom;
      });
      return { allowed: true, warnings };
    }
    const exhausted = charges.filter((c, i) => (result.values[i] ?? 0) + c.amount > c.limit);
    // A store that refused for no visible reason (a counter changed in between) still refuses:
    // every budget of the charge is then named.
    const named = exhausted.length > 0 ? exhausted : [...charges];
    return { allowed: false, exhausted: named, resetsAt: Math.max(...named.map((c) => c.resetsAt)) };
  }

  /**
   * Each budget with the counters of its current period that these principals (the agents the
   * gateway knows of) charge: one shared counter, or one per principal it applies to. For the
   * console's Budgets page, which reads the counters' values from the store.
   */
  currentCounters(principals: readonly Principal[], now: number): BudgetCounters[] {
    return this.rules.map((compiled) => {
      const { rule } = compiled;
      const window = periodWindow(rule.period, now);
      const counters: BudgetCounters["counters"] = [];
      if (rule.per === "shared")
        counters.push({
          agent: undefined,
          issuer: undefined,
          key: counterKey(rule, window.start, undefined),
        });
      else {
        const seen = new Set<string>();
        for (const p of principals) {
          const key = counterKey(rule, window.start, p);
          if (!this.appliesTo(compiled, p) || seen.has(key)) continue;
          seen.add(key);
          counters.push({ agent: p.agent, issuer: p.issuer, key });
        }
      }
      return {
        budget: rule.name,
        per: rule.per,
        unit: rule.unit,
        period: rule.period,
        limit: rule.limit,
        warnFrom: Math.ceil(compiled.warnAt * rule.limit),
        tools: [...rule.tools],
        periodStart: window.start,
        resetsAt: window.end,
        counters,
      };
    });
  }

  /** Whether a budget counts the call `server/tool` at all (for batch answers). */
  counts(budget: string, server: string, tool: string): boolean {
    const compiled = this.rules.find((r) => r.rule.name === budget);
    return compiled !== undefined && compiled.tools.some((re) => re.test(`${server}/${tool}`));
  }

  private appliesTo(compiled: CompiledRule, principal: Principal): boolean {
    const { agents, roles, issuers } = compiled;
    if (!agents && !roles && !issuers) return true;
    if (agents?.has(principal.agent)) return true;
    if (roles && principal.roles.some((r) => roles.has(r))) return true;
    return issuers !== undefined && principal.issuer !== undefined && issuers.has(principal.issuer);
  }
}
