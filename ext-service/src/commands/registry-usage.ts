import { UsageError } from "./command.js";
import { loadConfig } from "../config/load.js";
import { openStore } from "../state/open-store.js";
import { RedisStore } from "../state/redis.js";
import { USAGE_RETENTION_DAYS, formatUsageReport, usageReport } from "../state/usage.js";
import type { RegistrySubcommand } from "./command.js";

/** `90d`, `12w`, `48h`: the window of the sweep. */
function parseSince(text: string): number {
  const m = /^(\d+)(h|d|w)$/.exec(text);
  if (!m) throw new UsageError(`--since '${text}' is not a window like 90d, 12w or 48h`);
  const hours = Number(m[1]) * (m[2] === "h" ? 1 : m[2] === "d" ? 24 : 168);
  if (hours === 0 || hours > USAGE_RETENTION_DAYS * 24) {
    throw new UsageError(`--since must be between 1h and ${USAGE_RETENTION_DAYS}d (usage is kept that long)`);
  }
  return hours * 3_600_000;
}

export const registryUsageCommand: RegistrySubcommand = {
  name: "usage",
  summary: "Which registered tools nobody uses: unused, rarely used, past deprecation; idle servers",
  usage: `Usage: mcp-gateway registry usage --config <gateway.yaml> [--since 90d] [--rare N] [--json]

The registry sweep ("is this tool still used?"): reads the per-tool and per-server usage the
gateway keeps in its state store (state.store: redis, shared by every replica) and lists the
registered tools never called in the window, those called fewer than --rare times (default 5),
those past their deprecation date, and the servers that got no request, then every active tool.

Options:
  --since <window>  how far back to look: 90d (default), 12w, 48h; at most ${USAGE_RETENTION_DAYS}d
  --rare <n>        a tool with fewer calls than this is "rare" (default 5)
  --json            print the report as JSON

With state.store: memory, usage lives in the gateway process itself: this command cannot read it
and exits 1. Exit code 0 otherwise, 2 on a usage error.`,
  options: {
    config: { type: "string", short: "c" },
    since: { type: "string" },
    rare: { type: "string" },
    json: { type: "boolean" },
  },
  async run(values) {
    const file = values.config;
    if (typeof file !== "string") throw new UsageError("--config is required");
    const sinceMs = parseSince(typeof values.since === "string" ? values.since : "90d");
    const rareText = typeof values.rare === "string" ? values.rare : "5";
    if (!/^\d+$/.test(rareText)) throw new UsageError(`--rare '${rareText}' is not a whole number`);
    const { config, registry } = loadConfig(file);
    if (config.state.store !== "redis") {
      process.stderr.write(
        "mcp-gateway registry usage: state.store is memory, so usage is kept inside the running gateway " +
          "process only; set state.store: redis to share it (and read it here)\n",
      );
      return 1;
    }
    const store = openStore(config);
    try {
      if (store instanceof RedisStore) await store.waitUntilAvailable(5_000);
      const report = await usageReport(registry, store, {
        now: Date.now(),
        sinceMs,
        rareBelow: Number(rareText),
      });
      process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : formatUsageReport(report));
      return 0;
    } finally {
      await store.close();
    }
  },
};
