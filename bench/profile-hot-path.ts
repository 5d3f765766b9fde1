/**
 * Runs one hot path (bench/hot-paths.ts) in a loop, for a CPU profile of what it spends:
 *
 *   node --cpu-prof --cpu-prof-dir=DIR dist/bench/profile-hot-path.js --path sse_64k --runs 400
 *
 * The instruction counts (bench/instructions.ts) say how much a path costs; a profile says where.
 */
import { parseArgs } from "node:util";
import { HOT_PATHS, HOT_PATH_IDS, HotPathFixture, type HotPathId } from "./hot-paths.js";
import { runScript } from "./script.js";
import { prepareWorkdir } from "./setup.js";

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { path: { type: "string" }, runs: { type: "string", default: "200" } },
  });
  const path = values.path as HotPathId;
  if (!HOT_PATHS[path]) throw new Error(`--path: one of ${HOT_PATH_IDS.join(", ")}`);
  const work = await prepareWorkdir("http://127.0.0.1:9");
  try {
    const op = await new HotPathFixture(work.configFile, work.token).operation(path);
    for (let i = 0; i < HOT_PATHS[path].warmup; i++) await op();
    const runs = Number(values.runs);
    const from = process.hrtime.bigint() / 1000n;
    const cpu = process.cpuUsage();
    for (let i = 0; i < runs; i++) await op();
    const used = process.cpuUsage(cpu);
    const per = (used.user + used.system) / runs / (HOT_PATHS[path].exchangesPerRun ?? 1);
    // The measured window in the profile's clock (CLOCK_MONOTONIC, microseconds), to leave out
    // start-up and warm-up when reading the profile.
    const to = process.hrtime.bigint() / 1000n;
    process.stdout.write(`${path}: ${runs} runs, ${per.toFixed(1)} us CPU per run; window ${from} ${to}\n`);
  } finally {
    work.remove();
  }
}

runScript(main);
