/**
 * The secret kinds DLP recognises by a literal anchor: a token prefix ("ghp_", "AKIA", "sk-proj-"),
 * a fixed marker inside the token ("T3BlbkFJ" is not used as an anchor, but ":AA" of Telegram bot
 * tokens and "NRAL" of New Relic license keys are), or a keyword before a value that has no prefix
 * of its own ("datadog", "password"). Every anchor joins one AnchorAutomaton, so the text is
 * walked once whatever the number of kinds; at an anchor, the kind reads the token's shape with
 * bounded loops (no regex over the whole text).
 *
 * Token formats are the providers' published ones. Where a format carries a checksum (GitHub and
 * npm: the last six base62 characters are the CRC32 of the rest), it is verified, so a token-shaped
 * string that is not a real token is not reported.
 *
 * Linear time: a run of one character class is measured from a position at most once per class
 * and scan (RunCache), so anchors repeated inside a long token ("sk-sk-sk-...") do not each re-read
 * the run; look-backs and keyword values are bounded by a small constant.
 */

import type { AnchorAutomaton, AnchorMeter } from "./anchors.js";

export type SecretFamily =
  | "AI and ML"
  | "package registry"
  | "code host and CI"
  | "cloud and hosting"
  | "messaging and email"
  | "payments"
  | "observability"
  | "secrets manager"
  | "database"
  | "keys and tokens"
  | "other SaaS";

export interface SecretFound {
  kind: string;
  start: number;
  end: number;
}

// ------------------------------------------------------------------ character classes

/** An ASCII character class as a lookup table. */
export interface CharClass {
  id: number;
  table: Uint8Array;
}

const classes: CharClass[] = [];

function charClass(spec: string): CharClass {
  const table = new Uint8Array(128);
  for (let i = 0; i < spec.length; i++) {
    if (spec[i + 1] === "-" && i + 2 < spec.length) {
      for (let c = spec.charCodeAt(i); c <= spec.charCodeAt(i + 2); c++) table[c] = 1;
      i += 2;
    } else table[spec.charCodeAt(i)] = 1;
  }
  const cls = { id: classes.length, table };
  classes.push(cls);
  return cls;
}

const AN = charClass("A-Za-z0-9");
const AN_US = charClass("A-Za-z0-9_");
const B64URL = charClass("A-Za-z0-9_-");
const B64URL_DOT = charClass("A-Za-z0-9_.-");
const B64URL_EQ = charClass("A-Za-z0-9_=-");
const B64 = charClass("A-Za-z0-9+/");
const B64_EQ = charClass("A-Za-z0-9+/=");
const B64_EQ_US = charClass("A-Za-z0-9+/=_");
const HEXL = charClass("0-9a-f");
const HEX = charClass("0-9a-fA-F");
const UAN = charClass("A-Z0-9");
const UAN_DASH = charClass("A-Z0-9-");
const LAN = charClass("a-z0-9");
const DIG = charClass("0-9");
const ALPHA = charClass("A-Za-z");
const LOWER = charClass("a-z");
const AN_DASH = charClass("A-Za-z0-9-");
const AN_PCT = charClass("A-Za-z0-9%");
const AN_SLASH_PLUS = charClass("A-Za-z0-9+/");
const AZURE_SECRET = charClass("A-Za-z0-9_~.-");
const BECH32_UPPER = charClass("QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L");
const DOPPLER = charClass("A-Za-z0-9._-");
const WEBHOOK_PATH = charClass("A-Za-z0-9@/_-");

function isWordCode(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95;
}

function inClass(cls: CharClass, c: number): boolean {
  return c < 128 && cls.table[c] === 1;
}

/**
 * Where runs of each class end, remembered for one text: a run measured from one position is not
 * measured again from a later position inside it. Each character is read at most once per class.
 */
export class RunCache {
  private readonly from = new Int32Array(classes.length).fill(-1);
  private readonly to = new Int32Array(classes.length);
  private readonly exact = new Uint8Array(classes.length);
  text = "";

  reset(text: string): void {
    this.text = text;
    this.from.fill(-1);
  }

  /** End of the run of `cls` starting at `pos`, looking no further than `pos + cap`. */
  runEnd(cls: CharClass, pos: number, cap: number, meter: AnchorMeter): number {
    const text = this.text;
    const limit = Math.min(text.length, pos + cap);
    const id = cls.id;
    const from = this.from[id]!;
    let e: number;
    let start: number;
    if (from >= 0 && pos >= from && pos <= this.to[id]!) {
      const to = this.to[id]!;
      if (this.exact[id] === 1) return Math.min(to, limit);
      if (limit <= to) return limit;
      e = to;
      start = from;
    } else {
      e = pos;
      start = pos;
    }
    const scannedFrom = e;
    const table = cls.table;
    while (e < limit) {
      const c = text.charCodeAt(e);
      if (c >= 128 || table[c] !== 1) break;
      e++;
    }
    meter.steps += e - scannedFrom + 1;
    this.from[id] = start;
    this.to[id] = e;
    this.exact[id] = e < limit || e === text.length ? 1 : 0;
    return e;
  }
}

// ------------------------------------------------------------------ kinds

/** A run of one class, `min` to `max` characters, taken greedily. */
interface Run {
  cls: CharClass;
  min: number;
  max: number;
}

type Segment = string | Run;

const run = (cls: CharClass, min: number, max = min): Run => ({ cls, min, max });

/** What a kind is, for the scanner and the documentation table. */
export interface SecretKind {
  kind: string;
  family: SecretFamily;
  /** The format, as the documentation shows it. */
  format: string;
  /** What `[REDACTED:<kind>]` replaces. */
  redacts: string;
}

interface ScanState {
  out: SecretFound[];
  runs: RunCache;
  /** Last index of helper anchors seen so far in this text (for kinds that need context). */
  seen: Map<string, number>;
}

interface KindSpec extends SecretKind {
  register(automaton: AnchorAutomaton, state: () => ScanState): void;
}

/**
 * A token that starts with a literal anchor and continues with `body`. `before`: characters right
 * before the anchor that belong to the token (Telegram's bot id); `boundary`: the token may not
 * follow a word character (for short or common anchors); `cut`: a last run longer than its maximum
 * is cut there (a token glued to following text) instead of refused; `valueOnly`: redact from the
 * end of the anchor (the anchor is a field name such as "AccountKey=").
 */
function prefixed(
  kind: string,
  family: SecretFamily,
  anchors: readonly string[],
  body: readonly Segment[],
  options: {
    before?: Run;
    boundary?: boolean;
    cut?: boolean;
    valueOnly?: boolean;
    valid?: (token: string) => boolean;
    format?: string;
    redacts?: string;
  } = {},
): KindSpec {
  const shape = body.map((s) =>
    typeof s === "string" ? s : `${classText(s.cls)}{${s.min === s.max ? s.min : `${s.min},${s.max}`}}`,
  );
  return {
    kind,
    family,
    format:
      options.format ??
      `${options.before ? `${classText(options.before.cls)}{${options.before.min}} + ` : ""}${anchors.map((a) => `\`${a}\``).join(" / ")} + ${shape.join(" ")}${options.valid ? " (checked)" : ""}`,
    redacts: options.redacts ?? (options.valueOnly ? "the value" : "the token"),
    register(automaton, state) {
      for (const anchor of anchors) {
        automaton.add(anchor, (text, at, meter) => {
          const s = state();
          let start = at;
          if (options.before) {
            const b = options.before;
            let p = at;
            while (p > 0 && at - p <= b.max && inClass(b.cls, text.charCodeAt(p - 1))) p--;
            meter.steps += at - p + 1;
            if (at - p < b.min || at - p > b.max) return;
            start = p;
          }
          if (options.boundary && start > 0 && isWordCode(text.charCodeAt(start - 1))) return;
          const end = matchSegments(s.runs, at + anchor.length, body, options.cut === true, meter);
          if (end < 0) return;
          if (options.valid && !options.valid(text.slice(start, end))) return;
          s.out.push({ kind, start: options.valueOnly ? at + anchor.length : start, end });
        });
      }
    },
  };
}

function matchSegments(
  runs: RunCache,
  from: number,
  body: readonly Segment[],
  cut: boolean,
  meter: AnchorMeter,
): number {
  const text = runs.text;
  let p = from;
  for (let i = 0; i < body.length; i++) {
    const seg = body[i]!;
    if (typeof seg === "string") {
      if (!text.startsWith(seg, p)) return -1;
      p += seg.length;
      continue;
    }
    const e = runs.runEnd(seg.cls, p, seg.max + 1, meter);
    const len = e - p;
    if (len < seg.min) return -1;
    if (len > seg.max) {
      if (!cut || i !== body.length - 1) return -1;
      p += seg.max;
    } else p = e;
  }
  return p;
}

/**
 * A value with no prefix of its own, recognised after a keyword (case-insensitive) and an
 * assignment: `DD_API_KEY=<32 hex>`, `"cohere_key": "<40>"`. The keyword may be glued to other
 * identifier characters (`MY_DATADOG_KEY`); the value must end where its class ends.
 */
function keyed(
  kind: string,
  family: SecretFamily,
  keywords: readonly string[],
  value: string,
  options: {
    notAfter?: string;
    valid?: (value: string) => boolean;
    format?: string;
    gap?: string;
    /** The gap's letters are matched without case (the value's never are). */
    gapIgnoresCase?: boolean;
  } = {},
): KindSpec {
  const notAfter = options.notAfter ?? "A-Za-z0-9";
  const gap = options.gap ?? ASSIGNMENT;
  const re = new RegExp(
    `${options.gapIgnoresCase ? ignoringCase(gap) : gap}(${value})(?![${notAfter}])`,
    "y",
  );
  KEYED_PATTERNS.push({ id: kind, pattern: re });
  return {
    kind,
    family,
    format: options.format ?? `${keywords.map((k) => `\`${k}\``).join(" / ")} … = \`${value}\``,
    redacts: "the value",
    register(automaton, state) {
      for (const keyword of keywords) {
        automaton.add(
          keyword,
          (text, at, meter) => {
            const s = state();
            re.lastIndex = at + keyword.length;
            const m = re.exec(text);
            meter.steps += 8;
            if (m === null) return;
            const v = m[1]!;
            meter.steps += v.length >> 2;
            if (options.valid && !options.valid(v)) return;
            const end = at + keyword.length + m[0].length;
            s.out.push({ kind, start: end - v.length, end });
          },
          { caseInsensitive: true },
        );
      }
    },
  };
}

/** The keyed kinds' regexes, for the backtracking tests. */
export const KEYED_PATTERNS: { id: string; pattern: RegExp }[] = [];

/** A regex source with each ASCII letter outside a class written as [xX]. */
function ignoringCase(source: string): string {
  return source.replace(/(\\.)|([a-zA-Z])/g, (m, escaped: string | undefined, letter: string | undefined) =>
    escaped ? m : `[${letter!.toLowerCase()}${letter!.toUpperCase()}]`,
  );
}

/** The rest of an identifier, a closing quote, an assignment, an opening quote. */
const ASSIGNMENT = `[A-Za-z0-9_.-]{0,24}["'\\]]?\\s{0,3}(?:=>|:=|[:=]|\\s)\\s{0,3}["'\`]?`;

/** Like `keyed`, for kinds whose matcher is written out. */
function custom(
  spec: SecretKind,
  anchors: readonly { anchor: string; caseInsensitive?: boolean }[],
  find: (text: string, at: number, anchor: string, state: ScanState, meter: AnchorMeter) => void,
): KindSpec {
  return {
    ...spec,
    register(automaton, state) {
      for (const { anchor, caseInsensitive } of anchors) {
        automaton.add(anchor, (text, at, meter) => find(text, at, anchor, state(), meter), {
          caseInsensitive,
        });
      }
    },
  };
}

function classText(cls: CharClass): string {
  const names = new Map<CharClass, string>([
    [AN, "[A-Za-z0-9]"],
    [AN_US, "[A-Za-z0-9_]"],
    [B64URL, "[A-Za-z0-9_-]"],
    [B64URL_DOT, "[A-Za-z0-9_.-]"],
    [B64URL_EQ, "[A-Za-z0-9_=-]"],
    [B64, "[A-Za-z0-9+/]"],
    [B64_EQ, "[A-Za-z0-9+/=]"],
    [B64_EQ_US, "[A-Za-z0-9+/=_]"],
    [HEXL, "[0-9a-f]"],
    [HEX, "[0-9a-fA-F]"],
    [UAN, "[A-Z0-9]"],
    [UAN_DASH, "[A-Z0-9-]"],
    [LAN, "[a-z0-9]"],
    [DIG, "[0-9]"],
    [ALPHA, "[A-Za-z]"],
    [LOWER, "[a-z]"],
    [AN_DASH, "[A-Za-z0-9-]"],
    [AN_PCT, "[A-Za-z0-9%]"],
    [AN_SLASH_PLUS, "[A-Za-z0-9+/]"],
    [AZURE_SECRET, "[A-Za-z0-9_~.-]"],
    [BECH32_UPPER, "[bech32]"],
    [DOPPLER, "[A-Za-z0-9._-]"],
    [WEBHOOK_PATH, "[A-Za-z0-9@/_-]"],
  ]);
  return names.get(cls) ?? "[…]";
}

// ------------------------------------------------------------------ checksums and checks

const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const CRC_TABLE = (() => {
  const t = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  return t;
})();

export function crc32(s: string): number {
  let c = -1;
  for (let i = 0; i < s.length; i++) c = CRC_TABLE[(c ^ s.charCodeAt(i)) & 0xff]! ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}

export function base62(n: number, width: number): string {
  let out = "";
  let v = n;
  while (v > 0) {
    out = BASE62[v % 62]! + out;
    v = Math.floor(v / 62);
  }
  return out.padStart(width, "0");
}

/**
 * GitHub's and npm's token checksum: after the prefix, 30 random base62 characters and the CRC32
 * of those 30, in base62 on six characters.
 */
export function checksumValid(token: string): boolean {
  const underscore = token.indexOf("_");
  const body = token.slice(underscore + 1);
  if (body.length !== 36) return false;
  return base62(crc32(body.slice(0, 30)), 6) === body.slice(30);
}

/** At least one upper-case letter, one lower-case letter and one digit: not a word or a name. */
function mixed(s: string): boolean {
  return /[A-Z]/.test(s) && /[a-z]/.test(s) && /[0-9]/.test(s);
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

export const PLACEHOLDER =
  /^(?:\$\{?|<|\{\{|%\(|\*{3,}|x{4,}|\.{3})|(?:changeme|change_me|example|your[_-]|placeholder|redacted|dummy|sample|xxxxx|\*\*\*|<[a-z_]+>|\$\{|\{\{)|^(?:null|none|true|false|undefined|password|secret|token|string|required|optional|env|process\.env\.\w+)$/i;

/** A value that looks like a real secret rather than a placeholder, a word or an identifier. */
export function looksSecret(value: string): boolean {
  if (value.length < 12) return false;
  if (PLACEHOLDER.test(value)) return false;
  const kinds =
    (/[a-z]/.test(value) ? 1 : 0) +
    (/[A-Z]/.test(value) ? 1 : 0) +
    (/[0-9]/.test(value) ? 1 : 0) +
    (/[^A-Za-z0-9]/.test(value) ? 1 : 0);
  if (kinds < 2) return false;
  // Dotted identifiers and paths (config.db.password, /etc/app/secret) are references, not values.
  if (/^[A-Za-z_][\w-]*(?:[./][A-Za-z_][\w-]*)+$/.test(value) && !/[0-9]/.test(value)) return false;
  return entropy(value) >= 3.2;
}

const UUID: readonly Segment[] = [
  run(HEXL, 8),
  "-",
  run(HEXL, 4),
  "-",
  run(HEXL, 4),
  "-",
  run(HEXL, 4),
  "-",
  run(HEXL, 12),
];
const UUID_RE = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";
const HEX_DIGITS = "0123456789abcdef";

// ------------------------------------------------------------------ custom matchers

/** Schemes whose URL credentials are database or broker passwords, by kind. */
const URL_SCHEME_KIND: Readonly<Record<string, string>> = Object.freeze({
  postgres: "postgres_url",
  postgresql: "postgres_url",
  mysql: "mysql_url",
  mariadb: "mysql_url",
  mysqlx: "mysql_url",
  mongodb: "mongodb_url",
  "mongodb+srv": "mongodb_url",
  redis: "redis_url",
  rediss: "redis_url",
  amqp: "amqp_url",
  amqps: "amqp_url",
});
const URL_SCHEME_CHAR = charClass("a-zA-Z0-9+.-");
const USERINFO_CHAR = (c: number) => c > 32 && c !== 58 && c !== 64 && c !== 47 && c !== 0x7f;

/** `scheme://user:password@host`: the password, with the scheme choosing the kind. */
function urlCredentials(text: string, at: number, state: ScanState, meter: AnchorMeter): void {
  let s = at;
  while (s > 0 && at - s <= 21 && inClass(URL_SCHEME_CHAR, text.charCodeAt(s - 1))) s--;
  meter.steps += at - s + 1;
  if (at - s < 2 || at - s > 21 || !/^[a-z]/i.test(text[s]!)) return;
  // user: up to 100 characters, then ':'
  let p = at + 3;
  const userEnd = Math.min(text.length, p + 101);
  while (p < userEnd && USERINFO_CHAR(text.charCodeAt(p))) p++;
  meter.steps += p - at;
  if (p === at + 3 || p - (at + 3) > 100 || text.charCodeAt(p) !== 58) return;
  const pwStart = p + 1;
  let e = pwStart;
  const pwEnd = Math.min(text.length, pwStart + 101);
  while (e < pwEnd && USERINFO_CHAR(text.charCodeAt(e))) e++;
  meter.steps += e - pwStart;
  if (text.charCodeAt(e) !== 64 || e - pwStart < 6 || e - pwStart > 100) return;
  const password = text.slice(pwStart, e);
  if (PLACEHOLDER.test(password)) return;
  const scheme = text.slice(s, at).toLowerCase();
  state.out.push({ kind: URL_SCHEME_KIND[scheme] ?? "url_credentials", start: pwStart, end: e });
}

/** `Authorization: Basic <base64 of user:password>`. */
function basicAuth(text: string, at: number, anchor: string, state: ScanState, meter: AnchorMeter): void {
  if (at > 0 && isWordCode(text.charCodeAt(at - 1))) return;
  let p = at + anchor.length;
  const spaces = p;
  while (p < text.length && p - spaces < 4 && text.charCodeAt(p) === 32) p++;
  if (p === spaces) return;
  const e = state.runs.runEnd(B64_EQ, p, 401, meter);
  if (e - p < 8 || e - p > 400 || (e < text.length && isWordCode(text.charCodeAt(e)))) return;
  const decoded = Buffer.from(text.slice(p, e), "base64").toString("latin1");
  const colon = decoded.indexOf(":");
  meter.steps += (e - p) >> 2;
  if (colon < 1 || decoded.length - colon - 1 < 6 || !/^[\x20-\x7e]+$/.test(decoded)) return;
  if (PLACEHOLDER.test(decoded.slice(colon + 1))) return;
  state.out.push({ kind: "http_basic_auth", start: p, end: e });
}

/** Azure SAS: the `sig=` of a query that also has `sv=` (a signed version) shortly before. */
function azureSas(text: string, at: number, state: ScanState, meter: AnchorMeter): void {
  const sv = state.seen.get("sv=");
  if (sv === undefined || at - sv > 600) return;
  const before = text.charCodeAt(at - 1);
  if (at > 0 && before !== 38 && before !== 63 && before !== 59) return; // & ? ;
  const p = at + 4;
  const e = state.runs.runEnd(SAS_SIG, p, 121, meter);
  if (e - p < 40 || e - p > 120) return;
  state.out.push({ kind: "azure_sas_token", start: p, end: e });
}
const SAS_SIG = charClass("A-Za-z0-9%+/=");

/** An ADO.NET/ODBC connection string's password, in a string that names a server before it. */
function connectionStringPassword(
  text: string,
  at: number,
  anchor: string,
  state: ScanState,
  meter: AnchorMeter,
): void {
  let server = -1;
  for (const k of ["server=", "data source=", "host="]) server = Math.max(server, state.seen.get(k) ?? -1);
  if (server < 0 || at - server > 400) return;
  if (at > 0 && isWordCode(text.charCodeAt(at - 1))) return;
  const p = at + anchor.length;
  let e = p;
  const limit = Math.min(text.length, p + 129);
  while (e < limit) {
    const c = text.charCodeAt(e);
    if (c === 59 || c === 34 || c === 39 || c <= 32) break;
    e++;
  }
  meter.steps += e - p + 1;
  if (e - p < 6 || e - p > 128) return;
  if (PLACEHOLDER.test(text.slice(p, e))) return;
  state.out.push({ kind: "db_connection_string", start: p, end: e });
}

/** PuTTY key files, from the header line to the end of the `Private-MAC` line. */
function puttyKey(text: string, at: number, state: ScanState, meter: AnchorMeter): void {
  if (at > 0 && text.charCodeAt(at - 1) !== 10 && text.charCodeAt(at - 1) !== 13) {
    if (isWordCode(text.charCodeAt(at - 1))) return;
  }
  const last = state.seen.get("putty-end") ?? -1;
  if (at < last) return;
  const limit = Math.min(text.length, at + 16_384);
  const mac = text.indexOf("Private-MAC:", at);
  meter.steps += 4;
  if (mac < 0 || mac > limit) {
    state.seen.set("putty-end", mac < 0 ? text.length : mac);
    return;
  }
  let e = mac + 12;
  while (e < text.length && e - mac < 140 && text.charCodeAt(e) !== 10 && text.charCodeAt(e) !== 13) e++;
  meter.steps += (mac - at) >> 4;
  state.seen.set("putty-end", e);
  state.out.push({ kind: "putty_private_key", start: at, end: e });
}

/** Helper anchors: positions other kinds look back to (see ScanState.seen). */
function marker(name: string): KindSpec {
  return {
    kind: "",
    family: "other SaaS",
    format: "",
    redacts: "",
    register(automaton, state) {
      automaton.add(name, (_text, at) => state().seen.set(name, at), { caseInsensitive: true });
    },
  };
}

// ------------------------------------------------------------------ the catalog

const SLACK_SHAPE: readonly Segment[] = [run(AN_DASH, 10, 250)];

const KINDS: readonly KindSpec[] = [
  // --- AI and ML providers
  prefixed("openai_project_key", "AI and ML", ["sk-proj-"], [run(B64URL, 40, 250)]),
  prefixed("openai_service_account_key", "AI and ML", ["sk-svcacct-"], [run(B64URL, 40, 250)]),
  prefixed("openai_admin_key", "AI and ML", ["sk-admin-"], [run(B64URL, 40, 250)]),
  prefixed("openai_api_key", "AI and ML", ["sk-"], [run(AN, 48)], {
    boundary: true,
    valid: (t) => t.slice(23, 31) === "T3BlbkFJ",
    format: "`sk-` + 20 + `T3BlbkFJ` + 20 ([A-Za-z0-9])",
  }),
  prefixed("anthropic_api_key", "AI and ML", ["sk-ant-api03-"], [run(B64URL, 95)], {
    valid: (t) => t.endsWith("AA"),
    format: "`sk-ant-api03-` + 93 [A-Za-z0-9_-] + `AA`",
  }),
  prefixed("anthropic_admin_key", "AI and ML", ["sk-ant-admin01-"], [run(B64URL, 95)], {
    valid: (t) => t.endsWith("AA"),
    format: "`sk-ant-admin01-` + 93 [A-Za-z0-9_-] + `AA`",
  }),
  prefixed("gcp_api_key", "AI and ML", ["AIza"], [run(B64URL, 35)], {
    format: "`AIza` + 35 [A-Za-z0-9_-] (Google Cloud and Gemini API keys)",
  }),
  prefixed("huggingface_token", "AI and ML", ["hf_"], [run(ALPHA, 34)], { boundary: true }),
  prefixed("huggingface_org_token", "AI and ML", ["api_org_"], [run(ALPHA, 34)]),
  keyed("cohere_api_key", "AI and ML", ["cohere", "co_api_key"], "[A-Za-z0-9]{40}", { valid: mixed }),
  keyed("mistral_api_key", "AI and ML", ["mistral"], "[A-Za-z0-9]{32}", { valid: mixed }),
  prefixed("groq_api_key", "AI and ML", ["gsk_"], [run(AN, 52)]),
  prefixed("replicate_api_token", "AI and ML", ["r8_"], [run(AN, 37)], { boundary: true }),
  prefixed("perplexity_api_key", "AI and ML", ["pplx-"], [run(AN, 48)]),
  prefixed("xai_api_key", "AI and ML", ["xai-"], [run(AN, 80)], { boundary: true }),
  prefixed("langsmith_api_key", "AI and ML", ["lsv2_pt_", "lsv2_sk_"], [run(HEXL, 32), "_", run(HEXL, 10)]),
  prefixed("nvidia_api_key", "AI and ML", ["nvapi-"], [run(B64URL, 64)]),
  prefixed("openrouter_api_key", "AI and ML", ["sk-or-v1-"], [run(HEXL, 64)]),
  prefixed("pinecone_api_key", "AI and ML", ["pcsk_"], [run(AN_US, 40, 120)]),
  prefixed("tavily_api_key", "AI and ML", ["tvly-"], [run(AN_DASH, 32, 48)]),
  prefixed("aws_bedrock_api_key", "AI and ML", ["ABSK"], [run(B64_EQ, 109, 272)]),
  keyed("wandb_api_key", "AI and ML", ["wandb"], "[0-9a-f]{40}"),
  keyed(
    "elevenlabs_api_key",
    "AI and ML",
    ["elevenlabs", "xi_api_key", "xi-api-key"],
    "(?:sk_)?[0-9a-f]{32,48}",
  ),

  // --- package registries
  prefixed("npm_token", "package registry", ["npm_"], [run(AN, 36)], {
    cut: true,
    valid: checksumValid,
    format: "`npm_` + 30 [A-Za-z0-9] + CRC32 in base62 (checked)",
  }),
  prefixed(
    "pypi_token",
    "package registry",
    ["pypi-AgEIcHlwaS5vcmc", "pypi-AgENdGVzdC5weXBpLm9yZw"],
    [run(B64URL, 50, 1000)],
  ),
  prefixed("rubygems_api_key", "package registry", ["rubygems_"], [run(HEXL, 48)]),
  prefixed("nuget_api_key", "package registry", ["oy2"], [run(LAN, 43)], { boundary: true }),
  prefixed("dockerhub_token", "package registry", ["dckr_pat_", "dckr_oat_"], [run(B64URL, 24, 64)]),
  prefixed("crates_io_token", "package registry", ["cio"], [run(AN, 32)], { boundary: true, valid: mixed }),
  prefixed("clojars_token", "package registry", ["CLOJARS_"], [run(LAN, 60)]),
  prefixed("artifactory_api_key", "package registry", ["AKCp"], [run(AN, 69)]),

  // --- code hosts and CI
  ...(
    [
      ["github_pat", "ghp_"],
      ["github_oauth_token", "gho_"],
      ["github_user_token", "ghu_"],
      ["github_app_token", "ghs_"],
      ["github_refresh_token", "ghr_"],
    ] as const
  ).map(([kind, prefix]) =>
    prefixed(kind, "code host and CI", [prefix], [run(AN, 36)], {
      cut: true,
      valid: checksumValid,
      format: `\`${prefix}\` + 30 [A-Za-z0-9] + CRC32 in base62 (checked)`,
    }),
  ),
  prefixed("github_fine_grained_pat", "code host and CI", ["github_pat_"], [run(AN, 22), "_", run(AN, 59)]),
  prefixed("gitlab_pat", "code host and CI", ["glpat-"], [run(B64URL_DOT, 20, 320)]),
  prefixed("gitlab_deploy_token", "code host and CI", ["gldt-"], [run(B64URL_DOT, 20, 320)]),
  prefixed("gitlab_runner_token", "code host and CI", ["glrt-", "GR1348941"], [run(B64URL_DOT, 20, 320)]),
  prefixed("gitlab_pipeline_trigger_token", "code host and CI", ["glptt-"], [run(HEXL, 40)]),
  prefixed("gitlab_oauth_secret", "code host and CI", ["gloas-"], [run(B64URL, 64)]),
  prefixed("gitlab_ci_job_token", "code host and CI", ["glcbt-"], [run(B64URL_DOT, 20, 320)]),
  prefixed("gitlab_feed_token", "code host and CI", ["glft-"], [run(B64URL_DOT, 20, 320)]),
  prefixed("gitlab_agent_token", "code host and CI", ["glagent-"], [run(B64URL_DOT, 50, 320)]),
  prefixed("gitlab_scim_token", "code host and CI", ["glsoat-"], [run(B64URL_DOT, 20, 320)]),
  prefixed("gitlab_incoming_mail_token", "code host and CI", ["glimt-"], [run(B64URL_DOT, 25, 320)]),
  prefixed("bitbucket_app_password", "code host and CI", ["ATBB"], [run(AN, 32)], { valid: mixed }),
  prefixed("atlassian_api_token", "code host and CI", ["ATATT3"], [run(B64URL_EQ, 150, 250)]),
  prefixed("circleci_token", "code host and CI", ["CCIPAT_", "CCIPRJ_"], [run(AN, 22), "_", run(HEXL, 40)]),
  prefixed("buildkite_token", "code host and CI", ["bkua_"], [run(HEXL, 40)]),
  prefixed("sourcegraph_token", "code host and CI", ["sgp_"], [run(AN_US, 40, 64)], {
    valid: (t) => /^sgp_(?:[0-9a-fA-F]{16}_|local_)?[0-9a-fA-F]{40}$/.test(t),
    format: "`sgp_` + optional (16 hex + `_`) + 40 hex",
  }),
  prefixed("azure_devops_pat", "code host and CI", ["AZDO"], [run(AN, 4)], {
    before: run(AN, 76),
    format: "76 [A-Za-z0-9] + `AZDO` + 4 [A-Za-z0-9]",
  }),
  prefixed("sonarqube_token", "code host and CI", ["squ_", "sqp_", "sqa_"], [run(HEXL, 40)]),
  prefixed("octopus_deploy_api_key", "code host and CI", ["API-"], [run(UAN, 26)], { boundary: true }),

  // --- cloud and hosting
  prefixed(
    "aws_access_key_id",
    "cloud and hosting",
    ["AKIA", "ASIA", "ABIA", "ACCA", "AIDA", "AROA", "AGPA", "AIPA", "ANPA", "ANVA"],
    [run(UAN, 16)],
    { cut: true, format: "`AKIA`, `ASIA`, `ABIA`, `ACCA`, `AIDA`, `AROA`, ... + 16 [A-Z0-9]" },
  ),
  keyed("aws_secret_access_key", "cloud and hosting", ["secret"], "[A-Za-z0-9/+]{40}", {
    gap: `_?(?:access_?)?key(?:_?id)?["'\\]]?\\s{0,3}(?:=>|:=|[:=])\\s{0,3}["']?`,
    gapIgnoresCase: true,
    notAfter: "A-Za-z0-9/+=",
    valid: (v) => entropy(v) >= 3.5,
    format: "40 [A-Za-z0-9/+] after `secret_access_key`, `secret_key`, ... (entropy ≥ 3.5)",
  }),
  prefixed(
    "aws_session_token",
    "cloud and hosting",
    ["IQoJb3JpZ2luX2", "FwoGZXIvYXdzE"],
    [run(B64_EQ, 100, 2000)],
  ),
  keyed("gcp_service_account_key_id", "cloud and hosting", ['"private_key_id"'], "[0-9a-f]{40}", {
    gap: `\\s{0,3}:\\s{0,3}"`,
    format: '`"private_key_id": "<40 hex>"` of a service-account JSON (its `private_key` is `private_key`)',
  }),
  prefixed("google_oauth_client_secret", "cloud and hosting", ["GOCSPX-"], [run(B64URL, 28)]),
  prefixed("google_oauth_access_token", "cloud and hosting", ["ya29."], [run(B64URL, 30, 2048)], {
    boundary: true,
  }),
  prefixed("google_oauth_refresh_token", "cloud and hosting", ["1//0"], [run(B64URL, 40, 512)], {
    boundary: true,
  }),
  prefixed("azure_storage_key", "cloud and hosting", ["AccountKey="], [run(B64, 86), "=="], {
    valueOnly: true,
  }),
  custom(
    {
      kind: "azure_sas_token",
      family: "cloud and hosting",
      format: "`sig=` + 40-120 [A-Za-z0-9%+/=] in a query with `sv=`",
      redacts: "the signature",
    },
    [{ anchor: "sig=" }],
    (text, at, _a, state, meter) => azureSas(text, at, state, meter),
  ),
  prefixed("azure_shared_access_key", "cloud and hosting", ["SharedAccessKey="], [run(B64, 43), "="], {
    valueOnly: true,
  }),
  prefixed("azure_client_secret", "cloud and hosting", [...DIGITS("Q~")], [run(AZURE_SECRET, 31, 34)], {
    before: run(AZURE_SECRET, 3),
    format: "3 + digit + `Q~` + 31-34 [A-Za-z0-9_~.-] (Entra ID client secrets)",
  }),
  prefixed("digitalocean_pat", "cloud and hosting", ["dop_v1_"], [run(HEXL, 64)]),
  prefixed("digitalocean_oauth_token", "cloud and hosting", ["doo_v1_"], [run(HEXL, 64)]),
  prefixed("digitalocean_refresh_token", "cloud and hosting", ["dor_v1_"], [run(HEXL, 64)]),
  prefixed("heroku_api_key", "cloud and hosting", ["HRKU-AA"], [run(B64URL, 58)]),
  keyed("heroku_legacy_api_key", "cloud and hosting", ["heroku"], UUID_RE),
  keyed("vercel_token", "cloud and hosting", ["vercel"], "[A-Za-z0-9]{24}", { valid: mixed }),
  keyed("netlify_token", "cloud and hosting", ["netlify"], "[A-Za-z0-9_=-]{40,46}", {
    notAfter: "A-Za-z0-9_=-",
    valid: mixed,
  }),
  keyed("cloudflare_api_token", "cloud and hosting", ["cloudflare", "cf_api_token"], "[A-Za-z0-9_-]{40}", {
    notAfter: "A-Za-z0-9_-",
    valid: mixed,
  }),
  keyed("cloudflare_global_api_key", "cloud and hosting", ["cloudflare", "cf_api_key"], "[0-9a-f]{37}"),
  prefixed("cloudflare_origin_ca_key", "cloud and hosting", ["v1.0-"], [run(HEXL, 24), "-", run(HEXL, 146)]),
  prefixed("supabase_secret_key", "cloud and hosting", ["sb_secret_"], [run(B64URL, 31, 64)]),
  prefixed("supabase_pat", "cloud and hosting", ["sbp_"], [run(HEXL, 40)]),
  prefixed("flyio_token", "cloud and hosting", ["fm2_", "fm1r_", "fm1a_"], [run(B64_EQ, 100, 4000)]),
  prefixed("render_api_key", "cloud and hosting", ["rnd_"], [run(AN, 32)], { valid: mixed }),
  prefixed("alibaba_access_key_id", "cloud and hosting", ["LTAI"], [run(AN, 20)], { valid: mixed }),
  prefixed("databricks_token", "cloud and hosting", ["dapi"], [run(HEXL, 32)], { boundary: true }),
  prefixed("terraform_cloud_token", "cloud and hosting", [".atlasv1."], [run(B64URL_EQ, 60, 70)], {
    before: run(AN, 14),
    format: "14 [A-Za-z0-9] + `.atlasv1.` + 60-70 [A-Za-z0-9_=-]",
  }),
  prefixed("pulumi_access_token", "cloud and hosting", ["pul-"], [run(HEXL, 40)]),
  prefixed(
    "tailscale_key",
    "cloud and hosting",
    ["tskey-"],
    [run(LOWER, 3, 10), "-", run(AN, 8, 40), "-", run(AN, 20, 64)],
  ),

  // --- messaging and email
  prefixed("slack_bot_token", "messaging and email", ["xoxb-"], SLACK_SHAPE),
  prefixed("slack_user_token", "messaging and email", ["xoxp-"], SLACK_SHAPE),
  prefixed("slack_app_token", "messaging and email", ["xapp-"], [run(AN_DASH, 20, 250)]),
  prefixed(
    "slack_config_token",
    "messaging and email",
    ["xoxe.xoxp-", "xoxe.xoxb-", "xoxe-"],
    [run(AN_DASH, 40, 250)],
  ),
  prefixed("slack_token", "messaging and email", ["xoxa-", "xoxr-", "xoxo-", "xoxs-"], SLACK_SHAPE, {
    format: "`xoxa-`, `xoxr-`, `xoxo-`, `xoxs-` + 10-250 [A-Za-z0-9-] (legacy, workspace and refresh tokens)",
  }),
  prefixed(
    "slack_webhook",
    "messaging and email",
    ["https://hooks.slack.com/"],
    [run(LOWER, 8, 9), "/", run(AN_SLASH_PLUS, 40, 80)],
  ),
  prefixed(
    "discord_webhook",
    "messaging and email",
    ["discord.com/api/webhooks/", "discordapp.com/api/webhooks/"],
    [run(DIG, 17, 20), "/", run(B64URL, 60, 70)],
  ),
  keyed(
    "discord_bot_token",
    "messaging and email",
    ["discord"],
    "[MNO][A-Za-z0-9_-]{23,25}\\.[A-Za-z0-9_-]{6}\\.[A-Za-z0-9_-]{27,38}",
    {
      notAfter: "A-Za-z0-9_-",
    },
  ),
  prefixed("telegram_bot_token", "messaging and email", [":AA"], [run(B64URL, 33)], {
    before: run(DIG, 8, 10),
    boundary: true,
    format: "8-10 digits + `:AA` + 33 [A-Za-z0-9_-]",
  }),
  prefixed(
    "twilio_api_key",
    "messaging and email",
    [...HEX_DIGITS].map((h) => `SK${h}`),
    [run(HEXL, 31)],
    {
      boundary: true,
      format: "`SK` + 32 [0-9a-f]",
    },
  ),
  keyed("twilio_auth_token", "messaging and email", ["twilio"], "[0-9a-f]{32}"),
  prefixed("sendgrid_api_key", "messaging and email", ["SG."], [run(B64URL, 22), ".", run(B64URL, 43)], {
    boundary: true,
  }),
  prefixed("mailgun_api_key", "messaging and email", ["key-"], [run(HEXL, 32)], { boundary: true }),
  prefixed("mailchimp_api_key", "messaging and email", ["-us"], [run(DIG, 1, 2)], {
    before: run(HEXL, 32),
    boundary: true,
    format: "32 [0-9a-f] + `-us` + 1-2 digits",
  }),
  prefixed("brevo_api_key", "messaging and email", ["xkeysib-"], [run(HEXL, 64), "-", run(AN, 16)]),
  prefixed("resend_api_key", "messaging and email", ["re_"], [run(AN, 8), "_", run(AN, 24)], {
    boundary: true,
    valid: (t) => mixed(t.slice(3)),
  }),
  prefixed(
    "teams_webhook",
    "messaging and email",
    [".webhook.office.com/webhookb2/"],
    [run(WEBHOOK_PATH, 60, 300)],
  ),

  // --- payments
  prefixed("stripe_secret_key", "payments", ["sk_live_", "sk_test_"], [run(AN, 20, 247)]),
  prefixed("stripe_restricted_key", "payments", ["rk_live_", "rk_test_"], [run(AN, 20, 247)]),
  prefixed("stripe_webhook_secret", "payments", ["whsec_"], [run(AN, 32, 64)]),
  prefixed("square_access_token", "payments", ["EAAA"], [run(B64URL, 60)], { boundary: true, valid: mixed }),
  prefixed("square_access_token", "payments", ["sq0atp-"], [run(B64URL, 22)]),
  prefixed("square_oauth_secret", "payments", ["sq0csp-"], [run(B64URL, 43)]),
  prefixed(
    "braintree_access_token",
    "payments",
    ["access_token$production$", "access_token$sandbox$"],
    [run(LAN, 16), "$", run(HEXL, 32)],
  ),
  prefixed("shopify_access_token", "payments", ["shpat_", "shpca_", "shppa_"], [run(HEX, 32)]),
  prefixed("shopify_shared_secret", "payments", ["shpss_"], [run(HEX, 32)]),
  prefixed(
    "plaid_access_token",
    "payments",
    ["access-production-", "access-sandbox-", "access-development-"],
    UUID,
  ),
  prefixed("flutterwave_secret_key", "payments", ["FLWSECK-", "FLWSECK_TEST-"], [run(HEXL, 32), "-X"]),
  prefixed("shippo_api_token", "payments", ["shippo_live_", "shippo_test_"], [run(HEX, 40)]),

  // --- observability
  keyed("datadog_api_key", "observability", ["datadog", "dd_api_key"], "[0-9a-f]{32}"),
  keyed(
    "datadog_app_key",
    "observability",
    ["dd_app_key", "dd_application_key", "datadog_app_key", "datadog_application_key"],
    "[0-9a-f]{40}",
  ),
  prefixed("new_relic_user_key", "observability", ["NRAK-"], [run(UAN, 27)]),
  prefixed("new_relic_insert_key", "observability", ["NRII-"], [run(B64URL, 32)]),
  prefixed("new_relic_license_key", "observability", ["NRAL"], [], {
    before: run(HEXL, 36),
    boundary: true,
    format: "36 [0-9a-f] + `NRAL`",
  }),
  prefixed("sentry_user_token", "observability", ["sntryu_"], [run(HEXL, 64)]),
  prefixed("sentry_org_token", "observability", ["sntrys_"], [run(B64_EQ_US, 80, 400)]),
  prefixed("grafana_cloud_token", "observability", ["glc_"], [run(B64_EQ, 32, 400)]),
  prefixed("grafana_service_account_token", "observability", ["glsa_"], [run(AN, 32), "_", run(HEX, 8)]),
  prefixed("grafana_api_key", "observability", ["eyJrIjoi"], [run(B64_EQ, 70, 400)]),
  prefixed("dynatrace_token", "observability", ["dt0c01."], [run(AN, 24), ".", run(AN, 64)]),

  // --- secrets managers
  prefixed("vault_service_token", "secrets manager", ["hvs."], [run(B64URL, 90, 300)]),
  prefixed("vault_batch_token", "secrets manager", ["hvb."], [run(B64URL, 100, 300)]),
  prefixed(
    "doppler_token",
    "secrets manager",
    ["dp.pt.", "dp.st.", "dp.sa.", "dp.ct.", "dp.scim.", "dp.audit."],
    [run(DOPPLER, 40, 100)],
    { valid: (t) => mixed(t) },
  ),
  prefixed("onepassword_service_account_token", "secrets manager", ["ops_eyJ"], [run(B64_EQ, 250, 8000)]),
  prefixed("onepassword_secret_key", "secrets manager", ["A3-"], [run(UAN_DASH, 36, 37)], {
    boundary: true,
    valid: (t) =>
      /^A3-[A-Z0-9]{6}-(?:[A-Z0-9]{11}|[A-Z0-9]{6}-[A-Z0-9]{5})-[A-Z0-9]{5}-[A-Z0-9]{5}-[A-Z0-9]{5}$/.test(t),
    format: "`A3-` + 6 + 11 (or 6-5) + 5 + 5 + 5 [A-Z0-9], dash-separated",
  }),
  prefixed("age_secret_key", "secrets manager", ["AGE-SECRET-KEY-1"], [run(BECH32_UPPER, 58)]),

  // --- other SaaS
  prefixed("linear_api_key", "other SaaS", ["lin_api_"], [run(AN, 40)]),
  prefixed("notion_token", "other SaaS", ["ntn_"], [run(AN, 46)], { valid: (t) => /^ntn_[0-9]{11}/.test(t) }),
  prefixed("notion_token", "other SaaS", ["secret_"], [run(AN, 43)], { boundary: true, valid: mixed }),
  prefixed("figma_token", "other SaaS", ["figd_"], [run(B64URL, 38, 50)]),
  prefixed("hubspot_private_app_token", "other SaaS", ["pat-na1-", "pat-eu1-"], UUID),
  prefixed("mapbox_secret_token", "other SaaS", ["sk.eyJ"], [run(B64URL_DOT, 60, 300)]),
  prefixed("twitter_bearer_token", "other SaaS", ["AAAAAAAAAAAAAAAAAAAAA"], [run(AN_PCT, 50, 120)], {
    boundary: true,
    valid: (t) => mixed(t.slice(21)),
  }),
  prefixed("airtable_pat", "other SaaS", ["pat"], [run(AN, 14), ".", run(HEXL, 64)], { boundary: true }),
  prefixed(
    "planetscale_token",
    "other SaaS",
    ["pscale_tkn_", "pscale_pw_", "pscale_oauth_"],
    [run(B64URL_DOT, 32, 64)],
  ),
  prefixed("postman_api_key", "other SaaS", ["PMAK-"], [run(HEX, 24), "-", run(HEX, 34)]),
  keyed("okta_api_token", "other SaaS", ["okta"], "00[A-Za-z0-9_=-]{40}", { notAfter: "A-Za-z0-9_=-" }),

  // --- databases (URL passwords are found from "://")
  custom(
    {
      kind: "postgres_url",
      family: "database",
      format: "`postgres://` / `postgresql://` user `:` password `@` host",
      redacts: "the password",
    },
    [{ anchor: "://" }],
    (text, at, _a, state, meter) => urlCredentials(text, at, state, meter),
  ),
  custom(
    {
      kind: "db_connection_string",
      family: "database",
      format:
        "`Password=` / `Pwd=` in a connection string with `Server=`, `Data Source=` or `Host=` before it",
      redacts: "the password",
    },
    [
      { anchor: "password=", caseInsensitive: true },
      { anchor: "pwd=", caseInsensitive: true },
    ],
    connectionStringPassword,
  ),

  // --- keys and tokens of no one provider
  custom(
    {
      kind: "putty_private_key",
      family: "keys and tokens",
      format: "`PuTTY-User-Key-File-` … `Private-MAC:` line",
      redacts: "the key file",
    },
    [{ anchor: "PuTTY-User-Key-File-" }],
    (text, at, _a, state, meter) => puttyKey(text, at, state, meter),
  ),
  custom(
    {
      kind: "http_basic_auth",
      family: "keys and tokens",
      format: "`Basic ` + base64 of `user:password`",
      redacts: "the base64",
    },
    [{ anchor: "Basic", caseInsensitive: true }],
    basicAuth,
  ),
  keyed("bearer_token", "keys and tokens", ["bearer"], "[A-Za-z0-9._~+/-]{20,2048}={0,2}", {
    gap: "\\s{1,4}",
    notAfter: "A-Za-z0-9._~+/=-",
    valid: looksSecret,
    format: "`Bearer ` + a high-entropy value",
  }),
  keyed(
    "generic_secret",
    "keys and tokens",
    [
      "password",
      "passwd",
      "passphrase",
      "secret",
      "token",
      "api_key",
      "api-key",
      "apikey",
      "access_key",
      "access-key",
      "auth_key",
      "auth-key",
      "private_key",
      "private-key",
      "credential",
    ],
    "[^\\s\"'`,;<>(){}[\\]]{12,200}",
    {
      gap: `[A-Za-z0-9_-]{0,20}["'\\]]?\\s{0,3}(?:=>|:=|[:=])\\s{0,3}["']?`,
      notAfter: "^\\s\"'`,;<>(){}[\\]",
      valid: looksSecret,
      format:
        "a value of 12+ characters, 2+ character classes, entropy ≥ 3.2 assigned to `password`, `secret`, `token`, `api_key`, `private_key`, `credential`, ... (placeholders such as `${VAR}`, `<token>`, `changeme` ignored)",
    },
  ),
  marker("sv="),
  marker("server="),
  marker("data source="),
  marker("host="),
];

function DIGITS(suffix: string): string[] {
  return [..."0123456789"].map((d) => d + suffix);
}

/** Kinds reported from "://" besides postgres_url (same matcher, the scheme decides). */
const URL_KINDS: readonly SecretKind[] = [
  {
    kind: "mysql_url",
    family: "database",
    format: "`mysql://` / `mariadb://` user `:` password `@` host",
    redacts: "the password",
  },
  {
    kind: "mongodb_url",
    family: "database",
    format: "`mongodb://` / `mongodb+srv://` user `:` password `@` host",
    redacts: "the password",
  },
  {
    kind: "redis_url",
    family: "database",
    format: "`redis://` / `rediss://` user `:` password `@` host",
    redacts: "the password",
  },
  {
    kind: "amqp_url",
    family: "database",
    format: "`amqp://` / `amqps://` user `:` password `@` host",
    redacts: "the password",
  },
  {
    kind: "url_credentials",
    family: "keys and tokens",
    format: "any other `scheme://user:password@host`",
    redacts: "the password",
  },
];

/** Every kind the anchor pass reports, once each, in catalog order. */
export const ANCHORED_SECRET_KINDS: readonly SecretKind[] = (() => {
  const seen = new Set<string>();
  const out: SecretKind[] = [];
  for (const k of [...KINDS, ...URL_KINDS]) {
    if (k.kind === "" || seen.has(k.kind)) continue;
    seen.add(k.kind);
    out.push({ kind: k.kind, family: k.family, format: k.format, redacts: k.redacts });
  }
  return out;
})();

/** The kinds a matcher registered under `kind` may report. */
function reports(spec: KindSpec): string[] {
  return spec.kind === "postgres_url" ? ["postgres_url", ...URL_KINDS.map((k) => k.kind)] : [spec.kind];
}

/**
 * Registers on `automaton` the anchors of the kinds in `enabled` (all when undefined). Matches go
 * to the state `state()` returns at the time (the scanner sets it before each walk).
 */
export function registerSecretKinds(
  automaton: AnchorAutomaton,
  enabled: ReadonlySet<string> | undefined,
  state: () => ScanState,
): void {
  for (const spec of KINDS) {
    if (spec.kind !== "" && enabled && !reports(spec).some((k) => enabled.has(k))) continue;
    spec.register(automaton, state);
  }
}

export function newScanState(): ScanState {
  return { out: [], runs: new RunCache(), seen: new Map() };
}

export type { ScanState };
