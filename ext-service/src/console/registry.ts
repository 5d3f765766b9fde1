import { resolve } from "node:path";
import { ConfigError } from "../config/load.js";
import { diffRegistries, isEmptyDiff, readRegistryFile } from "../config/registry-diff.js";
import type { Registry } from "../config/schema.js";
import { toolPin } from "../policy/canonical.js";
import type { GatewayEngine } from "../config/compile.js";
import type { StateStore } from "../state/store.js";
import { usageReport, type ToolUsageRow } from "../state/usage.js";

/**
 * The console's Registry page (GET /console/api/registry): every server and tool of the running
 * registry with owner, risk, pin, what the gateway saw of the live definition (drift), deprecation
 * and usage, and what a reload would change: the running registry against the file on disk.
 * Usage is `mcp-gateway registry usage`'s report, the diff is `mcp-gateway registry diff`'s.
 */

/** The window of the usage columns: the default of `mcp-gateway registry usage`. */
const USAGE_WINDOW_MS = 90 * 86_400_000;
const RARE_BELOW = 5;

/** The registry the engine runs, as the file format (the diff and the usage sweep take that). */
export function runningRegistry(engine: GatewayEngine): Registry {
  return {
    version: engine.registry.version,
    servers: engine.registry.serverNames().map((name) => engine.registry.server(name)!.config),
  };
}

/** The registry file gateway.yaml names (relative to gateway.yaml). */
export function registryFileOf(engine: GatewayEngine): string {
  return resolve(engine.configDir, engine.config.registry);
}

function pinView(engine: GatewayEngine, server: string, tool: string): Record<string, unknown> {
  const status = engine.security.pinStatus(server, tool);
  switch (status.state) {
    case "drifted":
      return {
        state: "drifted",
        fields: status.drift.fields,
        live_pin: status.drift.livePin,
        seen_at: new Date(status.drift.seenAt).toISOString(),
      };
    case "unverifiable":
      return { state: "unverifiable", cause: status.cause };
    default:
      return { state: status.state };
  }
}

function diffView(running: Registry, file: string): Record<string, unknown> {
  try {
    const diff = diffRegistries(running, readRegistryFile(file));
    return { file, identical: isEmptyDiff(diff), diff };
  } catch (err) {
    const message =
      err instanceof ConfigError
        ? err.problems.map((p) => `${p.path ? `${p.path}: ` : ""}${p.message}`).join("; ")
        : "cannot read it";
    return { file, error: message };
  }
}

export async function registryPage(engine: GatewayEngine, store: StateStore): Promise<unknown> {
  const running = runningRegistry(engine);
  const now = Date.now();
  let usage: Map<string, ToolUsageRow> | undefined;
  let usageInfo: Record<string, unknown>;
  try {
    const report = await usageReport(running, store, {
      now,
      sinceMs: USAGE_WINDOW_MS,
      rareBelow: RARE_BELOW,
    });
    usage = new Map(report.tools.map((t) => [`${t.server}/${t.tool}`, t]));
    usageInfo = {
      since: report.since,
      window_days: report.windowDays,
      rare_below: RARE_BELOW,
      store: store.kind,
    };
  } catch {
    // The store is down: the rest of the page still answers; /readyz and the store gauge say why.
    usageInfo = { error: `the ${store.kind} state store did not answer` };
  }
  const today = new Date(now).toISOString().slice(0, 10);
  return {
    version: running.version,
    pins_enforced: engine.config.security.pins.enforce,
    usage: usageInfo,
    servers: running.servers.map((s) => ({
      name: s.name,
      description: s.description ?? null,
      owner: s.owner ?? null,
      upstreams: s.upstreams,
      tools: s.tools.map((t) => {
        const used = usage?.get(`${s.name}/${t.name}`);
        return {
          name: t.name,
          title: t.title ?? null,
          owner: t.owner ?? null,
          risk: t.risk,
          pin: t.pin ?? toolPin(t),
          pin_recorded: t.pin !== undefined,
          live: pinView(engine, s.name, t.name),
          deprecated: t.deprecated ?? null,
          deprecated_past: t.deprecated !== undefined && t.deprecated <= today,
          calls: used?.calls ?? null,
          last_used: used?.lastUsed ?? null,
          usage_status: used?.status ?? null,
        };
      }),
    })),
    disk: diffView(running, registryFileOf(engine)),
  };
}
