/**
 * What DLP reads besides the raw text (security review F12): the text with invisible characters
 * removed and compatibility forms folded (a key split by zero-width spaces, written in full-width
 * letters or with Cyrillic lookalikes), and encoded tokens decoded (base64, hex, percent-encoding),
 * so a secret is found whichever of these it hides behind.
 *
 * The folded view keeps, for each of its characters, where it came from in the raw text, so a
 * match redacts exactly the raw characters it was read from (the zero-width ones inside included).
 * An encoded token that decodes to text with a secret in it is reported, and redacted, whole.
 * All of it is linear: each raw character is folded once, encoded tokens are found by probing
 * every 16th character, and decoding only shrinks the text (depth-limited by the caller).
 */

import { foldText, hasNonAscii } from "./normalize.js";

/**
 * The folded text and where each of its characters was read from in the raw text. Stretches the
 * fold leaves alone map one to one; only the runs it changed carry a table.
 */
export interface FoldedView {
  text: string;
  /** Start (in the view) of each piece, ascending. */
  viewStarts: number[];
  pieces: Piece[];
}

interface Piece {
  view: number;
  raw: number;
  /** For a folded run: per view character, the raw range it came from. */
  starts?: number[];
  ends?: number[];
}

/** Where view character `v` starts in the raw text. */
export function rawStart(view: FoldedView, v: number): number {
  const p = view.pieces[pieceAt(view, v)]!;
  return p.starts ? p.starts[v - p.view]! : p.raw + (v - p.view);
}

/** Where view character `v` ends in the raw text. */
export function rawEnd(view: FoldedView, v: number): number {
  const p = view.pieces[pieceAt(view, v)]!;
  return p.ends ? p.ends[v - p.view]! : p.raw + (v - p.view) + 1;
}

function pieceAt(view: FoldedView, v: number): number {
  let lo = 0;
  let hi = view.viewStarts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (view.viewStarts[mid]! <= v) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/**
 * Characters that render as nothing: soft hyphen, Mongolian vowel separator, zero-width space,
 * non-joiner and joiner, direction marks and controls, word joiner and invisible operators, BOM,
 * variation selectors and Unicode tags. Removed from the folded view.
 */
function isHidden(cp: number): boolean {
  return (
    cp === 0xad ||
    cp === 0x180e ||
    (cp >= 0x200b && cp <= 0x200f) ||
    (cp >= 0x202a && cp <= 0x202e) ||
    (cp >= 0x2060 && cp <= 0x2064) ||
    (cp >= 0x2066 && cp <= 0x2069) ||
    cp === 0xfeff ||
    (cp >= 0xfe00 && cp <= 0xfe0f) ||
    (cp >= 0xe0000 && cp <= 0xe007f) ||
    (cp >= 0xe0100 && cp <= 0xe01ef)
  );
}

// The class lists joiners and variation selectors on purpose: they are what is removed.
const HIDDEN =
  // eslint-disable-next-line no-misleading-character-class
  /[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\ufe00-\ufe0f\u{e0000}-\u{e007f}\u{e0100}-\u{e01ef}]/u;

/**
 * Lookalikes the fold maps to Latin letters (normalize.ts's table, read back through foldText
 * over the scripts it covers), and a test for one touching an ASCII letter or digit: a Cyrillic
 * "А" inside "АKIA…" is folded, while Russian prose, which folds to no secret, costs nothing.
 */
const LOOKALIKES = (() => {
  const out: string[] = [];
  const ranges = [
    [0x0130, 0x0262],
    [0x0370, 0x058f],
  ];
  for (const [from, to] of ranges) {
    for (let cp = from!; cp <= to!; cp++) {
      const ch = String.fromCodePoint(cp);
      const folded = foldText(ch);
      if (folded !== ch.normalize("NFKC") && /^[A-Za-z]$/.test(folded)) out.push(ch);
    }
  }
  return out.join("");
})();
const GLUED_LOOKALIKE = new RegExp(`[A-Za-z0-9][${LOOKALIKES}]|[${LOOKALIKES}][A-Za-z0-9]`);

/** Folded form of one code point (NFKC, then the lookalike table), memoised. */
const foldCache = new Map<number, string>();
function foldCodePoint(cp: number): string {
  let f = foldCache.get(cp);
  if (f === undefined) {
    f = isHidden(cp) ? "" : foldText(String.fromCodePoint(cp));
    if (foldCache.size >= 8192) foldCache.clear();
    foldCache.set(cp, f);
  }
  return f;
}

// eslint-disable-next-line no-control-regex
const NON_ASCII_RUN = /[^\x00-\x7f]+/g;
const LOOKALIKE_ANY = new RegExp(`[${LOOKALIKES}]`);

function isAsciiAlnum(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
}

/**
 * The folded view of `raw`, or undefined when folding changes nothing (ASCII text, or non-ASCII
 * text with nothing hidden, nothing compatibility-decomposed and no lookalike inside a Latin
 * word). Only the non-ASCII runs that change are folded character by character.
 */
export function foldedView(raw: string): FoldedView | undefined {
  if (!hasNonAscii(raw)) return undefined;
  // Most non-ASCII text (prose in other scripts) folds to itself: found with native string
  // operations, before any per-character work.
  if (!HIDDEN.test(raw) && !GLUED_LOOKALIKE.test(raw) && raw.normalize("NFKC") === raw) return undefined;
  const parts: string[] = [];
  const viewStarts: number[] = [0];
  const pieces: Piece[] = [{ view: 0, raw: 0 }];
  let rawFrom = 0;
  let length = 0;
  NON_ASCII_RUN.lastIndex = 0;
  let m: RegExpExecArray | null;
  while ((m = NON_ASCII_RUN.exec(raw)) !== null) {
    const run = m[0];
    const start = m.index;
    const end = start + run.length;
    const touchesLatin = isAsciiAlnum(raw.charCodeAt(start - 1)) || isAsciiAlnum(raw.charCodeAt(end));
    if (!HIDDEN.test(run) && run.normalize("NFKC") === run && !(touchesLatin && LOOKALIKE_ANY.test(run)))
      continue;
    // The identity stretch before this run, then the run folded code point by code point.
    parts.push(raw.slice(rawFrom, start));
    length += start - rawFrom;
    const starts: number[] = [];
    const ends: number[] = [];
    let folded = "";
    for (let i = start; i < end;) {
      const cp = raw.codePointAt(i)!;
      const width = cp > 0xffff ? 2 : 1;
      const f = foldCodePoint(cp);
      for (let k = 0; k < f.length; k++) {
        starts.push(i);
        ends.push(i + width);
      }
      folded += f;
      i += width;
    }
    parts.push(folded);
    pieces.push({ view: length, raw: start, starts, ends });
    viewStarts.push(length);
    length += folded.length;
    pieces.push({ view: length, raw: end });
    viewStarts.push(length);
    rawFrom = end;
  }
  NON_ASCII_RUN.lastIndex = 0;
  if (pieces.length === 1) return undefined;
  parts.push(raw.slice(rawFrom));
  return { text: parts.join(""), viewStarts, pieces };
}

// ------------------------------------------------------------------ encoded tokens

export type Encoding = "base64" | "hex" | "percent";

export interface EncodedToken {
  encoding: Encoding;
  start: number;
  end: number;
}

const B64 = new Uint8Array(128);
for (const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-")
  B64[c.charCodeAt(0)] = 1;
const HEX = new Uint8Array(128);
for (const c of "0123456789abcdefABCDEF") HEX[c.charCodeAt(0)] = 1;

/** Shortest encoded token worth decoding: base64 of a 15-byte secret. */
const MIN_ENCODED = 20;

function isB64(c: number): boolean {
  return c < 128 && B64[c] === 1;
}

/**
 * Base64 and hex tokens of at least MIN_ENCODED characters (plus `=` padding), and tokens with
 * percent escapes. A run that long covers one of every MIN_ENCODED-th index, so only those are
 * probed and the run is expanded around a hit.
 */
export function encodedTokens(text: string): EncodedToken[] {
  const out: EncodedToken[] = [];
  const n = text.length;
  let i = MIN_ENCODED - 1;
  let floor = 0;
  while (i < n) {
    if (!isB64(text.charCodeAt(i))) {
      i += MIN_ENCODED;
      continue;
    }
    let s = i;
    while (s > floor && isB64(text.charCodeAt(s - 1))) s--;
    let e = i + 1;
    while (e < n && isB64(text.charCodeAt(e))) e++;
    if (e - s >= MIN_ENCODED) {
      let end = e;
      while (end < n && end - e < 2 && text.charCodeAt(end) === 61) end++;
      out.push({ encoding: allHex(text, s, e) ? "hex" : "base64", start: s, end });
      floor = end;
    }
    i = e + MIN_ENCODED;
  }
  let pct = text.indexOf("%");
  let tokenEnd = -1;
  while (pct >= 0 && pct + 2 < n) {
    if (pct >= tokenEnd && HEX[text.charCodeAt(pct + 1)] === 1 && HEX[text.charCodeAt(pct + 2)] === 1) {
      let s = pct;
      while (s > 0 && s > tokenEnd && pct - s < 4096 && !isDelimiter(text.charCodeAt(s - 1))) s--;
      let e = pct + 3;
      while (e < n && e - pct < 4096 && !isDelimiter(text.charCodeAt(e))) e++;
      out.push({ encoding: "percent", start: s, end: e });
      tokenEnd = e;
    }
    pct = text.indexOf("%", Math.max(pct + 1, tokenEnd));
  }
  return out;
}

function allHex(text: string, from: number, to: number): boolean {
  for (let k = from; k < to; k++) if (HEX[text.charCodeAt(k)] !== 1) return false;
  return true;
}

function isDelimiter(c: number): boolean {
  return c <= 32 || c === 34 || c === 39 || c === 96 || c === 60 || c === 62;
}

const utf8 = new TextDecoder("utf-8", { fatal: false });

/** Share of bytes that are printable ASCII (or tab, CR, LF). */
function printable(bytes: Uint8Array): number {
  let good = 0;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    if ((b >= 32 && b < 127) || b === 9 || b === 10 || b === 13) good++;
  }
  return bytes.length === 0 ? 0 : good / bytes.length;
}

/** Mostly printable ASCII: what a secret decodes to (binary and compressed data do not). */
function looksLikeText(bytes: Uint8Array): boolean {
  return bytes.length >= 8 && printable(bytes) >= 0.9;
}

/** Node's base64 decoder reads the URL alphabet (`-`, `_`) as well. */
function base64Bytes(s: string): Uint8Array {
  return Buffer.from(s, "base64");
}

const B64_VALUE = new Int8Array(128).fill(-1);
for (let i = 0; i < 64; i++) {
  B64_VALUE["ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".charCodeAt(i)] = i;
}
B64_VALUE[45] = 62;
B64_VALUE[95] = 63;

/**
 * Share of printable bytes in the first 24 bytes that `raw` from `offset` decodes to, without
 * allocating: most tokens are rejected here.
 */
function headPrintable(raw: string, offset: number): number {
  let good = 0;
  let total = 0;
  const end = Math.min(raw.length, offset + 32) - 3;
  for (let i = offset; i < end; i += 4) {
    const a = B64_VALUE[raw.charCodeAt(i)]!;
    const b = B64_VALUE[raw.charCodeAt(i + 1)]!;
    const c = B64_VALUE[raw.charCodeAt(i + 2)]!;
    const d = B64_VALUE[raw.charCodeAt(i + 3)]!;
    if ((a | b | c | d) < 0) break;
    const bytes = [(a << 2) | (b >> 4), ((b & 15) << 4) | (c >> 2), ((c & 3) << 6) | d];
    for (const x of bytes) {
      total++;
      if ((x >= 32 && x < 127) || x === 9 || x === 10 || x === 13) good++;
    }
  }
  return total === 0 ? 0 : good / total;
}

function hexHeadPrintable(raw: string): number {
  let good = 0;
  let total = 0;
  for (let i = 0; i + 1 < raw.length && i < 32; i += 2) {
    const x = parseInt(raw.slice(i, i + 2), 16);
    total++;
    if ((x >= 32 && x < 127) || x === 9 || x === 10 || x === 13) good++;
  }
  return total === 0 ? 0 : good / total;
}

/** The decoded text of an encoded token, or undefined when it does not decode to text. */
export function decodeToken(text: string, token: EncodedToken): string | undefined {
  const raw = text.slice(token.start, token.end);
  let bytes: Uint8Array | undefined;
  if (token.encoding === "hex") {
    if (hexHeadPrintable(raw) < 0.75) return undefined;
    bytes = Buffer.from(raw.length % 2 === 0 ? raw : raw.slice(0, -1), "hex");
  } else if (token.encoding === "base64") {
    // Base64 of text has upper and lower case letters; a long all-lower or all-upper word does not
    // decode to anything worth reading.
    if (!/[A-Z]/.test(raw) || !/[a-z]/.test(raw)) return undefined;
    // Each of the four alignments (a token glued to a word has a few characters too many in
    // front), head first: most base64-alphabet runs (paths, identifiers, hashes) are not base64
    // of text, and a short head tells.
    for (let offset = 0; offset < 4 && bytes === undefined; offset++) {
      if (headPrintable(raw, offset) < 0.75) continue;
      const all = base64Bytes(raw.slice(offset));
      if (looksLikeText(all)) bytes = all;
    }
    if (bytes === undefined) return undefined;
  } else {
    bytes = percentBytes(raw);
  }
  if (!looksLikeText(bytes)) return undefined;
  return utf8.decode(bytes);
}

/**
 * The parts of a base64-alphabet token between `/`, `-` and `_`, of decodable length (hex or base64): a base64
 * value at the end of a path (`docs://public/<base64>`) or after an identifier (`key-<base64>`)
 * is read with the path or identifier as one token, which does not decode.
 */
export function tokenParts(text: string, token: EncodedToken): EncodedToken[] {
  const out: EncodedToken[] = [];
  let from = token.start;
  for (let i = token.start; i <= token.end; i++) {
    const c = i < token.end ? text.charCodeAt(i) : 47;
    if (c !== 47 && c !== 45 && c !== 95) continue;
    if (from > token.start || i < token.end) {
      if (i - from >= MIN_ENCODED)
        out.push({ encoding: allHex(text, from, i) ? "hex" : "base64", start: from, end: i });
    }
    from = i + 1;
  }
  return out;
}

function percentBytes(s: string): Uint8Array {
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 37 && i + 2 < s.length && HEX[s.charCodeAt(i + 1)] === 1 && HEX[s.charCodeAt(i + 2)] === 1) {
      bytes.push(parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (c === 43) bytes.push(32);
    else if (c < 0x80) bytes.push(c);
    else for (const b of Buffer.from(s[i]!, "utf8")) bytes.push(b);
  }
  return Uint8Array.from(bytes);
}
