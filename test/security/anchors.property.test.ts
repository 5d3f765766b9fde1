import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { AnchorAutomaton } from "../../ext-service/src/policy/anchors.js";
import { DlpScanner, redactMatches } from "../../ext-service/src/policy/dlp.js";

/** Every index where `anchor` starts in `text` (ASCII case ignored when asked): the model. */
function naive(text: string, anchor: string, caseInsensitive: boolean): number[] {
  const hay = caseInsensitive ? text.replace(/[A-Z]/g, (c) => c.toLowerCase()) : text;
  const needle = caseInsensitive ? anchor.toLowerCase() : anchor;
  const out: number[] = [];
  for (let i = hay.indexOf(needle); i >= 0; i = hay.indexOf(needle, i + 1)) out.push(i);
  return out;
}

describe("the anchor automaton", () => {
  it("reports every occurrence of every anchor, overlapping ones included, as a naive search does", () => {
    const alphabet = fc.constantFrom("a", "b", "A", "B", "_", "-", "0", "\u00e9", " ");
    fc.assert(
      fc.property(
        fc.array(
          fc.tuple(
            fc.array(alphabet, { minLength: 3, maxLength: 5 }).map((c) => c.join("")),
            fc.boolean(),
          ),
          { minLength: 1, maxLength: 6 },
        ),
        fc.array(alphabet, { maxLength: 60 }).map((c) => c.join("")),
        (anchors, text) => {
          const automaton = new AnchorAutomaton();
          const hits: [number, number][] = [];
          anchors.forEach(([anchor, ci], n) => {
            if (!/^[\x20-\x7e]+$/.test(anchor)) return;
            automaton.add(anchor, (_t, at) => hits.push([n, at]), { caseInsensitive: ci });
          });
          automaton.scan(text, { steps: 0 });
          const expected: [number, number][] = [];
          anchors.forEach(([anchor, ci], n) => {
            if (!/^[\x20-\x7e]+$/.test(anchor)) return;
            for (const at of naive(text, anchor, ci)) expected.push([n, at]);
          });
          const key = (h: [number, number]) => h[1] * 100 + h[0];
          expect(hits.map(key).sort((a, b) => a - b)).toEqual(expected.map(key).sort((a, b) => a - b));
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("lets another scanner's anchors share the DLP walk (DlpScanner option join)", () => {
    const seen: number[] = [];
    const scanner = new DlpScanner(undefined, {
      join: (automaton) =>
        automaton.add("ignore previous", (_t, at) => seen.push(at), { caseInsensitive: true }),
    });
    const text = "Ignore previous notes; key AKIAQ7DEMO3XAMPLE5KZ. IGNORE PREVIOUS.";
    expect(scanner.scan(text).map((m) => m.kind)).toEqual(["aws_access_key_id"]);
    expect(seen).toEqual([0, 49]);
  });
});

describe("DLP on hidden and folded characters", () => {
  const key = "AKIAQ7DEMO3XAMPLE5KZ";
  const hidden = fc.constantFrom(
    "\u200b",
    "\u200c",
    "\u200d",
    "\u2060",
    "\u00ad",
    "\ufeff",
    "\u202e",
    "\u{e0041}",
  );
  const scanner = new DlpScanner();

  it("finds a key with invisible characters anywhere inside, and redacts exactly it and them", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 1, max: key.length - 1 }), hidden), { maxLength: 6 }),
        fc.constantFrom("", "see ", "日本語 ", "ключ: "),
        fc.constantFrom("", " ok", " 終わり", "."),
        (inserts, before, after) => {
          let written = key;
          for (const [at, ch] of [...inserts].sort((a, b) => b[0] - a[0])) {
            written = written.slice(0, at) + ch + written.slice(at);
          }
          const text = before + written + after;
          expect(redactMatches(text, scanner.scan(text))).toBe(
            `${before}[REDACTED:aws_access_key_id]${after}`,
          );
        },
      ),
      { numRuns: 500 },
    );
  });

  it("finds a key in full-width letters and with a lookalike letter inside", () => {
    const fullWidth = [...key].map((c) => String.fromCodePoint(c.codePointAt(0)! + 0xfee0)).join("");
    const cyrillicA = `\u0410${key.slice(1)}`;
    for (const written of [fullWidth, cyrillicA]) {
      expect(redactMatches(`k ${written} x`, scanner.scan(`k ${written} x`))).toBe(
        "k [REDACTED:aws_access_key_id] x",
      );
    }
  });
});
