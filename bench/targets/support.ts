import { existsSync } from "node:fs";
import { relative } from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { createLogger, logDestination, type Logger } from "../../ext-service/src/telemetry/logger.js";

/**
 * Resolves a module by its path without extension (`.js` when compiled, `.ts` from source), or
 * undefined when it is not in this tree.
 */
export function findModule(withoutExtension: URL): URL | undefined {
  for (const ext of [".js", ".ts"]) {
    const url = new URL(withoutExtension.href + ext);
    if (existsSync(fileURLToPath(url))) return url;
  }
  return undefined;
}

/** The repository root (this file is bench/targets/support.ts, or dist/bench/targets/support.js). */
const ROOT = fileURLToPath(
  new URL(import.meta.url.endsWith(".js") ? "../../../" : "../../", import.meta.url),
);

/** Repo-relative description of a module path, for "skipped: ..." lines. */
export function describeModule(withoutExtension: URL): string {
  return `${relative(ROOT, fileURLToPath(withoutExtension)).replace(/^dist\//, "")}.{ts,js}`;
}

/** The first missing module, as a skip reason. */
export function missingModules(...modules: URL[]): string | undefined {
  const missing = modules.filter((m) => !findModule(m)).map(describeModule);
  return missing.length ? `not in this tree yet: ${missing.join(", ")}` : undefined;
}

export async function importModule<T>(withoutExtension: URL): Promise<T> {
  const url = findModule(withoutExtension);
  if (!url) throw new Error(`module not found: ${describeModule(withoutExtension)}`);
  return (await import(url.href)) as T;
}

/**
 * The gateway's logger in a bench process: audit records are serialized and written as in
 * production (level info, asynchronous batched writes: telemetry/logger.ts), to /dev/null instead
 * of stdout.
 */
export function benchLogger(level: "info" | "warn" = "info", batched = true): Logger {
  return createLogger(
    level,
    // Unbatched: each line its own write, as before LOG_FLUSH_DELAY_MS (for comparisons).
    batched ? logDestination("/dev/null") : pino.destination({ dest: "/dev/null", sync: false }),
  );
}
