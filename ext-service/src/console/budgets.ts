import type { Principal } from "../policy/identity.js";
import { StoreUnavailable, type StateStore } from "../state/store.js";
import type { AuditRecord } from "../telemetry/audit.js";
import type { GatewayEngine } from "../config/compile.js";

/**
 * The Budgets page's data: each budget's counters in the current period, read from the state
 * store (the counters the planes charge, docs/BUDGETS.md), with the edge's rate limit. A budget
 * kept per agent has one counter per agent; the store cannot list them, so the page shows the
 * agents the gateway knows of: those in gateway.yaml and those in the recent audit records.
 */

export interface CounterUsage {
  agent: string | undefined;
  issuer: string | undefined;
  /** Units spent this period; undefined when the store could not be read. */
  used: number | undefined;
  state: "ok" | "warning" | "exhausted" | "unknown";
}

export interface BudgetUsage {
  budget: string;
  per: "agent" | "shared";
  unit: "calls" | "cost";
  period: string;
  limit: number;
  warnFrom: number;
  tools: string[];
  periodStart: string;
  resetsAt: string;
  counters: CounterUsage[];
}

export interface BudgetsPage {
  store: { kind: "memory" | "redis"; available: boolean };
  whenStoreDown: string;
  budgets: BudgetUsage[];
  rateLimit: { requestsPerSecond: number; burst: number };
}

function knownPrincipals(engine: GatewayEngine, recent: readonly AuditRecord[]): Principal[] {
  const principals = Object.keys(engine.config.agents).map((a) => engine.authenticator.principalFor(a));
  const seen = new Set(principals.map((p) => `${p.issuer ?? "-"}\u0000${p.agent}`));
  for (const r of recent) {
    if (r.agent === null || r.anonymous) continue;
    const key = `${r.issuer ?? "-"}\u0000${r.agent}`;
    if (seen.has(key)) continue;
    seen.add(key);
    principals.push(
      engine.authenticator.principalFor(r.agent, r.issuer !== null ? { issuer: r.issuer } : {}),
    );
  }
  return principals;
}

export async function budgetsPage(
  engine: GatewayEngine,
  store: StateStore,
  recent: readonly AuditRecord[],
): Promise<BudgetsPage> {
  const budgets = engine.budgets.currentCounters(knownPrincipals(engine, recent), engine.now());
  const read = async (key: string): Promise<number | undefined> => {
    try {
      return Number((await store.get(key)) ?? 0);
    } catch (err) {
      if (err instanceof StoreUnavailable) return undefined;
      throw err;
    }
  };
  return {
    store: { kind: store.kind, available: store.available() },
    whenStoreDown: engine.config.budgets.whenStoreDown,
    rateLimit: { ...engine.config.edge.rateLimit },
    budgets: await Promise.all(
      budgets.map(async (b) => ({
        budget: b.budget,
        per: b.per,
        unit: b.unit,
        period: b.period,
        limit: b.limit,
        warnFrom: b.warnFrom,
        tools: b.tools,
        periodStart: new Date(b.periodStart).toISOString(),
        resetsAt: new Date(b.resetsAt).toISOString(),
        counters: await Promise.all(
          b.counters.map(async (c) => {
            const used = await read(c.key);
            const state: CounterUsage["state"] =
              used === undefined
                ? "unknown"
                : used >= b.limit
                  ? "exhausted"
                  : used >= b.warnFrom
                    ? "warning"
                    : "ok";
            return { agent: c.agent, issuer: c.issuer, used, state };
          }),
        ),
      })),
    ),
  };
}
