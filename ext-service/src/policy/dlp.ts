/**
 * Data-loss prevention: secrets (well over a hundred token formats of AI providers, registries,
 * code hosts, clouds, messaging, payments, observability and secrets managers, database URLs,
 * private keys, JWTs, values assigned to secret-like keywords) and PII (email, phone, payment card
 * with Luhn, IBAN with mod-97, US SSN, UK NINO).
 *
 * The anchored secret kinds (secret-kinds.ts) share one walk over the text; the few others have a
 * cheap prefilter (a literal or a character test). Regexes follow the same discipline as
 * injection.ts: no nested quantifiers, bounded repetition, literal-led patterns where possible.
 * Hidden characters, compatibility forms and encodings are handled in dlp-layers.ts.
 */

import { AnchorAutomaton } from "./anchors.js";
import {
  decodeToken,
  encodedTokens,
  foldedView,
  rawEnd,
  rawStart,
  tokenParts,
  type EncodedToken,
} from "./dlp-layers.js";
import {
  ANCHORED_SECRET_KINDS,
  KEYED_PATTERNS,
  newScanState,
  registerSecretKinds,
  type ScanState,
  type SecretFamily,
} from "./secret-kinds.js";

export { entropy } from "./secret-kinds.js";

export type DlpCategory = "secret" | "pii";

export interface DlpMatch {
  kind: string;
  category: DlpCategory;
  start: number;
  end: number;
}

/**
 * Work a scan did, counted where the detectors loop in code (regex calls, candidates validated,
 * characters stepped over), so tests can bound the cost per character without a clock.
 */
export interface ScanMeter {
  steps: number;
}

interface Detector {
  kind: string;
  category: DlpCategory;
  /** Cheap test; when false the detector cannot match. */
  maybe(text: string, hints: Hints): boolean;
  find(text: string, out: DlpMatch[], meter: ScanMeter): void;
  /** The regexes the detector runs, for the backtracking tests. */
  patterns: RegExp[];
}

/** Facts about a text computed once and shared by the prefilters. */
interface Hints {
  digits: boolean;
  at: boolean;
}

const DIGIT = /[0-9]/;

function regexDetector(
  kind: string,
  category: DlpCategory,
  pattern: RegExp,
  options: {
    maybe?: (text: string, hints: Hints) => boolean;
    /** Capture group holding the part to redact (default: the whole match). */
    group?: number;
    valid?: (value: string, match: RegExpExecArray, text: string) => boolean;
  } = {},
): Detector {
  if (!pattern.global) throw new Error(`detector ${kind}: pattern must be global`);
  return {
    kind,
    category,
    patterns: [pattern],
    maybe: options.maybe ?? (() => true),
    find(text, out, meter) {
      pattern.lastIndex = 0;
      let m: RegExpExecArray | null;
      while ((m = pattern.exec(text)) !== null) {
        meter.steps++;
        if (m[0].length === 0) {
          pattern.lastIndex++;
          continue;
        }
        const g = options.group ?? 0;
        const value = m[g];
        if (value === undefined) continue;
        if (options.valid && !options.valid(value, m, text)) continue;
        const start = g === 0 ? m.index : m.index + m[0].lastIndexOf(value);
        out.push({ kind, category, start, end: start + value.length });
      }
      pattern.lastIndex = 0;
    },
  };
}

export function luhnValid(digits: string): boolean {
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return false;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return sum % 10 === 0;
}

/** Bit `n - 13` set for each card length n in `from`..`to`. */
function lengths(from: number, to: number): number {
  let mask = 0;
  for (let n = from; n <= to; n++) mask |= 1 << (n - 13);
  return mask;
}
const VISA = lengths(13, 13) | lengths(16, 16) | lengths(19, 19);

/**
 * Issuer prefixes of the major card networks: the card lengths (bit n - 13 for length n) a
 * number starting with these digits (at least six) may have; 0 when no network issues it.
 */
function cardNetworkLengths(d: string): number {
  const p2 = Number(d.slice(0, 2));
  const p3 = Number(d.slice(0, 3));
  const p4 = Number(d.slice(0, 4));
  const p6 = Number(d.slice(0, 6));
  if (d[0] === "4") return VISA;
  if ((p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720)) return lengths(16, 16); // Mastercard
  if (p2 === 34 || p2 === 37) return lengths(15, 15); // Amex
  if (p4 === 6011 || p2 === 65 || (p3 >= 644 && p3 <= 649) || (p6 >= 622126 && p6 <= 622925))
    return lengths(16, 19); // Discover
  if (p4 >= 3528 && p4 <= 3589) return lengths(16, 19); // JCB
  if (p2 === 36 || p2 === 38 || (p3 >= 300 && p3 <= 305)) return lengths(14, 19); // Diners
  if (p2 === 62) return lengths(16, 19); // UnionPay
  return 0;
}

function cardNetwork(d: string): boolean {
  return d.length >= 13 && d.length <= 19 && ((cardNetworkLengths(d) >> (d.length - 13)) & 1) === 1;
}

/** A card number: 13-19 digits, consistent separators, a known network prefix, Luhn-valid. */
export function isCardNumber(candidate: string): boolean {
  const seps = candidate.replace(/[0-9]/g, "");
  if (seps.length > 0) {
    if (!/^(?: +|-+)$/.test(seps) || /[ -]{2}/.test(candidate)) return false;
  }
  return isCardDigits(candidate.replace(/[ -]/g, ""));
}

const IBAN_LENGTHS: Readonly<Record<string, number>> = Object.freeze({
  AD: 24,
  AE: 23,
  AL: 28,
  AT: 20,
  AZ: 28,
  BA: 20,
  BE: 16,
  BG: 22,
  BH: 22,
  BR: 29,
  CH: 21,
  CR: 22,
  CY: 28,
  CZ: 24,
  DE: 22,
  DK: 18,
  DO: 28,
  EE: 20,
  EG: 29,
  ES: 24,
  FI: 18,
  FO: 18,
  FR: 27,
  GB: 22,
  GE: 22,
  GI: 23,
  GL: 18,
  GR: 27,
  GT: 28,
  HR: 21,
  HU: 28,
  IE: 22,
  IL: 23,
  IQ: 23,
  IS: 26,
  IT: 27,
  JO: 30,
  KW: 30,
  KZ: 20,
  LB: 28,
  LC: 32,
  LI: 21,
  LT: 20,
  LU: 20,
  LV: 21,
  MC: 27,
  MD: 24,
  ME: 22,
  MK: 19,
  MR: 27,
  MT: 31,
  MU: 30,
  NL: 18,
  NO: 15,
  PK: 24,
  PL: 28,
  PS: 29,
  PT: 25,
  QA: 29,
  RO: 24,
  RS: 22,
  SA: 24,
  SC: 31,
  SE: 24,
  SI: 19,
  SK: 24,
  SM: 27,
  TL: 23,
  TN: 24,
  TR: 26,
  UA: 29,
  VA: 22,
  VG: 24,
  XK: 20,
});

/** ISO 13616 check: move the first four characters to the end, letters to numbers, mod 97 = 1. */
export function ibanValid(iban: string): boolean {
  const s = iban.toUpperCase();
  if (IBAN_LENGTHS[s.slice(0, 2)] !== s.length) return false;
  const rearranged = s.slice(4) + s.slice(0, 4);
  let rem = 0;
  for (const ch of rearranged) {
    const c = ch.charCodeAt(0);
    const v = c >= 65 && c <= 90 ? String(c - 55) : ch;
    for (const d of v) rem = (rem * 10 + (d.charCodeAt(0) - 48)) % 97;
  }
  return rem === 1;
}

function ssnValid(_v: string, m: RegExpExecArray): boolean {
  const area = m[1]!;
  const group = m[2]!;
  const serial = m[3]!;
  if (area === "000" || area === "666" || area[0] === "9") return false;
  if (group === "00" || serial === "0000") return false;
  // Widely published sample numbers.
  return !(area === "078" && group === "05" && serial === "1120");
}

const NINO_BAD_PREFIX = new Set(["BG", "GB", "NK", "KN", "TN", "NT", "ZZ"]);

const LOCAL_CHARS = /[A-Za-z0-9._%+-]/;
const DOMAIN_CHARS = /[A-Za-z0-9.-]/;

/** Email addresses, found from each '@' outwards so the scan stays linear. */
const emailDetector: Detector = {
  kind: "email",
  category: "pii",
  patterns: [],
  maybe: (_t, h) => h.at,
  find(text, out, meter) {
    let at = text.indexOf("@");
    let floor = 0;
    while (at >= 0) {
      let s = at;
      while (s > floor && at - s < 64 && LOCAL_CHARS.test(text[s - 1]!)) s--;
      let e = at + 1;
      while (e < text.length && e - at <= 253 && DOMAIN_CHARS.test(text[e]!)) e++;
      meter.steps += 1 + (at - s) + (e - at);
      // Trim trailing dots and hyphens from the domain (end of sentence).
      while (e > at + 1 && (text[e - 1] === "." || text[e - 1] === "-")) e--;
      const local = text.slice(s, at);
      const domain = text.slice(at + 1, e);
      const dot = domain.lastIndexOf(".");
      const tld = dot >= 0 ? domain.slice(dot + 1) : "";
      if (
        local.length > 0 &&
        !local.startsWith(".") &&
        dot > 0 &&
        /^[A-Za-z]{2,24}$/.test(tld) &&
        !domain.includes("..") &&
        local !== "git"
      ) {
        out.push({ kind: "email", category: "pii", start: s, end: e });
        floor = e;
      }
      at = text.indexOf("@", Math.max(at + 1, floor));
    }
  },
};

/** Private key blocks, from the BEGIN line to the END line (or to the end of the base64 body). */
const PRIVATE_KEY_HEADER = /-----BEGIN [A-Z0-9 ]{0,30}PRIVATE KEY(?: BLOCK)?-----/g;
const privateKeyDetector: Detector = {
  kind: "private_key",
  category: "secret",
  patterns: [PRIVATE_KEY_HEADER],
  maybe: (t) => t.includes("-----BEGIN"),
  find(text, out, meter) {
    PRIVATE_KEY_HEADER.lastIndex = 0;
    // The next END marker at or after the current body, found once and reused: searched again
    // for every header, a text of headers without an END was read to its end once per header.
    let endMarker = -2;
    let m: RegExpExecArray | null;
    while ((m = PRIVATE_KEY_HEADER.exec(text)) !== null) {
      meter.steps++;
      const start = m.index;
      const bodyStart = start + m[0].length;
      if (endMarker !== -1 && endMarker < bodyStart) endMarker = text.indexOf("-----END ", bodyStart);
      let end: number;
      if (endMarker >= 0 && endMarker - bodyStart <= 65_536) {
        const close = text.indexOf("-----", endMarker + 9);
        end = close >= 0 && close - endMarker < 64 ? close + 5 : endMarker + 9;
      } else {
        end = bodyStart;
        while (end < text.length && end - bodyStart <= 65_536 && /[A-Za-z0-9+/=\s:-]/.test(text[end]!)) end++;
      }
      meter.steps += end - bodyStart;
      out.push({ kind: "private_key", category: "secret", start, end });
      PRIVATE_KEY_HEADER.lastIndex = end;
    }
    PRIVATE_KEY_HEADER.lastIndex = 0;
  },
};

/** Longest text a card candidate spans, first digit to last (13 to 19 digits, single separators). */
const CARD_MAX_SPAN = 32;
/** The shortest card number (cardsInRun tries 13 to 19 digits). */
const CARD_MIN_DIGITS = 13;

function isDigitCode(c: number): boolean {
  return c >= 48 && c <= 57;
}

function isWordCode(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95;
}

/** A card may start after anything but a word character, `.`, `,`, `/` or `-` (no decimals, paths, ids). */
function cardMayStartAfter(c: number): boolean {
  return !(isWordCode(c) || c === 46 || c === 44 || c === 47 || c === 45);
}

/**
 * Payment cards in one pass over the digit groups. A run is digit groups joined by single spaces
 * or hyphens; a card is consecutive groups of one run with one separator kind, 13 to 19 digits,
 * at most CARD_MAX_SPAN characters, a known network and a valid Luhn sum. From the first group
 * that may start one, the longest such card is taken (so "qty 2 4111 1111 1111 1111" finds the
 * card after the 2), and the scan goes on after it. Each group starts at most one window of at
 * most CARD_MAX_SPAN characters: the cost per character is bounded, whatever the digits.
 */
function findCards(text: string, out: DlpMatch[], meter: ScanMeter): void {
  const run: CardRun = { starts: [], ends: [], firstDigit: [], digits: [] };
  const n = text.length;
  let i = 0;
  while (i < n) {
    if (!isDigitCode(text.charCodeAt(i))) {
      i++;
      continue;
    }
    // Most digit runs (ids, dates, counts) hold fewer digits than any card number: measured
    // first, without collecting them, they cost no array work.
    let end = i;
    let count = 0;
    for (;;) {
      while (end < n && isDigitCode(text.charCodeAt(end))) {
        count++;
        end++;
      }
      const sep = text.charCodeAt(end);
      if ((sep === 32 || sep === 45) && end + 1 < n && isDigitCode(text.charCodeAt(end + 1))) end++;
      else break;
    }
    if (count < CARD_MIN_DIGITS) {
      meter.steps += end - i;
      i = end;
      continue;
    }
    // Collect one run: its groups, and all its digits with each group's offset among them.
    run.starts.length = 0;
    run.ends.length = 0;
    run.firstDigit.length = 0;
    run.digits.length = 0;
    let p = i;
    for (;;) {
      run.starts.push(p);
      run.firstDigit.push(run.digits.length);
      let c: number;
      while (p < n && isDigitCode((c = text.charCodeAt(p)))) {
        run.digits.push(c - 48);
        p++;
      }
      run.ends.push(p);
      const sep = text.charCodeAt(p);
      if ((sep === 32 || sep === 45) && p + 1 < n && isDigitCode(text.charCodeAt(p + 1))) p++;
      else break;
    }
    run.firstDigit.push(run.digits.length);
    meter.steps += p - i;
    cardsInRun(text, run, out, meter);
    i = p;
  }
}

interface CardRun {
  starts: number[];
  ends: number[];
  /** Index in `digits` of each group's first digit, and one past the last group. */
  firstDigit: number[];
  digits: number[];
}

function cardsInRun(text: string, run: CardRun, out: DlpMatch[], meter: ScanMeter): void {
  const { starts, ends, firstDigit, digits } = run;
  const groups = starts.length;
  let g = 0;
  while (g < groups) {
    const first = starts[g]!;
    if (first > 0 && !cardMayStartAfter(text.charCodeAt(first - 1))) {
      g++;
      continue;
    }
    // The furthest group the window may reach: within the span, one separator kind throughout.
    const sep = g + 1 < groups ? text.charCodeAt(ends[g]!) : 0;
    let last = g;
    while (
      last + 1 < groups &&
      ends[last + 1]! - first <= CARD_MAX_SPAN &&
      text.charCodeAt(ends[last]!) === sep
    )
      last++;
    const from = firstDigit[g]!;
    meter.steps += last - g + 1;
    // The issuer prefix decides which lengths can be cards: most digit runs have none.
    const allowed = firstDigit[last + 1]! - from >= 13 ? cardNetworkLengthsAt(digits, from) : 0;
    let found = -1;
    for (let j = last; j >= g && allowed !== 0; j--) {
      const count = firstDigit[j + 1]! - from;
      if (count < 13) break;
      if (count > 19 || ((allowed >> (count - 13)) & 1) === 0) continue;
      const end = ends[j]!;
      if (end - first > CARD_MAX_SPAN || (end < text.length && isWordCode(text.charCodeAt(end)))) continue;
      meter.steps += count;
      if (!sameDigit(digits, from, count) && luhnAt(digits, from, count)) {
        found = j;
        break;
      }
    }
    if (found < 0) {
      g++;
      continue;
    }
    out.push({ kind: "payment_card", category: "pii", start: first, end: ends[found]! });
    g = found + 1;
  }
}

function cardNetworkLengthsAt(digits: readonly number[], from: number): number {
  let prefix = "";
  for (let k = from; k < from + 6; k++) prefix += String(digits[k]);
  return cardNetworkLengths(prefix);
}

function sameDigit(digits: readonly number[], from: number, count: number): boolean {
  for (let k = from + 1; k < from + count; k++) if (digits[k] !== digits[from]) return false;
  return true;
}

function luhnAt(digits: readonly number[], from: number, count: number): boolean {
  let sum = 0;
  let double = false;
  for (let k = from + count - 1; k >= from; k--) {
    let d = digits[k]!;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return sum % 10 === 0;
}

/** 13 to 19 digits, not one digit repeated, of a known network, with a valid Luhn sum. */
function isCardDigits(digits: string): boolean {
  if (digits.length < 13 || digits.length > 19) return false;
  if (/^(\d)\1+$/.test(digits)) return false;
  return cardNetwork(digits) && luhnValid(digits);
}

const cardDetector: Detector = {
  kind: "payment_card",
  category: "pii",
  patterns: [],
  maybe: (_t, h) => h.digits,
  find: findCards,
};

const IBAN_CANDIDATE = /(?<![A-Za-z0-9])[A-Z]{2}[0-9]{2}[A-Z0-9 ]{10,40}/g;
const ibanDetector: Detector = {
  kind: "iban",
  category: "pii",
  patterns: [IBAN_CANDIDATE],
  maybe: (_t, h) => h.digits,
  find(text, out, meter) {
    IBAN_CANDIDATE.lastIndex = 0;
    let m: RegExpExecArray | null;
    while ((m = IBAN_CANDIDATE.exec(text)) !== null) {
      const cand = m[0];
      meter.steps += 1 + cand.length;
      const len = IBAN_LENGTHS[cand.slice(0, 2)];
      if (len === undefined) {
        IBAN_CANDIDATE.lastIndex = m.index + 2;
        continue;
      }
      // Take exactly `len` alphanumerics, allowing single spaces between them (print format).
      let compact = "";
      let i = 0;
      for (; i < cand.length && compact.length < len; i++) {
        const c = cand[i]!;
        if (c === " ") {
          if (cand[i + 1] === " " || compact.length === 0) break;
          continue;
        }
        compact += c;
      }
      const after = m.index + i;
      if (compact.length === len && !/[A-Za-z0-9]/.test(text[after] ?? "") && ibanValid(compact)) {
        out.push({ kind: "iban", category: "pii", start: m.index, end: after });
        IBAN_CANDIDATE.lastIndex = after;
      } else {
        IBAN_CANDIDATE.lastIndex = m.index + 2;
      }
    }
    IBAN_CANDIDATE.lastIndex = 0;
  },
};

function isBase64UrlCode(c: number): boolean {
  return isWordCode(c) || c === 45;
}

/**
 * JWTs: `eyJ<header>.eyJ<payload>.<signature>` in base64url, found from each ".eyJ" so the scan
 * stays linear. (As a regex, `\beyJ[A-Za-z0-9_-]{10,4096}\.` retried its 4096 characters at every
 * "eyJ" after a '-': about 17 us per character on "eyJ-eyJ-...".) Header, payload and signature
 * are the whole base64url runs around the dots, with the lengths the regex allowed (header 13 to
 * 4099 characters from the earliest "eyJ" that starts a word, payload 13 to 16387, signature at
 * least 10 and at most 4096 taken).
 */
const jwtDetector: Detector = {
  kind: "jwt",
  category: "secret",
  patterns: [],
  maybe: (t) => t.includes(".eyJ"),
  find(text, out, meter) {
    let from = 0;
    for (;;) {
      const dot = text.indexOf(".eyJ", from);
      if (dot < 0) return;
      from = dot + 1;
      meter.steps++;
      // Header: back from the dot over base64url, no further than its longest form.
      let h = dot;
      while (h > 0 && dot - h < 4099 && isBase64UrlCode(text.charCodeAt(h - 1))) h--;
      // Payload: the whole run after the dot, then a dot.
      let p = dot + 1;
      while (p < text.length && p - dot <= 16388 && isBase64UrlCode(text.charCodeAt(p))) p++;
      // Signature: at least 10 characters, at most 4096 taken.
      let sig = p + 1;
      while (sig < text.length && sig - p <= 4096 && isBase64UrlCode(text.charCodeAt(sig))) sig++;
      meter.steps += dot - h + (sig - dot);
      const payload = p - (dot + 1);
      if (text.charCodeAt(p) !== 46 || payload < 13 || payload > 16387 || sig - (p + 1) < 10) continue;
      // The earliest "eyJ" at a word start that leaves a header of 10 to 4096 after it.
      let start = -1;
      for (let q = text.indexOf("eyJ", h); q >= 0 && q <= dot - 13; q = text.indexOf("eyJ", q + 1)) {
        meter.steps++;
        if (q === 0 || !isWordCode(text.charCodeAt(q - 1))) {
          start = q;
          break;
        }
      }
      if (start < 0) continue;
      out.push({ kind: "jwt", category: "secret", start, end: sig });
      from = sig;
    }
  },
};

const DETECTORS: readonly Detector[] = [
  // --- secrets found by structure rather than an anchor of the automaton
  privateKeyDetector,
  jwtDetector,
  // --- PII
  emailDetector,
  regexDetector(
    "phone",
    "pii",
    /(?<![\w+.-])(?:\+[1-9][0-9]{0,2}[ .-]?)?(?:\([0-9]{2,4}\)[ .-]?|[0-9]{2,4}[ .-])[0-9]{3,4}[ .-][0-9]{3,4}(?![\w-]|\.[0-9])|(?<![\w+])\+[1-9][0-9]{9,14}(?![\w-]|\.[0-9])/g,
    {
      maybe: (_t, h) => h.digits,
      valid: (v) => {
        const digits = v.replace(/[^0-9]/g, "");
        if (digits.length < 10 || digits.length > 15) return false;
        // Dates and version-like numbers written with dots or dashes in 4-2-2 shape are not phones.
        return !/^[0-9]{4}[.-][0-9]{2}[.-][0-9]{2}$/.test(v);
      },
    },
  ),
  cardDetector,
  ibanDetector,
  regexDetector("us_ssn", "pii", /(?<![0-9-])([0-9]{3})-([0-9]{2})-([0-9]{4})(?![0-9-])/g, {
    maybe: (_t, h) => h.digits,
    valid: ssnValid,
  }),
  regexDetector(
    "uk_nino",
    "pii",
    /\b([A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]) ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-D]\b/g,
    { maybe: (_t, h) => h.digits, valid: (_v, m) => !NINO_BAD_PREFIX.has(m[1]!) },
  ),
];

/** One row of the DLP kinds table (docs/SECURITY.md is generated from these). */
export interface DlpKindInfo {
  kind: string;
  category: DlpCategory;
  family: SecretFamily | "personal data";
  format: string;
  redacts: string;
}

const STRUCTURAL_KINDS: readonly DlpKindInfo[] = [
  {
    kind: "private_key",
    category: "secret",
    family: "keys and tokens",
    format:
      "`-----BEGIN … PRIVATE KEY-----` (PEM, OpenSSH, PGP) to the END line or the end of the base64 body",
    redacts: "the key block",
  },
  {
    kind: "jwt",
    category: "secret",
    family: "keys and tokens",
    format: "`eyJ…` `.eyJ…` `.` signature (base64url), found from each `.eyJ`",
    redacts: "the token",
  },
];

const PII_KINDS: readonly DlpKindInfo[] = [
  { kind: "email", format: "addresses, found from each `@`", redacts: "the address" },
  {
    kind: "phone",
    format: "international and separated national formats (10-15 digits)",
    redacts: "the number",
  },
  {
    kind: "payment_card",
    format: "13-19 digits, consistent separators, a known network prefix, Luhn-valid",
    redacts: "the number",
  },
  { kind: "iban", format: "country length table and the ISO 13616 mod-97 check", redacts: "the IBAN" },
  {
    kind: "us_ssn",
    format: "`AAA-GG-SSSS` excluding invalid areas, groups and serials",
    redacts: "the number",
  },
  {
    kind: "uk_nino",
    format: "National Insurance numbers with the excluded prefixes and suffixes",
    redacts: "the number",
  },
].map((k) => ({ ...k, category: "pii" as const, family: "personal data" as const }));

/** Every kind, secrets first (by family, as the anchor catalog lists them), then personal data. */
export const DLP_KIND_INFO: readonly DlpKindInfo[] = Object.freeze([
  ...ANCHORED_SECRET_KINDS.map((k) => ({ ...k, category: "secret" as const })),
  ...STRUCTURAL_KINDS,
  ...PII_KINDS,
]);

export const DLP_KINDS: readonly string[] = DLP_KIND_INFO.map((k) => k.kind);
export const DLP_CATEGORY: Readonly<Record<string, DlpCategory>> = Object.freeze(
  Object.fromEntries(DLP_KIND_INFO.map((k) => [k.kind, k.category])),
);

/**
 * Names that stand for several kinds, for configurations written before those kinds were split
 * (`detectors: [github_token]`, an allowlist entry `detector: stripe_key`).
 */
export const DLP_KIND_GROUPS: Readonly<Record<string, readonly string[]>> = Object.freeze({
  github_token: DLP_KINDS.filter((k) => k.startsWith("github_")),
  gitlab_token: DLP_KINDS.filter((k) => k.startsWith("gitlab_")),
  stripe_key: ["stripe_secret_key", "stripe_restricted_key"],
});

/** The names a configuration may use: every kind and every group. */
export const DLP_DETECTOR_NAMES: readonly string[] = [...DLP_KINDS, ...Object.keys(DLP_KIND_GROUPS)];

/** Kinds named, with groups expanded. */
export function expandDlpKinds(names: Iterable<string>): string[] {
  const out = new Set<string>();
  for (const n of names) for (const k of DLP_KIND_GROUPS[n] ?? [n]) out.add(k);
  return [...out];
}

/** A compiled allowlist: values and full-match patterns that are known false positives. */
export interface DlpAllow {
  /** Kinds that are never reported. */
  kinds: ReadonlySet<string>;
  /** Exact matched values that are not reported (any kind, or per kind). */
  values: ReadonlyMap<string, ReadonlySet<string> | "any">;
  patterns: readonly { kind: string | undefined; re: RegExp }[];
}

export const NO_ALLOW: DlpAllow = Object.freeze({
  kinds: new Set<string>(),
  values: new Map(),
  patterns: [],
});

function allowed(allow: DlpAllow, kind: string, value: string): boolean {
  if (allow.kinds.has(kind)) return true;
  const v = allow.values.get(value);
  if (v === "any" || v?.has(kind)) return true;
  for (const p of allow.patterns) {
    if ((p.kind === undefined || p.kind === kind) && p.re.test(value)) return true;
  }
  return false;
}

/** How many encoded layers deep DLP decodes (base64 inside percent inside base64 is 3). */
const MAX_DEPTH = 3;

export interface DlpScannerOptions {
  /**
   * Adds further anchors to the scanner's automaton: their handlers run on the same walk over
   * each text as the secret kinds' (the hook for other scanners' keyword anchors).
   */
  join?: (automaton: AnchorAutomaton) => void;
  /**
   * Exact values that are secrets wherever they appear (the credentials the gateway holds for
   * upstreams), reported as `gateway_credential`. Not a configurable kind: always on.
   */
  exactSecrets?: readonly string[];
}

/** The kind of a match of DlpScannerOptions.exactSecrets. */
export const GATEWAY_CREDENTIAL_KIND = "gateway_credential";

/** Shorter held values are not matched: they would turn up in ordinary text. */
export const MIN_EXACT_SECRET_LENGTH = 8;

/**
 * The detectors to run, all of them or the named subset. One scan walks the text once for every
 * anchored secret kind (AnchorAutomaton), runs the few structural and personal-data detectors
 * (each behind a literal or character prefilter), then reads the same text folded (invisible
 * characters removed, NFKC, lookalikes) when that differs, and decodes encoded tokens.
 */
export class DlpScanner {
  private readonly detectors: readonly Detector[];
  private readonly enabled: ReadonlySet<string>;
  private readonly automaton = new AnchorAutomaton();
  private readonly state: ScanState = newScanState();
  private readonly secretsAnchored: boolean;

  constructor(enabled?: Iterable<string>, options: DlpScannerOptions = {}) {
    const set = enabled ? new Set(expandDlpKinds(enabled)) : undefined;
    this.enabled = set ?? new Set(DLP_KINDS);
    this.detectors = set ? DETECTORS.filter((d) => set.has(d.kind)) : DETECTORS;
    registerSecretKinds(this.automaton, set, () => this.state);
    this.secretsAnchored = ANCHORED_SECRET_KINDS.some((k) => this.enabled.has(k.kind));
    for (const secret of options.exactSecrets ?? []) {
      if (secret.length < MIN_EXACT_SECRET_LENGTH || !/^[\x20-\x7e]+$/.test(secret)) continue;
      this.automaton.add(secret, (_text, at) => {
        this.state.out.push({ kind: GATEWAY_CREDENTIAL_KIND, start: at, end: at + secret.length });
      });
      this.secretsAnchored = true;
    }
    options.join?.(this.automaton);
  }

  get kinds(): string[] {
    return DLP_KINDS.filter((k) => this.enabled.has(k));
  }

  /** The literal anchors of the one walk (for the cost tests' adversarial inputs). */
  get anchors(): string[] {
    return this.automaton.anchors();
  }

  /**
   * Non-overlapping matches in text order, in the coordinates of `text`. When two detectors
   * overlap, the earlier match wins; at the same start a secret (the password of a database URL
   * rather than the e-mail-like `password@host`), then the longer one. A secret found in the
   * folded view spans the raw characters it was read from; one found in a decoded token spans
   * the whole token.
   */
  scan(
    text: string,
    allow: DlpAllow = NO_ALLOW,
    categories?: ReadonlySet<DlpCategory>,
    meter: ScanMeter = { steps: 0 },
  ): DlpMatch[] {
    if (text.length < 6) return [];
    const found = this.find(text, categories, meter, 0);
    if (found.length === 0) return found;
    found.sort(
      (a, b) =>
        a.start - b.start ||
        Number(b.category === "secret") - Number(a.category === "secret") ||
        b.end - a.end,
    );
    const out: DlpMatch[] = [];
    let last = -1;
    for (const f of found) {
      if (f.start < last) continue;
      if (allowed(allow, f.kind, text.slice(f.start, f.end))) continue;
      out.push(f);
      last = f.end;
    }
    return out;
  }

  /** Matches in `raw` (any order, may overlap), from its folded view and its decoded tokens. */
  private find(
    raw: string,
    categories: ReadonlySet<DlpCategory> | undefined,
    meter: ScanMeter,
    depth: number,
  ): DlpMatch[] {
    const view = foldedView(raw);
    const text = view ? view.text : raw;
    const found: DlpMatch[] = [];
    this.detect(text, found, categories, meter);
    if (depth < MAX_DEPTH) {
      // Tokens inside something already found need no decoding: it is redacted anyway.
      const covered = found.map((f) => [f.start, f.end] as const);
      for (const token of encodedTokens(text)) {
        if (covered.some(([s, e]) => s < token.end && token.start < e)) continue;
        if (this.findEncoded(text, token, found, categories, meter, depth)) continue;
        if (token.encoding !== "base64") continue;
        for (const part of tokenParts(text, token))
          this.findEncoded(text, part, found, categories, meter, depth);
      }
    }
    if (view) {
      for (const f of found) {
        f.start = rawStart(view, f.start);
        f.end = rawEnd(view, f.end - 1);
      }
    }
    return found;
  }

  /** Decodes one token and scans what it holds; a finding there is reported as the whole token. */
  private findEncoded(
    text: string,
    token: EncodedToken,
    found: DlpMatch[],
    categories: ReadonlySet<DlpCategory> | undefined,
    meter: ScanMeter,
    depth: number,
  ): boolean {
    meter.steps += 1 + ((token.end - token.start) >> 3);
    const decoded = decodeToken(text, token);
    if (decoded === undefined || decoded.length < 6) return false;
    meter.steps += decoded.length;
    const inner = this.find(decoded, categories, meter, depth + 1);
    if (inner.length === 0) return false;
    inner.sort((a, b) => a.start - b.start);
    found.push({ kind: inner[0]!.kind, category: inner[0]!.category, start: token.start, end: token.end });
    return true;
  }

  /** Every detector once over `text`: the anchor walk, then the others. */
  private detect(
    text: string,
    found: DlpMatch[],
    categories: ReadonlySet<DlpCategory> | undefined,
    meter: ScanMeter,
  ): void {
    if (text.length < 6) return;
    if (this.secretsAnchored && (!categories || categories.has("secret"))) {
      const state = this.state;
      state.out = [];
      state.runs.reset(text);
      state.seen.clear();
      this.automaton.scan(text, meter);
      for (const f of state.out) {
        if (this.enabled.has(f.kind) || f.kind === GATEWAY_CREDENTIAL_KIND)
          found.push({ kind: f.kind, category: "secret", start: f.start, end: f.end });
      }
      state.out = [];
    }
    const hints: Hints = { digits: DIGIT.test(text), at: text.includes("@") };
    for (const d of this.detectors) {
      if (categories && !categories.has(d.category)) continue;
      if (!d.maybe(text, hints)) continue;
      d.find(text, found, meter);
    }
  }
}

/** Replaces each match with `[REDACTED:<kind>]`. */
export function redactMatches(text: string, matches: readonly DlpMatch[]): string {
  let out = "";
  let pos = 0;
  for (const m of matches) {
    out += text.slice(pos, m.start) + `[REDACTED:${m.kind}]`;
    pos = m.end;
  }
  return out + text.slice(pos);
}

/** Every regex the detectors run, for the backtracking tests. */
export function dlpPatterns(): { id: string; pattern: RegExp }[] {
  return [
    ...DETECTORS.flatMap((d) => d.patterns.map((pattern) => ({ id: d.kind, pattern }))),
    ...KEYED_PATTERNS,
  ];
}
