import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The texts the scan benches measure, read in one place: scan-cost.ts (wall clock) and
 * scan-instructions.ts (instruction counts under callgrind).
 */

/** A clean 1 KB tool result: business prose that no detector flags. */
export const CLEAN_1K =
  "The quarterly report covers revenue, churn and hiring. Revenue grew in every region, led by " +
  "the enterprise segment, while churn stayed flat. The hiring plan adds engineers to the platform " +
  "team and support staff for the new regions. Next steps: finalise the budget, review the roadmap " +
  "with product, and schedule the customer advisory board. The appendix lists the assumptions behind " +
  "the forecast and the risks the team identified during the planning sessions. Please send comments " +
  "on the draft before the review meeting so that the final version can go to the board on time. The " +
  "summary table shows each region with its targets and the actual figures for the quarter, followed " +
  "by a short commentary from each regional lead about what went well and what will change next time.";

const BENIGN_DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "test", "fixtures", "benign");

/** Every entry of the benign corpus (prose, code, logs, configs, docs about injection), files in name order. */
export function benignTexts(): string[] {
  return readdirSync(BENIGN_DIR)
    .filter((f) => f.endsWith(".json"))
    .sort()
    .flatMap((f) =>
      (JSON.parse(readFileSync(join(BENIGN_DIR, f), "utf8")) as { text: string }[]).map((e) => e.text),
    );
}

/** The texts joined by blank lines, repeated from the first, cut at exactly `size` characters. */
export function repeatedToSize(texts: readonly string[], size: number): string {
  let out = "";
  for (let i = 0; out.length < size; i++) out += texts[i % texts.length] + "\n\n";
  return out.slice(0, size);
}
