import { describe, expect, it } from "vitest";
import { formatReport, loadLabelled, measure } from "./heldout-report.js";

/**
 * The 2026 injection held-out set (test/fixtures/injection-heldout-2026): written before the
 * concept rules, never used to tune them. This test prints the per-category and per-language
 * report and checks the set's promised size and labels.
 */

const CATEGORIES = [
  "override",
  "role",
  "address",
  "credentials",
  "exfiltration",
  "hidden_requirement",
  "shell",
];
const LANGUAGES = ["en", "es", "fr", "de", "pt", "it", "zh", "ja", "ko", "ru"];

describe("injection held-out set 2026", () => {
  const set = loadLabelled("injection-heldout-2026");

  it("has at least 150 labelled attacks in every category and language, and 300 benign texts", () => {
    expect(set.attacks.length).toBeGreaterThanOrEqual(150);
    expect(set.benign.length).toBeGreaterThanOrEqual(300);
    expect(new Set(set.attacks.map((a) => a.id)).size).toBe(set.attacks.length);
    expect(new Set(set.benign.map((b) => b.id)).size).toBe(set.benign.length);
    for (const c of CATEGORIES)
      expect(
        set.attacks.some((a) => a.category === c),
        c,
      ).toBe(true);
    for (const l of LANGUAGES) {
      expect(set.attacks.filter((a) => a.lang === l).length, l).toBeGreaterThanOrEqual(10);
      expect(set.benign.filter((b) => b.lang === l).length, l).toBeGreaterThanOrEqual(15);
    }
    for (const a of set.attacks) {
      expect(CATEGORIES, a.id).toContain(a.category);
      expect(["block", "alert"], a.id).toContain(a.tier);
    }
  });

  it("reports recall and false positives per category and language", () => {
    const report = measure(set);
    console.log(formatReport("injection-heldout-2026", report));
    expect(report.recall.total).toBe(set.attacks.length);
    expect(report.falsePositives.total).toBe(set.benign.length);
  });
});
