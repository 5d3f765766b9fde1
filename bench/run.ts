import { fileURLToPath } from "node:url";
import { runBench } from "./harness.js";
import { USAGE, UsageError, parseSettings, type BenchSettings } from "./options.js";
import { runScript } from "./script.js";
import { TARGETS, TARGET_NAMES } from "./targets/index.js";

/** `npm run bench`: see USAGE in options.ts and docs/BENCHMARKS.md. */

/** bench/ of the repository, whether running from bench/ (tsx) or dist/bench/ (compiled). */
const REPO_BENCH = fileURLToPath(
  new URL(import.meta.url.endsWith(".js") ? "../../bench" : ".", import.meta.url),
);

async function main(): Promise<number> {
  let settings: BenchSettings | "help";
  try {
    settings = parseSettings(process.argv.slice(2), process.env, TARGET_NAMES, REPO_BENCH);
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      process.stderr.write(`bench: ${(err as Error).message}\n\n${USAGE}`);
      return 2;
    }
    throw err;
  }
  if (settings === "help") {
    process.stdout.write(USAGE);
    return 0;
  }
  const args = process.argv.slice(2);
  return runBench({
    settings,
    command: `npm run bench${args.length ? ` -- ${args.join(" ")}` : ""}`,
    targets: TARGETS,
    log: (line) => process.stderr.write(line + "\n"),
    print: (text) => process.stdout.write(text),
  });
}

// Interrupted: exit normally so the servers are stopped and the temp dir is removed.
process.once("SIGINT", () => process.exit(130));
process.once("SIGTERM", () => process.exit(143));

runScript(main, "bench: ");
