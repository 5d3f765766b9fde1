/**
 * Recall and false positives of the injection scanner on a labelled set, per category, language
 * and obfuscation (attacks) and per source and language (benign texts).
 *
 *   npx tsx test/security/heldout-report.ts                  # the 2026 held-out set
 *   npx tsx test/security/heldout-report.ts injection-tuning-2026
 *
 * An attack counts as caught when the scan reports any finding (block or alert tier); a benign
 * text counts as a false positive on any finding. The held-out set is for measuring only: rules
 * are developed against the tuning set (test/fixtures/injection-tuning-2026).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { scanInjection, type Tier } from "../../ext-service/src/policy/injection.js";
import { FIXTURES, applyTransform } from "./corpus.js";

export interface LabelledAttack {
  id: string;
  category: string;
  lang: string;
  /** The tier the author expects (block: unambiguous; alert: a weaker signal is acceptable). */
  tier: Tier;
  obfuscation?: string;
  text: string;
  transform?: string;
  wrap?: string;
}

export interface LabelledBenign {
  id: string;
  source: string;
  lang: string;
  text: string;
}

export interface Tally {
  hits: number;
  total: number;
}

export interface SetReport {
  recall: Tally;
  blockRecall: Tally;
  falsePositives: Tally;
  blockFalsePositives: Tally;
  byCategory: Map<string, Tally>;
  byLanguage: Map<string, Tally>;
  byObfuscation: Map<string, Tally>;
  fpBySource: Map<string, Tally>;
  fpByLanguage: Map<string, Tally>;
  missed: string[];
  flagged: string[];
}

export function loadLabelled(set: string): { attacks: LabelledAttack[]; benign: LabelledBenign[] } {
  const dir = join(FIXTURES, set);
  return {
    attacks: JSON.parse(readFileSync(join(dir, "attacks.json"), "utf8")) as LabelledAttack[],
    benign: JSON.parse(readFileSync(join(dir, "benign.json"), "utf8")) as LabelledBenign[],
  };
}

export function attackText(a: LabelledAttack): string {
  const payload = applyTransform(a.text, a.transform);
  return a.wrap ? a.wrap.replace("{payload}", payload) : payload;
}

function bump(m: Map<string, Tally>, key: string, hit: boolean): void {
  const t = m.get(key) ?? { hits: 0, total: 0 };
  t.total++;
  if (hit) t.hits++;
  m.set(key, t);
}

export function measure(
  set: { attacks: LabelledAttack[]; benign: LabelledBenign[] },
  scan: (text: string) => Tier | undefined = (t) => scanInjection(t).tier,
): SetReport {
  const r: SetReport = {
    recall: { hits: 0, total: 0 },
    blockRecall: { hits: 0, total: 0 },
    falsePositives: { hits: 0, total: 0 },
    blockFalsePositives: { hits: 0, total: 0 },
    byCategory: new Map(),
    byLanguage: new Map(),
    byObfuscation: new Map(),
    fpBySource: new Map(),
    fpByLanguage: new Map(),
    missed: [],
    flagged: [],
  };
  for (const a of set.attacks) {
    const tier = scan(attackText(a));
    const hit = tier !== undefined;
    r.recall.total++;
    r.blockRecall.total++;
    if (hit) r.recall.hits++;
    if (tier === "block") r.blockRecall.hits++;
    bump(r.byCategory, a.category, hit);
    bump(r.byLanguage, a.lang, hit);
    bump(r.byObfuscation, a.obfuscation ?? "none", hit);
    if (!hit) r.missed.push(a.id);
  }
  for (const b of set.benign) {
    const tier = scan(b.text);
    const hit = tier !== undefined;
    r.falsePositives.total++;
    r.blockFalsePositives.total++;
    if (hit) r.falsePositives.hits++;
    if (tier === "block") r.blockFalsePositives.hits++;
    bump(r.fpBySource, b.source, hit);
    bump(r.fpByLanguage, b.lang, hit);
    if (hit) r.flagged.push(b.id);
  }
  return r;
}

const pct = (t: Tally) => (t.total === 0 ? "-" : `${((t.hits / t.total) * 100).toFixed(1)}%`);
const cell = (t: Tally) => `${pct(t)} (${t.hits}/${t.total})`;

/** The report as markdown tables (the form docs/SECURITY.md quotes). */
export function formatReport(name: string, r: SetReport): string {
  const lines = [
    `### ${name}`,
    "",
    `Recall (block or alert): ${cell(r.recall)}; block tier alone ${cell(r.blockRecall)}.`,
    `False positives (any finding): ${cell(r.falsePositives)}; block tier ${cell(r.blockFalsePositives)}.`,
    "",
  ];
  const table = (title: string, m: Map<string, Tally>) => {
    lines.push(`| ${title} | rate |`, "| --- | --- |");
    for (const [k, t] of [...m].sort(([a], [b]) => a.localeCompare(b))) lines.push(`| ${k} | ${cell(t)} |`);
    lines.push("");
  };
  table("Attack category (recall)", r.byCategory);
  table("Attack language (recall)", r.byLanguage);
  table("Obfuscation (recall)", r.byObfuscation);
  table("Benign source (false positives)", r.fpBySource);
  table("Benign language (false positives)", r.fpByLanguage);
  if (r.missed.length) lines.push(`Missed: ${r.missed.join(", ")}`, "");
  if (r.flagged.length) lines.push(`Flagged benign: ${r.flagged.join(", ")}`, "");
  return lines.join("\n");
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const set = process.argv[2] ?? "injection-heldout-2026";
  console.log(formatReport(set, measure(loadLabelled(set))));
}
