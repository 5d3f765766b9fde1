import type { Registry } from "../config/schema.js";
import type { CounterCharge, StateStore } from "./store.js";

/**
 * Tool and server usage kept in the state store, for the registry sweep ("is this still used?",
 * `mcp-gateway registry usage`): per registered tool a count per UTC day and the time of its last
 * call, and per server a count per day of the requests forwarded to it. Day counters live
 * USAGE_RETENTION_DAYS; on Redis every replica adds to the same ones.
 *
 * Recording never delays a request: the writes are not awaited, and a store that cannot be
 * reached loses those counts (`onError` reports it).
 */

export const USAGE_RETENTION_DAYS = 400;
const RETENTION_MS = USAGE_RETENTION_DAYS * 86_400_000;
const DAY_MS = 86_400_000;

function day(at: number): string {
  return new Date(at).toISOString().slice(0, 10);
}

const toolCountKey = (server: string, tool: string, d: string) => `usage:tool:${server}/${tool}:${d}`;
const toolLastKey = (server: string, tool: string) => `usage:last:${server}/${tool}`;
const serverCountKey = (server: string, d: string) => `usage:server:${server}:${d}`;

/** A day's counter keys by server (and tool), made once per day rather than on every request. */
interface DayKeys {
  day: string;
  /** [from, to) in ms: the UTC day `day` names. */
  from: number;
  to: number;
  servers: Map<string, string>;
  tools: Map<string, Map<string, string>>;
}

function dayKeys(at: number): DayKeys {
  const from = at - (((at % DAY_MS) + DAY_MS) % DAY_MS);
  return { day: day(at), from, to: from + DAY_MS, servers: new Map(), tools: new Map() };
}

/** How precisely a tool's last use is kept (ms): it moves at most this often per process. */
export const LAST_USED_RESOLUTION_MS = 1_000;

export class ToolUsage {
  /** When this process last wrote each tool's last use (one entry per registered tool called). */
  private readonly lastRaised = new Map<string, number>();
  /** The keys of the day of the latest request recorded (requests out of order make others). */
  private keys: DayKeys | undefined;
  private readonly lastKeys = new Map<string, Map<string, string>>();

  constructor(
    private readonly store: StateStore,
    private readonly onError: (err: unknown) => void = () => {},
  ) {}

  /** One forwarded request to `server` (its tools/call tools, if any), at `at` (ms). */
  record(server: string, tools: readonly string[], at: number): void {
    let keys = this.keys;
    if (keys === undefined || at < keys.from || at >= keys.to) {
      keys = dayKeys(at);
      if (this.keys === undefined || at >= this.keys.to) this.keys = keys;
    }
    let serverKey = keys.servers.get(server);
    if (serverKey === undefined) keys.servers.set(server, (serverKey = serverCountKey(server, keys.day)));
    const charges: CounterCharge[] = [
      { key: serverKey, amount: 1, limit: Number.MAX_SAFE_INTEGER, ttlMs: RETENTION_MS },
    ];
    if (tools.length > 0) {
      let toolKeys = keys.tools.get(server);
      if (toolKeys === undefined) keys.tools.set(server, (toolKeys = new Map()));
      let lastKeys = this.lastKeys.get(server);
      if (lastKeys === undefined) this.lastKeys.set(server, (lastKeys = new Map()));
      for (const tool of tools) {
        let key = toolKeys.get(tool);
        if (key === undefined) toolKeys.set(tool, (key = toolCountKey(server, tool, keys.day)));
        charges.push({ key, amount: 1, limit: Number.MAX_SAFE_INTEGER, ttlMs: RETENTION_MS });
      }
      this.store.chargeAll(charges).catch(this.onError);
      for (const tool of tools) {
        let key = lastKeys.get(tool);
        if (key === undefined) lastKeys.set(tool, (key = toolLastKey(server, tool)));
        // A tool's last use is written at most once per LAST_USED_RESOLUTION_MS by this process:
        // a read and a compare-and-set per call bought nothing the registry sweep (days) can see.
        const raised = this.lastRaised.get(key);
        if (raised !== undefined && at >= raised && at - raised < LAST_USED_RESOLUTION_MS) continue;
        this.lastRaised.set(key, at);
        this.raiseLastUsed(key, at).catch(this.onError);
      }
      return;
    }
    this.store.chargeAll(charges).catch(this.onError);
  }

  /** Last use only moves forward: replicas (and one replica's writes) may land out of order. */
  private async raiseLastUsed(key: string, at: number): Promise<void> {
    for (let attempt = 0; attempt < 4; attempt++) {
      const current = await this.store.get(key);
      if (current !== undefined && Number(current) >= at) return;
      if (await this.store.compareAndSet(key, current, String(at), RETENTION_MS)) return;
    }
  }

  /** Calls of a tool per day in [since, now], and its last call (ms), if any within retention. */
  async tool(
    server: string,
    tool: string,
    days: readonly string[],
  ): Promise<{ calls: number; lastUsed?: number }> {
    const [counts, last] = await Promise.all([
      Promise.all(days.map((d) => this.store.get(toolCountKey(server, tool, d)))),
      this.store.get(toolLastKey(server, tool)),
    ]);
    const calls = counts.reduce((n, c) => n + (c === undefined ? 0 : Number(c)), 0);
    return last === undefined ? { calls } : { calls, lastUsed: Number(last) };
  }

  async server(server: string, days: readonly string[]): Promise<number> {
    const counts = await Promise.all(days.map((d) => this.store.get(serverCountKey(server, d))));
    return counts.reduce((n, c) => n + (c === undefined ? 0 : Number(c)), 0);
  }
}

/** The UTC days (YYYY-MM-DD) of the window of `sinceMs` ending at `now` (today included), newest first. */
export function windowDays(now: number, sinceMs: number): string[] {
  const n = Math.max(1, Math.min(Math.ceil(sinceMs / DAY_MS), USAGE_RETENTION_DAYS));
  return Array.from({ length: n }, (_, i) => day(now - i * DAY_MS));
}

export type ToolStatus = "unused" | "rare" | "deprecated" | "active";

export interface ToolUsageRow {
  server: string;
  tool: string;
  calls: number;
  /** ISO time of the last call (kept USAGE_RETENTION_DAYS), or null. */
  lastUsed: string | null;
  deprecated: string | null;
  owner: string | null;
  risk: string;
  /** deprecated: past its deprecation date; unused: no call in the window; rare: fewer than `rareBelow`. */
  status: ToolStatus;
}

export interface UsageReport {
  generatedAt: string;
  since: string;
  windowDays: number;
  rareBelow: number;
  store: "memory" | "redis";
  tools: ToolUsageRow[];
  servers: { server: string; requests: number; noTraffic: boolean }[];
  summary: {
    unused: number;
    rare: number;
    deprecated: number;
    active: number;
    serversWithoutTraffic: number;
  };
}

/** The sweep over every registered tool and server, from the usage the store holds. */
export async function usageReport(
  registry: Registry,
  store: StateStore,
  options: { now: number; sinceMs: number; rareBelow: number },
): Promise<UsageReport> {
  const usage = new ToolUsage(store);
  const days = windowDays(options.now, options.sinceMs);
  const today = day(options.now);
  const tools: ToolUsageRow[] = [];
  const servers: UsageReport["servers"] = [];
  for (const server of registry.servers) {
    const [requests, rows] = await Promise.all([
      usage.server(server.name, days),
      Promise.all(
        server.tools.map(async (t): Promise<ToolUsageRow> => {
          const seen = await usage.tool(server.name, t.name, days);
          const deprecated = t.deprecated !== undefined && t.deprecated <= today;
          const status: ToolStatus = deprecated
            ? "deprecated"
            : seen.calls === 0
              ? "unused"
              : seen.calls < options.rareBelow
                ? "rare"
                : "active";
          return {
            server: server.name,
            tool: t.name,
            calls: seen.calls,
            lastUsed: seen.lastUsed === undefined ? null : new Date(seen.lastUsed).toISOString(),
            deprecated: t.deprecated ?? null,
            owner: t.owner ?? null,
            risk: t.risk,
            status,
          };
        }),
      ),
    ]);
    tools.push(...rows);
    servers.push({ server: server.name, requests, noTraffic: requests === 0 });
  }
  const count = (s: ToolStatus) => tools.filter((t) => t.status === s).length;
  return {
    generatedAt: new Date(options.now).toISOString(),
    since: days.at(-1) ?? today,
    windowDays: days.length,
    rareBelow: options.rareBelow,
    store: store.kind,
    tools,
    servers,
    summary: {
      unused: count("unused"),
      rare: count("rare"),
      deprecated: count("deprecated"),
      active: count("active"),
      serversWithoutTraffic: servers.filter((s) => s.noTraffic).length,
    },
  };
}

/** The report as text for review: what to look at first, then every tool. */
export function formatUsageReport(r: UsageReport): string {
  const lines: string[] = [];
  lines.push(
    `Registry usage from ${r.since} to ${r.generatedAt.slice(0, 10)} (${r.windowDays} days, store ${r.store}); ` +
      `rare: fewer than ${r.rareBelow} calls`,
  );
  lines.push(
    `  ${r.summary.unused} unused, ${r.summary.rare} rare, ${r.summary.deprecated} past deprecation, ` +
      `${r.summary.active} active; ${r.summary.serversWithoutTraffic} server(s) without traffic`,
  );
  const section = (title: string, rows: ToolUsageRow[]) => {
    if (rows.length === 0) return;
    lines.push("", `${title}:`);
    for (const t of rows) {
      lines.push(
        `  ${`${t.server}/${t.tool}`.padEnd(40)} ${String(t.calls).padStart(7)} calls  last ${t.lastUsed ?? "never"}` +
          (t.deprecated ? `  deprecated ${t.deprecated}` : "") +
          (t.owner ? `  owner ${t.owner}` : ""),
      );
    }
  };
  section(
    "Past their deprecation date (remove from the registry)",
    r.tools.filter((t) => t.status === "deprecated"),
  );
  section(
    "Never used in the window",
    r.tools.filter((t) => t.status === "unused"),
  );
  section(
    "Rarely used",
    r.tools.filter((t) => t.status === "rare"),
  );
  const idle = r.servers.filter((s) => s.noTraffic);
  if (idle.length > 0) {
    lines.push("", "Servers with no traffic in the window:");
    for (const s of idle) lines.push(`  ${s.server}`);
  }
  section(
    "Active",
    r.tools.filter((t) => t.status === "active"),
  );
  return lines.join("\n") + "\n";
}
