import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * Labelled corpora for the injection detector (test/fixtures/attacks, test/fixtures/benign).
 * Attack entries may name a `transform` (how the payload is hidden or encoded, chained with '>')
 * and a `wrap` template whose `{payload}` is replaced by the transformed text.
 */

export interface CorpusEntry {
  id: string;
  file: string;
  text: string;
  transform?: string;
  wrap?: string;
}

export const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), "../fixtures");

const HOMOGLYPHS: Record<string, string> = {
  a: "\u0430",
  e: "\u0435",
  o: "\u043e",
  p: "\u0440",
  c: "\u0441",
  i: "\u0456",
  x: "\u0445",
  y: "\u0443",
  s: "\u0455",
  A: "\u0391",
  E: "\u0395",
  O: "\u039f",
  I: "\u0399",
};

function tags(s: string): string {
  return [...s].map((c) => String.fromCodePoint(0xe0000 + c.charCodeAt(0))).join("");
}

/** Bytes as variation selectors: 0-15 -> U+FE00.., 16-255 -> U+E0100.. */
function selectors(s: string): string {
  return [...Buffer.from(s, "utf8")]
    .map((b) => String.fromCodePoint(b < 16 ? 0xfe00 + b : 0xe0100 + b - 16))
    .join("");
}

const TRANSFORMS: Record<string, (s: string) => string> = {
  base64: (s) => Buffer.from(s, "utf8").toString("base64"),
  base64url: (s) => Buffer.from(s, "utf8").toString("base64url"),
  hex: (s) => Buffer.from(s, "utf8").toString("hex"),
  percent: (s) => encodeURIComponent(s),
  "percent-all": (s) =>
    [...Buffer.from(s, "utf8")].map((b) => `%${b.toString(16).padStart(2, "0")}`).join(""),
  "escape-x": (s) => [...Buffer.from(s, "utf8")].map((b) => `\\x${b.toString(16).padStart(2, "0")}`).join(""),
  "escape-u": (s) => [...s].map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`).join(""),
  "html-entities": (s) => [...s].map((c) => `&#${c.codePointAt(0)};`).join(""),
  "html-entities-hex": (s) => [...s].map((c) => `&#x${c.codePointAt(0)!.toString(16)};`).join(""),
  tags,
  selectors,
  "zero-width": (s) => s.replace(/([A-Za-z])(?=[A-Za-z])/g, "$1\u200b"),
  "soft-hyphen": (s) => s.replace(/([a-z])(?=[a-z])/g, "$1\u00ad"),
  // Text in logical order between an override and its terminator, as Trojan Source does.
  bidi: (s) => `\u202e${s}\u202c`,
  homoglyph: (s) => s.replace(/[aeopcixysAEOI]/g, (c) => HOMOGLYPHS[c] ?? c),
  fullwidth: (s) =>
    s.replace(/[!-~]/g, (c) => String.fromCharCode(c.charCodeAt(0) + 0xfee0)).replace(/ /g, "\u3000"),
  "zero-width+homoglyph": (s) => TRANSFORMS["zero-width"]!(TRANSFORMS.homoglyph!(s)),
  "mixed-invisible": (s) =>
    s
      .replace(/ /g, () => " \u2060")
      .replace(/([a-z])([a-z])/g, "$1\u200c$2")
      .replace(/^/, "\ufeff"),
};

export function applyTransform(text: string, transform: string | undefined): string {
  if (!transform) return text;
  let out = text;
  for (const step of transform.split(">")) {
    const fn = TRANSFORMS[step];
    if (!fn) throw new Error(`unknown transform '${step}'`);
    out = fn(out);
  }
  return out;
}

/** The text a scanner sees for an entry: transformed payload inside its wrapper. */
export function materialise(entry: CorpusEntry): string {
  const payload = applyTransform(entry.text, entry.transform);
  return entry.wrap ? entry.wrap.replace("{payload}", payload) : payload;
}

export function loadCorpus(kind: "attacks" | "benign"): CorpusEntry[] {
  const dir = join(FIXTURES, kind);
  return readdirSync(dir)
    .filter((f) => f.endsWith(".json"))
    .sort()
    .flatMap((file) =>
      (JSON.parse(readFileSync(join(dir, file), "utf8")) as Omit<CorpusEntry, "file">[]).map((e) => ({
        ...e,
        file,
      })),
    );
}
