/**
 * Text normalisation before injection rules run: hidden characters are stripped (and their
 * presence recorded), compatibility forms are folded (NFKC plus a small confusables table), and
 * encoded layers (base64, hex, percent and escape sequences, Unicode tag and variation-selector
 * smuggling) are decoded to a bounded depth and size, each layer becoming one more text to scan.
 *
 * Everything here is linear in the input: the only regexes are single character classes with a
 * lower bound, and decoding is capped by `maxDecodedChars` per call.
 */

export interface DecodeLimits {
  /** How many encoded layers deep to decode (base64 inside percent inside base64 is depth 3). */
  maxDepth: number;
  /** Total characters produced by decoding, across all layers, per normalised input. */
  maxDecodedChars: number;
  /** Longest single encoded run that is decoded; longer runs are decoded up to this length. */
  maxCandidateChars: number;
}

export const DEFAULT_DECODE_LIMITS: DecodeLimits = Object.freeze({
  maxDepth: 3,
  maxDecodedChars: 262_144,
  maxCandidateChars: 65_536,
});

export type LayerKind = "text" | "base64" | "hex" | "percent" | "escape" | "tags" | "selectors";

/** One text the rules look at: the input itself or a decoded layer of it. */
export interface ScanLayer {
  kind: LayerKind;
  depth: number;
  text: string;
}

/** Counts of hidden characters removed from the input (and from decoded layers). */
export interface HiddenCharacters {
  /** Zero-width characters that split a word (letter, zero-width, letter). */
  zeroWidthInWord: number;
  /** Bidi embedding, override and isolate controls (U+202A-202E, U+2066-2069). */
  bidiControls: number;
  /** Unicode tag characters (U+E0000-E007F) outside emoji flag sequences. */
  tagCharacters: number;
  /** Variation selectors that carry bytes (runs of four or more). */
  selectorPayload: number;
}

export interface Normalized {
  layers: ScanLayer[];
  hidden: HiddenCharacters;
  /** True when decoding stopped at a limit (depth or size). */
  truncated: boolean;
}

/** Cyrillic, Greek and other lookalikes that NFKC leaves alone, mapped to the Latin letter they imitate. */
const CONFUSABLES: Readonly<Record<string, string>> = Object.freeze({
  // Cyrillic lower case
  "\u0430": "a",
  "\u0435": "e",
  "\u043e": "o",
  "\u0440": "p",
  "\u0441": "c",
  "\u0443": "y",
  "\u0445": "x",
  "\u0456": "i",
  "\u0458": "j",
  "\u0455": "s",
  "\u04bb": "h",
  "\u0501": "d",
  "\u051b": "q",
  "\u051d": "w",
  "\u04cf": "l",
  "\u0432": "b",
  "\u043a": "k",
  "\u043c": "m",
  "\u043d": "h",
  "\u0442": "t",
  // Cyrillic upper case
  "\u0410": "A",
  "\u0412": "B",
  "\u0415": "E",
  "\u041a": "K",
  "\u041c": "M",
  "\u041d": "H",
  "\u041e": "O",
  "\u0420": "P",
  "\u0421": "C",
  "\u0422": "T",
  "\u0425": "X",
  "\u0423": "Y",
  "\u0406": "I",
  "\u0408": "J",
  "\u0405": "S",
  // Greek
  "\u03b1": "a",
  "\u03bf": "o",
  "\u03c1": "p",
  "\u03bd": "v",
  "\u03b9": "i",
  "\u03ba": "k",
  "\u03c5": "u",
  "\u03c7": "x",
  "\u03b5": "e",
  "\u0391": "A",
  "\u0392": "B",
  "\u0395": "E",
  "\u0396": "Z",
  "\u0397": "H",
  "\u0399": "I",
  "\u039a": "K",
  "\u039c": "M",
  "\u039d": "N",
  "\u039f": "O",
  "\u03a1": "P",
  "\u03a4": "T",
  "\u03a5": "Y",
  "\u03a7": "X",
  // Armenian and Latin extras
  "\u0585": "o",
  "\u057d": "u",
  "\u0578": "n",
  "\u0131": "i",
  "\u0237": "j",
  "\u0142": "l",
  "\u0251": "a",
  "\u0261": "g",
});

const CONFUSABLE_RE = new RegExp(`[${Object.keys(CONFUSABLES).join("")}]`, "g");
// eslint-disable-next-line no-control-regex
const NON_ASCII_RUN = /[^\x00-\x7f]+/g;

/**
 * Whether `text` has a character outside ASCII: exactly when its UTF-8 form is longer than its
 * UTF-16 length (every other character, a lone surrogate too, takes more bytes than code
 * units). Node counts that natively, several times faster than a /[^\x00-\x7f]/ search.
 */
export function hasNonAscii(text: string): boolean {
  return Buffer.byteLength(text, "utf8") !== text.length;
}

function foldPiece(piece: string): string {
  return piece.normalize("NFKC").replace(CONFUSABLE_RE, (c) => CONFUSABLES[c] ?? c);
}

/**
 * NFKC, then the confusables table: the skeleton rules and name comparisons look at.
 *
 * Only the non-ASCII runs (each with the character before it) go through NFKC and the table.
 * That is exact, not an approximation: an ASCII character is a starter that never combines with
 * what precedes it, so NFKC splits at every ASCII character and leaves ASCII-only text alone; the
 * confusables are all non-ASCII. The character before a run is included because a combining mark
 * can merge into it ("<" + U+0338 is "≮"). A mostly-ASCII result (code, logs) then costs one
 * character loop instead of NFKC and a regex replace over all of it.
 */
export function foldText(text: string): string {
  NON_ASCII_RUN.lastIndex = 0;
  let m = NON_ASCII_RUN.exec(text);
  if (m === null) return text;
  // Joined once at the end: a chain of concatenations would be flattened by every later reader.
  const parts: string[] = [];
  let last = 0;
  do {
    const start = m.index > last ? m.index - 1 : m.index;
    const end = m.index + m[0].length;
    parts.push(text.slice(last, start), foldPiece(text.slice(start, end)));
    last = end;
  } while ((m = NON_ASCII_RUN.exec(text)) !== null);
  NON_ASCII_RUN.lastIndex = 0;
  parts.push(text.slice(last));
  return parts.join("");
}

/** foldText without the fast path: what it must agree with (tests). */
export function foldTextReference(text: string): string {
  return foldPiece(text);
}

/**
 * Characters removed before scanning: soft hyphen, Mongolian vowel separator, zero-width space /
 * non-joiner / joiner, LRM/RLM, bidi embeddings and overrides, word joiner and invisible
 * operators, bidi isolates, BOM, variation selectors, and (as surrogate pairs) Unicode tags
 * U+E0000-E007F and the variation selector supplement U+E0100-E01EF.
 */
// The class lists joiners and variation selectors on purpose: they are what gets stripped.
const HIDDEN_RE =
  // eslint-disable-next-line no-misleading-character-class
  /[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\ufe00-\ufe0f\u{e0000}-\u{e007f}\u{e0100}-\u{e01ef}]/gu;

const LETTER = /\p{L}/u;
const ZERO_WIDTH = new Set(["\u200b", "\u200c", "\u200d", "\u2060", "\u2061", "\u2062", "\u2063", "\u2064"]);
const BIDI = /[\u202a-\u202e\u2066-\u2069]/;

function isLetterAt(s: string, i: number): boolean {
  const c = s[i];
  return c !== undefined && LETTER.test(c);
}

/** Byte value carried by a variation selector, per the usual smuggling scheme, or -1. */
function selectorByte(cp: number): number {
  if (cp >= 0xfe00 && cp <= 0xfe0f) return cp - 0xfe00;
  if (cp >= 0xe0100 && cp <= 0xe01ef) return cp - 0xe0100 + 16;
  return -1;
}

interface Stripped {
  text: string;
  tagText: string;
  selectorBytes: number[];
}

function stripHidden(s: string, hidden: HiddenCharacters): Stripped {
  let tagText = "";
  const selectorBytes: number[] = [];
  let selectorRun: number[] = [];
  let lastEnd = -1;
  let tagRunEnd = -1;
  let tagRunIsFlag = false;
  const flushRun = () => {
    if (selectorRun.length >= 4) {
      hidden.selectorPayload += selectorRun.length;
      selectorBytes.push(...selectorRun);
    }
    selectorRun = [];
  };
  const text = s.replace(HIDDEN_RE, (m: string, offset: number) => {
    const cp = m.codePointAt(0)!;
    if (offset !== lastEnd) flushRun();
    lastEnd = offset + m.length;
    if (cp >= 0xe0000 && cp <= 0xe007f) {
      // Emoji subdivision flags (black flag U+1F3F4 + tags) are the one legitimate use. A run of
      // tags is a flag when its first tag follows the black flag (decided once per run).
      if (offset !== tagRunEnd)
        tagRunIsFlag =
          offset >= 2 && s.charCodeAt(offset - 2) === 0xd83c && s.charCodeAt(offset - 1) === 0xdff4;
      tagRunEnd = offset + m.length;
      if (!tagRunIsFlag) {
        hidden.tagCharacters++;
        if (cp >= 0xe0020 && cp <= 0xe007e) tagText += String.fromCharCode(cp - 0xe0000);
      }
      return "";
    }
    const byte = selectorByte(cp);
    if (byte >= 0) {
      selectorRun.push(byte);
      return "";
    }
    if (BIDI.test(m)) hidden.bidiControls++;
    else if (ZERO_WIDTH.has(m) && isLetterAt(s, offset - 1) && isLetterAt(s, offset + 1)) {
      // ZWJ/ZWNJ between letters is normal in several scripts; only Latin-letter splits count.
      if (
        m === "\u200b" ||
        m === "\u2060" ||
        (/[A-Za-z]/.test(s[offset - 1]!) && /[A-Za-z]/.test(s[offset + 1]!))
      ) {
        hidden.zeroWidthInWord++;
      }
    }
    return "";
  });
  flushRun();
  return { text, tagText, selectorBytes };
}

const utf8 = new TextDecoder("utf-8", { fatal: false });

/** Share of characters that are printable text (letters, digits, punctuation, whitespace). */
function looksLikeText(s: string): boolean {
  if (s.length < 4) return false;
  let bad = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if ((c < 32 && c !== 9 && c !== 10 && c !== 13) || c === 0xfffd || (c >= 0x7f && c < 0xa0)) bad++;
  }
  return bad / s.length < 0.08;
}

/** Characters of base64 (standard and URL alphabets), which includes hex digits. */
const B64 = new Uint8Array(128);
for (const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-")
  B64[c.charCodeAt(0)] = 1;
const MIN_RUN = 16;

function isB64(c: number): boolean {
  return c < 128 && B64[c] === 1;
}

/**
 * Runs of at least 16 base64/hex characters (plus up to two '=' of padding). Any such run covers
 * one of every 16th index, so the scan probes only those and expands around hits: about n/16
 * probes plus the length of the words they land in, far cheaper than a regex tried at every index.
 */
export function encodedRuns(text: string): string[] {
  const out: string[] = [];
  const n = text.length;
  let i = MIN_RUN - 1;
  while (i < n) {
    if (!isB64(text.charCodeAt(i))) {
      i += MIN_RUN;
      continue;
    }
    let s = i;
    while (s > 0 && isB64(text.charCodeAt(s - 1))) s--;
    let e = i + 1;
    while (e < n && isB64(text.charCodeAt(e))) e++;
    if (e - s >= MIN_RUN) {
      let end = e;
      while (end < n && end - e < 2 && text.charCodeAt(end) === 61) end++;
      out.push(text.slice(s, end));
    }
    i = e + MIN_RUN;
  }
  return out;
}
const HEX_ONLY = /^[0-9a-fA-F]+$/;
const HAS_UPPER = /[A-Z]/;
const HAS_LOWER = /[a-z]/;
const PERCENT = /%[0-9A-Fa-f]{2}/g;
const ESCAPE = /\\x[0-9A-Fa-f]{2}|\\u[0-9A-Fa-f]{4}|&#x[0-9A-Fa-f]{1,6};|&#[0-9]{1,7};/g;

interface Budget {
  left: number;
  truncated: boolean;
}

function take(budget: Budget, s: string, limits: DecodeLimits): string {
  let out = s.length > limits.maxCandidateChars ? s.slice(0, limits.maxCandidateChars) : s;
  if (out.length !== s.length) budget.truncated = true;
  if (out.length > budget.left) {
    out = out.slice(0, Math.max(0, budget.left));
    budget.truncated = true;
  }
  return out;
}

function decodeBase64(run: string): string | undefined {
  let body = run.replace(/=+$/, "");
  body = body.slice(0, body.length - (body.length % 4 === 1 ? 1 : 0));
  const bytes = Buffer.from(body.replace(/-/g, "+").replace(/_/g, "/"), "base64");
  if (bytes.length < 6) return undefined;
  const text = utf8.decode(bytes);
  return looksLikeText(text) ? text : undefined;
}

function decodeHex(run: string): string | undefined {
  const even = run.length % 2 === 0 ? run : run.slice(0, -1);
  const text = utf8.decode(Buffer.from(even, "hex"));
  return looksLikeText(text) ? text : undefined;
}

/** Decodes %HH escapes (and `+` as space) in one token. */
function decodePercent(s: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 37 && i + 2 < s.length && HEX_ONLY.test(s.slice(i + 1, i + 3))) {
      bytes.push(parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (c === 43) bytes.push(32);
    else if (c < 0x80) bytes.push(c);
    else for (const b of Buffer.from(s[i]!, "utf8")) bytes.push(b);
  }
  return utf8.decode(Uint8Array.from(bytes));
}

/** Decodes \xHH, \uHHHH and HTML numeric character references in one token. */
function decodeEscapes(s: string): string {
  return s.replace(ESCAPE, (m) => {
    let cp: number;
    if (m.startsWith("\\x") || m.startsWith("\\u")) cp = parseInt(m.slice(2), 16);
    else if (m.startsWith("&#x")) cp = parseInt(m.slice(3, -1), 16);
    else cp = parseInt(m.slice(2, -1), 10);
    return cp <= 0x10ffff ? String.fromCodePoint(cp) : "";
  });
}

function isSpace(c: number): boolean {
  return c === 32 || c === 9 || c === 10 || c === 13 || c === 12 || c === 11;
}

/**
 * Whitespace-delimited tokens holding at least `min` matches of `re` (a global regex of fixed
 * short width). Each token is found by expanding from a match, so the work is linear.
 */
function tokensWith(text: string, re: RegExp, min: number, maxLen: number): string[] {
  const out: string[] = [];
  re.lastIndex = 0;
  let tokenEnd = -1;
  let m: RegExpExecArray | null;
  while ((m = re.exec(text)) !== null) {
    if (m.index < tokenEnd) continue;
    let start = m.index;
    // Never reach back into the previous token: each character belongs to one token at most.
    const floor = Math.max(0, tokenEnd, m.index - maxLen);
    while (start > floor && !isSpace(text.charCodeAt(start - 1))) start--;
    let end = m.index + m[0].length;
    const ceil = Math.min(text.length, start + maxLen);
    while (end < ceil && !isSpace(text.charCodeAt(end))) end++;
    tokenEnd = end;
    re.lastIndex = end;
    const token = text.slice(start, end);
    let n = 0;
    const inner = new RegExp(re.source, "g");
    while (inner.exec(token) !== null && n < min) n++;
    if (n >= min) out.push(token);
  }
  re.lastIndex = 0;
  return out;
}

/**
 * Normalises `input` for scanning. The first layer is the input itself, cleaned and folded;
 * further layers are decoded content. Hidden characters are counted over all layers.
 */
export function normalizeForScan(input: string, limits: DecodeLimits = DEFAULT_DECODE_LIMITS): Normalized {
  const hidden: HiddenCharacters = {
    zeroWidthInWord: 0,
    bidiControls: 0,
    tagCharacters: 0,
    selectorPayload: 0,
  };
  const layers: ScanLayer[] = [];
  const budget: Budget = { left: limits.maxDecodedChars, truncated: false };
  visit(input, "text", 0, limits, hidden, layers, budget);
  return { layers, hidden, truncated: budget.truncated };
}

function visit(
  raw: string,
  kind: LayerKind,
  depth: number,
  limits: DecodeLimits,
  hidden: HiddenCharacters,
  layers: ScanLayer[],
  budget: Budget,
): void {
  let text = raw;
  const nested: { kind: LayerKind; text: string }[] = [];
  if (hasNonAscii(text)) {
    const stripped = stripHidden(text, hidden);
    text = foldText(stripped.text);
    if (stripped.tagText.length > 0) nested.push({ kind: "tags", text: stripped.tagText });
    if (stripped.selectorBytes.length > 0) {
      nested.push({ kind: "selectors", text: utf8.decode(Uint8Array.from(stripped.selectorBytes)) });
    }
  }
  layers.push({ kind, depth, text });
  if (depth < limits.maxDepth) {
    // Collect first: decoding recurses, and the regexes below are shared.
    for (const run of encodedRuns(text)) {
      const hex = run.startsWith("0x") || run.startsWith("0X") ? run.slice(2) : run;
      if (hex.length >= 16 && HEX_ONLY.test(hex)) nested.push({ kind: "hex", text: hex });
      else if (HAS_UPPER.test(run) && HAS_LOWER.test(run)) nested.push({ kind: "base64", text: run });
    }
    if (text.includes("%")) {
      for (const t of tokensWith(text, PERCENT, 2, limits.maxCandidateChars)) {
        nested.push({ kind: "percent", text: t });
      }
    }
    if (text.includes("\\x") || text.includes("\\u") || text.includes("&#")) {
      for (const t of tokensWith(text, ESCAPE, 3, limits.maxCandidateChars)) {
        nested.push({ kind: "escape", text: t });
      }
    }
  } else if (text.includes("%") || encodedRuns(text).length > 0) {
    budget.truncated = true;
  }
  for (const n of nested) {
    if (budget.left <= 0) {
      budget.truncated = true;
      return;
    }
    const source = take(budget, n.text, limits);
    let decoded: string | undefined;
    switch (n.kind) {
      case "hex":
        decoded = decodeHex(source);
        break;
      case "base64":
        decoded = decodeBase64(source);
        break;
      case "percent":
        decoded = decodePercent(source);
        break;
      case "escape":
        decoded = decodeEscapes(source);
        break;
      default:
        // Hidden payloads (tags, selectors) were invisible rather than encoded: already text.
        decoded = source;
    }
    if (decoded === undefined || decoded.length === 0) continue;
    budget.left -= decoded.length;
    visit(decoded, n.kind, depth + 1, limits, hidden, layers, budget);
  }
}
