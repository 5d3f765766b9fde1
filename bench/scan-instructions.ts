/**
 * Load-independent cost of the injection scan: run under valgrind's callgrind, which counts
 * instructions, the difference between `runs` scans and none is the work of those scans.
 *
 *   npx tsx bench/scan-instructions.ts            # runs both counts under valgrind, prints per scan
 *   (inner) node --import tsx bench/scan-instructions.ts --inner <kb> <runs>
 *
 * The texts are scan-cost.ts's (bench/benign-corpus.ts): clean 1 KB prose, and 64 KB of the benign
 * corpus taken whole (scan-cost.ts leaves out the entries a scanner flags).
 */
import { execFileSync } from "node:child_process";
import { readFileSync, rmSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { scanInjection } from "../ext-service/src/policy/injection.js";
import { benignTexts, CLEAN_1K, repeatedToSize } from "./benign-corpus.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

if (process.argv[2] === "--inner") {
  const kb = Number(process.argv[3]);
  const runs = Number(process.argv[4]);
  const text = kb === 1 ? CLEAN_1K : repeatedToSize(benignTexts(), kb * 1024);
  // Warm-up happens in both counts alike, so it cancels out in the difference.
  for (let i = 0; i < 30; i++) scanInjection(text);
  for (let i = 0; i < runs; i++) scanInjection(text);
} else {
  const out = mkdtempSync(join(tmpdir(), "scan-instructions-"));
  const count = (kb: number, runs: number): number => {
    const file = join(out, `cg-${kb}-${runs}`);
    execFileSync(
      "valgrind",
      [
        "--tool=callgrind",
        `--callgrind-out-file=${file}`,
        process.execPath,
        "--import",
        "tsx",
        fileURLToPath(import.meta.url),
        "--inner",
        String(kb),
        String(runs),
      ],
      { cwd: root, stdio: ["ignore", "ignore", "pipe"] },
    );
    const summary = /^summary:\s+(\d+)/m.exec(readFileSync(file, "utf8"));
    return Number(summary![1]);
  };
  for (const [kb, runs] of [
    [1, 2000],
    [64, 40],
  ] as const) {
    const per = (count(kb, runs) - count(kb, 0)) / runs;
    process.stdout.write(
      `${kb} KB: ${(per / 1e6).toFixed(2)} M instructions per injection scan ` +
        `(${(per / (kb * 1024)).toFixed(0)} per character)\n`,
    );
  }
  rmSync(out, { recursive: true, force: true });
}
