import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { HeldValue, withHeldValues } from "../../ext-service/src/policy/exact-match.js";
import type { DlpMatch } from "../../ext-service/src/policy/dlp.js";

/** Per-exchange held credentials (exchanged tokens) found verbatim in server output. */

/** Non-overlapping occurrences by the obvious quadratic search: the reference. */
function naive(text: string, value: string): [number, number][] {
  const out: [number, number][] = [];
  for (let i = 0; i + value.length <= text.length;) {
    if (text.startsWith(value, i)) {
      out.push([i, i + value.length]);
      i += value.length;
    } else i++;
  }
  return out;
}

describe("HeldValue", () => {
  it("finds exactly the non-overlapping occurrences a plain search finds", () => {
    // A small alphabet makes borders and near-misses (the hard cases for KMP) common.
    const word = fc.string({ unit: fc.constantFrom("a", "b", "c"), minLength: 8, maxLength: 12 });
    const text = fc.string({ unit: fc.constantFrom("a", "b", "c"), maxLength: 200 });
    fc.assert(
      fc.property(word, text, fc.nat(3), (value, noise, copies) => {
        const haystack = noise + value.repeat(copies) + noise;
        const found = new HeldValue(value).find(haystack).map((m) => [m.start, m.end]);
        expect(found).toEqual(naive(haystack, value));
      }),
      { numRuns: 300 },
    );
  });

  it("ignores values shorter than DLP's exact-match minimum", () => {
    expect(HeldValue.of("short")).toBeUndefined();
    expect(HeldValue.of("long-enough")?.find("x long-enough y")).toEqual([
      { kind: "gateway_credential", category: "secret", start: 2, end: 13 },
    ]);
  });

  it("stays linear on text built to defeat a naive search", () => {
    const value = "a".repeat(4000) + "b";
    const held = new HeldValue(value);
    const time = (n: number) => {
      const text = "a".repeat(n);
      const started = performance.now();
      for (let i = 0; i < 5; i++) held.find(text);
      return performance.now() - started;
    };
    time(100_000); // warm up
    const small = time(200_000);
    const large = time(800_000);
    // Four times the text: about four times the work, far from the 4000x a quadratic search does.
    expect(large / Math.max(small, 0.5)).toBeLessThan(16);
  });
});

describe("withHeldValues", () => {
  it("adds held values' matches in text order and drops overlaps with the earlier match", () => {
    const text = "key=sk_live_x token-abcdef123 and token-abcdef123";
    const dlp: DlpMatch[] = [{ kind: "generic_secret", category: "secret", start: 0, end: 24 }];
    const merged = withHeldValues(dlp, text, [new HeldValue("token-abcdef123")]);
    expect(merged.map((m) => [m.kind, m.start, m.end])).toEqual([
      ["generic_secret", 0, 24],
      ["gateway_credential", 34, 49],
    ]);
    expect(withHeldValues(dlp, text, [])).toBe(dlp);
  });
});
