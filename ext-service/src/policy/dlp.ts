/**
 * Data-loss prevention detectors: secrets (cloud keys, VCS and chat tokens, payment provider
 * keys, private key blocks, JWTs, high-entropy values next to secret-like keywords) and PII
 * (email, phone, payment card with Luhn, IBAN with mod-97, US SSN, UK NINO).
 *
 * Each detector has a cheap prefilter (a literal or a character test) so clean text costs a few
 * passes of fast scans. Regexes follow the same discipline as injection.ts: no nested
 * quantifiers, bounded repetition, literal-led patterns where possible.
 */

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

/** Shannon entropy in bits per character. */
export function entropy(s: string): number {
  const counts = new Map<string, number>();
  for (const c of s) counts.set(c, (counts.get(c) ?? 0) + 1);
  let h = 0;
  for (const n of counts.values()) {
    const p = n / s.length;
    h -= p * Math.log2(p);
  }
  return h;
}

const PLACEHOLDER =
  /^(?:\$\{?|<|\{\{|%\(|\*{3,}|x{4,}|\.{3})|(?:changeme|change_me|example|your[_-]|placeholder|redacted|dummy|sample|xxxxx|\*\*\*|<[a-z_]+>|\$\{|\{\{)|^(?:null|none|true|false|undefined|password|secret|token|string|required|optional|env|process\.env\.\w+)$/i;

/** A value that looks like a real secret rather than a placeholder, a word or an identifier. */
function looksSecret(value: string): boolean {
  if (value.length < 12) return false;
  if (PLACEHOLDER.test(value)) return false;
  const classes =
    (/[a-z]/.test(value) ? 1 : 0) +
    (/[A-Z]/.test(value) ? 1 : 0) +
    (/[0-9]/.test(value) ? 1 : 0) +
    (/[^A-Za-z0-9]/.test(value) ? 1 : 0);
  if (classes < 2) return false;
  // Dotted identifiers and paths (config.db.password, /etc/app/secret) are references, not values.
  if (/^[A-Za-z_][\w-]*(?:[./][A-Za-z_][\w-]*)+$/.test(value) && !/[0-9]/.test(value)) return false;
  return entropy(value) >= 3.2;
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

/** `scheme://user:password@host`: found from each "://" so the scan stays linear. */
const URL_SCHEME = /[a-z][a-z0-9+.-]{1,20}$/i;
const URL_USERINFO = /[^\s:@/]{1,100}:([^\s:@/]{3,100})@/y;
const urlCredentialsDetector: Detector = {
  kind: "url_credentials",
  category: "secret",
  patterns: [URL_SCHEME, URL_USERINFO],
  maybe: (t) => t.includes("://"),
  find(text, out, meter) {
    let at = text.indexOf("://");
    while (at >= 0) {
      meter.steps++;
      if (URL_SCHEME.test(text.slice(Math.max(0, at - 21), at))) {
        URL_USERINFO.lastIndex = at + 3;
        const m = URL_USERINFO.exec(text);
        const password = m?.[1];
        if (m && password && !PLACEHOLDER.test(password) && password.length >= 6) {
          const end = at + 3 + m[0].length - 1;
          out.push({ kind: "url_credentials", category: "secret", start: end - password.length, end });
        }
      }
      at = text.indexOf("://", at + 3);
    }
    URL_USERINFO.lastIndex = 0;
  },
};

const DETECTORS: readonly Detector[] = [
  // --- secrets
  privateKeyDetector,
  regexDetector("aws_access_key_id", "secret", /\b(?:AKIA|ASIA|ABIA|ACCA|AIDA|AROA)[A-Z0-9]{16}\b/g),
  regexDetector(
    "aws_secret_access_key",
    "secret",
    /\b(?:aws_?)?secret_?(?:access_?)?key(?:_?id)?["'\]]?\s{0,3}(?:[:=]|=>|:=)\s{0,3}["']?([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])/gi,
    { group: 1, maybe: (t) => /secret/i.test(t), valid: (v) => entropy(v) >= 3.5 },
  ),
  regexDetector("gcp_api_key", "secret", /\bAIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])/g),
  regexDetector("azure_storage_key", "secret", /\bAccountKey=([A-Za-z0-9+/]{86}==)/g, { group: 1 }),
  regexDetector(
    "azure_client_secret",
    "secret",
    /(?<![A-Za-z0-9_~.-])[A-Za-z0-9_~.-]{3}8Q~[A-Za-z0-9_~.-]{31,34}(?![A-Za-z0-9_~.-])/g,
    { maybe: (t) => t.includes("8Q~") },
  ),
  regexDetector(
    "github_token",
    "secret",
    /\b(?:gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{82})\b/g,
  ),
  regexDetector("gitlab_token", "secret", /\bgl(?:pat|dt|rt|ptt|oas)-[A-Za-z0-9_-]{20,64}(?![A-Za-z0-9_-])/g),
  regexDetector("slack_token", "secret", /\bxox[abposr]-[A-Za-z0-9-]{10,250}/g),
  regexDetector(
    "slack_webhook",
    "secret",
    /https:\/\/hooks\.slack\.com\/services\/T[A-Z0-9]{8,12}\/B[A-Z0-9]{8,12}\/[A-Za-z0-9]{24}/g,
  ),
  regexDetector("stripe_key", "secret", /\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{20,247}\b/g),
  regexDetector("stripe_webhook_secret", "secret", /\bwhsec_[A-Za-z0-9]{32,64}\b/g),
  jwtDetector,
  urlCredentialsDetector,
  regexDetector("bearer_token", "secret", /\bBearer\s{1,4}([A-Za-z0-9._~+/-]{20,2048}=*)/g, {
    group: 1,
    valid: (v) => looksSecret(v),
  }),
  regexDetector(
    "generic_secret",
    "secret",
    /(?:password|passwd|passphrase|secret|token|api[_-]?key|apikey|access[_-]?key|auth[_-]?key|client[_-]?secret|private[_-]?key|credentials?)[A-Za-z0-9_-]{0,20}["'\]]?\s{0,3}(?:[:=]|=>|:=)\s{0,3}["']?([^\s"'`,;<>(){}[\]]{12,200})/gi,
    { group: 1, valid: (v) => looksSecret(v) },
  ),
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

export const DLP_KINDS: readonly string[] = DETECTORS.map((d) => d.kind);
export const DLP_CATEGORY: Readonly<Record<string, DlpCategory>> = Object.freeze(
  Object.fromEntries(DETECTORS.map((d) => [d.kind, d.category])),
);

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

/** The detectors to run: all of them, or the named subset. */
export class DlpScanner {
  private readonly detectors: readonly Detector[];

  constructor(enabled?: Iterable<string>) {
    const set = enabled ? new Set(enabled) : undefined;
    this.detectors = set ? DETECTORS.filter((d) => set.has(d.kind)) : DETECTORS;
  }

  get kinds(): string[] {
    return this.detectors.map((d) => d.kind);
  }

  /**
   * Non-overlapping matches in text order. When two detectors overlap, the earlier match wins,
   * and at the same start the longer one.
   */
  scan(
    text: string,
    allow: DlpAllow = NO_ALLOW,
    categories?: ReadonlySet<DlpCategory>,
    meter: ScanMeter = { steps: 0 },
  ): DlpMatch[] {
    if (text.length < 6) return [];
    const hints: Hints = { digits: DIGIT.test(text), at: text.includes("@") };
    const found: DlpMatch[] = [];
    for (const d of this.detectors) {
      if (categories && !categories.has(d.category)) continue;
      if (!d.maybe(text, hints)) continue;
      d.find(text, found, meter);
    }
    if (found.length === 0) return found;
    found.sort((a, b) => a.start - b.start || b.end - a.end);
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
  return DETECTORS.flatMap((d) => d.patterns.map((pattern) => ({ id: d.kind, pattern })));
}
