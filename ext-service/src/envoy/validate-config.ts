import protobuf from "protobufjs";
import { parseDocument } from "yaml";
import { loadEnvoyApi, type EnvoyApi } from "./api-schema.js";

/**
 * A strict decoder for Envoy configuration written as YAML/JSON, checked against Envoy's own v3
 * protos the way Envoy reads it: YAML becomes JSON, JSON is parsed with the proto3 JSON mapping
 * and unknown fields rejected, every `Any` is resolved by its `@type` and decoded in turn, and
 * the protoc-gen-validate rules Envoy enforces at load time are applied (a documented subset).
 *
 * Problems carry the path as written in the file, e.g.
 * `static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[2]
 * .typed_config.processing_mode.request_body_mode: unknown enum value 'BUFFER' ...`.
 */

export interface EnvoyProblem {
  path: string;
  message: string;
}

export interface DecodeReport {
  errors: EnvoyProblem[];
  /** Deprecated fields and enum values in use: Envoy warns, and may refuse them in later versions. */
  warnings: EnvoyProblem[];
  /** Full names of every message type decoded through an `Any` (or TypedStruct), with counts. */
  anyTypes: Map<string, number>;
}

type Json = unknown;
type Obj = Record<string, Json>;

const isObj = (v: Json): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

function describe(v: Json): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "a list";
  if (typeof v === "object") return "an object";
  if (typeof v === "string") return `the string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + "…" : v)}`;
  return `${typeof v} ${String(v)}`;
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;
const join = (path: string, key: string): string =>
  IDENT.test(key) ? (path ? `${path}.${key}` : key) : `${path}[${JSON.stringify(key)}]`;
const index = (path: string, i: number): string => `${path}[${i}]`;

/** proto3 JSON name: underscores removed, the letter after each one upper-cased. */
function jsonName(field: protobuf.Field): string {
  const explicit = field.options?.json_name as string | undefined;
  if (explicit) return explicit;
  return field.name.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}

const fieldIndex = new WeakMap<protobuf.Type, Map<string, protobuf.Field>>();
function fieldsByKey(type: protobuf.Type): Map<string, protobuf.Field> {
  let map = fieldIndex.get(type);
  if (!map) {
    map = new Map();
    for (const field of type.fieldsArray) {
      map.set(field.name, field);
      map.set(jsonName(field), field);
    }
    fieldIndex.set(type, map);
  }
  return map;
}

function levenshtein(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_v, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length]!;
}

function suggest(word: string, candidates: Iterable<string>): string {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = levenshtein(word.toLowerCase(), c.toLowerCase());
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(word.length / 3))
    ? `; did you mean '${best}'?`
    : "";
}

const typeName = (t: protobuf.Type | protobuf.Enum): string => t.fullName.replace(/^\./, "");

// ---- scalars -------------------------------------------------------------------------------

const INT_RANGES: Record<string, [bigint, bigint]> = {
  int32: [-(2n ** 31n), 2n ** 31n - 1n],
  sint32: [-(2n ** 31n), 2n ** 31n - 1n],
  sfixed32: [-(2n ** 31n), 2n ** 31n - 1n],
  uint32: [0n, 2n ** 32n - 1n],
  fixed32: [0n, 2n ** 32n - 1n],
  int64: [-(2n ** 63n), 2n ** 63n - 1n],
  sint64: [-(2n ** 63n), 2n ** 63n - 1n],
  sfixed64: [-(2n ** 63n), 2n ** 63n - 1n],
  uint64: [0n, 2n ** 64n - 1n],
  fixed64: [0n, 2n ** 64n - 1n],
};

const WRAPPERS: Record<string, string> = {
  "google.protobuf.DoubleValue": "double",
  "google.protobuf.FloatValue": "float",
  "google.protobuf.Int64Value": "int64",
  "google.protobuf.UInt64Value": "uint64",
  "google.protobuf.Int32Value": "int32",
  "google.protobuf.UInt32Value": "uint32",
  "google.protobuf.BoolValue": "bool",
  "google.protobuf.StringValue": "string",
  "google.protobuf.BytesValue": "bytes",
};

const DURATION = /^(-)?(\d+)(?:\.(\d{1,9}))?s$/;
const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}(?:==)?|[A-Za-z0-9+/]{3}=?)?$/;
const BASE64URL = /^[A-Za-z0-9_-]*={0,2}$/;
const MAX_DURATION_SECONDS = 315_576_000_000n;

/** A decoded scalar, kept for the validation rules: numbers as bigint/number, durations in ns. */
type Scalar = { kind: "number"; value: number | bigint } | { kind: "string"; value: string } | null;

// ---- protoc-gen-validate rules ---------------------------------------------------------------

type Rules = Record<string, Json>;

const rulesCache = new WeakMap<protobuf.Field, Rules | null>();
function fieldRules(field: protobuf.Field): Rules | null {
  let rules = rulesCache.get(field);
  if (rules === undefined) {
    rules = null;
    const parsed = (field as unknown as { parsedOptions?: Record<string, Json>[] }).parsedOptions ?? [];
    for (const option of parsed) {
      const r = option["(validate.rules)"];
      if (isObj(r)) rules = { ...(rules ?? {}), ...r };
    }
    rulesCache.set(field, rules);
  }
  return rules;
}

function oneofRequired(oneof: protobuf.OneOf): boolean {
  return oneof.options?.["(validate.required)"] === true;
}

function isDeprecated(options: Record<string, unknown> | undefined): boolean {
  return options?.deprecated === true;
}

function durationNanos(d: Json): bigint {
  if (!isObj(d)) return 0n;
  return BigInt(Number(d.seconds ?? 0)) * 1_000_000_000n + BigInt(Number(d.nanos ?? 0));
}

function formatNanos(ns: bigint): string {
  const s = Number(ns) / 1e9;
  return `${s}s`;
}

/** Compares with PGV's semantics: gt/gte with lt/lte form a range, or its complement when lower > upper. */
function checkRange<T extends number | bigint>(
  value: T,
  r: Rules,
  toT: (v: Json) => T,
  show: (v: T) => string,
): string | null {
  const has = (k: string) => r[k] !== undefined;
  if (has("const") && value !== toT(r.const)) return `must equal ${show(toT(r.const))}`;
  if (Array.isArray(r.in) && !r.in.map(toT).includes(value))
    return `must be one of ${r.in.map((v) => show(toT(v))).join(", ")}`;
  if (Array.isArray(r.not_in) && r.not_in.map(toT).includes(value)) return `must not be ${show(value)}`;
  const lowKey = has("gt") ? "gt" : has("gte") ? "gte" : undefined;
  const highKey = has("lt") ? "lt" : has("lte") ? "lte" : undefined;
  const low = lowKey ? toT(r[lowKey]) : undefined;
  const high = highKey ? toT(r[highKey]) : undefined;
  const aboveLow = low === undefined || (lowKey === "gt" ? value > low : value >= low);
  const belowHigh = high === undefined || (highKey === "lt" ? value < high : value <= high);
  const lowText = low === undefined ? "" : `${lowKey === "gt" ? ">" : ">="} ${show(low)}`;
  const highText = high === undefined ? "" : `${highKey === "lt" ? "<" : "<="} ${show(high)}`;
  if (low !== undefined && high !== undefined && low > high) {
    return aboveLow || belowHigh ? null : `must be ${lowText} or ${highText}`;
  }
  if (!aboveLow || !belowHigh) return `must be ${[lowText, highText].filter(Boolean).join(" and ")}`;
  return null;
}

const HEADER_NAME_STRICT = /^:?[0-9a-zA-Z!#$%&'*+\-.^_|~`]+$/;
/** Strict header values allow tab but no other control character; lax ones only exclude NUL, CR, LF. */
function headerValueOk(value: string, strict: boolean): boolean {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (strict ? (c < 0x20 && c !== 0x09) || c === 0x7f : c === 0 || c === 0x0a || c === 0x0d) return false;
  }
  return true;
}

function checkString(value: string, r: Rules): string | null {
  if (r.ignore_empty === true && value === "") return null;
  const chars = [...value].length;
  const bytes = Buffer.byteLength(value, "utf8");
  const n = (k: string) => Number(r[k]);
  if (r.const !== undefined && value !== r.const) return `must equal ${JSON.stringify(r.const)}`;
  if (r.len !== undefined && chars !== n("len")) return `must be exactly ${n("len")} characters`;
  if (r.min_len !== undefined && chars < n("min_len"))
    return n("min_len") === 1 ? "must not be empty" : `must be at least ${n("min_len")} characters`;
  if (r.max_len !== undefined && chars > n("max_len")) return `must be at most ${n("max_len")} characters`;
  if (r.min_bytes !== undefined && bytes < n("min_bytes"))
    return n("min_bytes") === 1 ? "must not be empty" : `must be at least ${n("min_bytes")} bytes`;
  if (r.max_bytes !== undefined && bytes > n("max_bytes")) return `must be at most ${n("max_bytes")} bytes`;
  if (typeof r.prefix === "string" && !value.startsWith(r.prefix)) return `must start with '${r.prefix}'`;
  if (typeof r.suffix === "string" && !value.endsWith(r.suffix)) return `must end with '${r.suffix}'`;
  if (typeof r.contains === "string" && !value.includes(r.contains)) return `must contain '${r.contains}'`;
  if (Array.isArray(r.in) && !r.in.includes(value))
    return `must be one of ${r.in.map((v) => JSON.stringify(v)).join(", ")}`;
  if (Array.isArray(r.not_in) && r.not_in.includes(value)) return `must not be ${JSON.stringify(value)}`;
  if (typeof r.pattern === "string") {
    let re: RegExp | undefined;
    try {
      re = new RegExp(r.pattern, "u");
    } catch {
      re = undefined; // an RE2 construct JavaScript lacks: not checked
    }
    if (re && !re.test(value)) return `must match /${r.pattern}/`;
  }
  if (r.well_known_regex === "HTTP_HEADER_NAME" || r.well_known_regex === "HTTP_HEADER_VALUE") {
    const strict = r.strict !== false;
    const ok =
      r.well_known_regex === "HTTP_HEADER_NAME"
        ? strict
          ? HEADER_NAME_STRICT.test(value)
          : headerValueOk(value, false)
        : headerValueOk(value, strict);
    if (!ok)
      return `is not a valid ${r.well_known_regex === "HTTP_HEADER_NAME" ? "header name" : "header value"}`;
  }
  return null;
}

// ---- the decoder -----------------------------------------------------------------------------

class Decoder {
  readonly errors: EnvoyProblem[] = [];
  readonly warnings: EnvoyProblem[] = [];
  readonly anyTypes = new Map<string, number>();

  constructor(private readonly api: EnvoyApi) {}

  error(path: string, message: string): void {
    this.errors.push({ path, message });
  }

  /** Decodes `value` as message `type`; returns false when it is not even the right shape. */
  message(type: protobuf.Type, value: Json, path: string): void {
    const name = typeName(type);
    const special = this.wellKnown(name, type, value, path);
    if (special) return;
    if (!isObj(value)) {
      this.error(path, `expected an object (${name}), got ${describe(value)}`);
      return;
    }
    const keys = fieldsByKey(type);
    const used = new Map<protobuf.Field, string>();
    const oneofs = new Map<protobuf.OneOf, string>();
    for (const [key, v] of Object.entries(value)) {
      const p = join(path, key);
      const field = keys.get(key);
      if (!field) {
        const names = type.fieldsArray.map((f) => f.name);
        this.error(p, `unknown field '${key}' in ${name}${suggest(key, names)}`);
        continue;
      }
      const earlier = used.get(field);
      if (earlier !== undefined) {
        this.error(p, `field '${field.name}' is set twice (also as '${earlier}')`);
        continue;
      }
      used.set(field, key);
      const isValue = field.resolvedType && typeName(field.resolvedType) === "google.protobuf.Value";
      if (v === null && !isValue) continue; // proto3 JSON: null means "not set"
      if (field.partOf) {
        const other = oneofs.get(field.partOf);
        if (other !== undefined) {
          this.error(
            p,
            `oneof '${field.partOf.name}' is already set by '${other}'; set only one of ${field.partOf.oneof.join(", ")}`,
          );
          continue;
        }
        oneofs.set(field.partOf, key);
      }
      if (isDeprecated(field.options))
        this.warnings.push({ path: p, message: `'${field.name}' is deprecated` });
      this.field(field, v, p);
    }
    this.requiredRules(type, value, used, oneofs, path);
  }

  /** Rules that fire on absent fields too: required messages and oneofs, proto3 scalar defaults. */
  private requiredRules(
    type: protobuf.Type,
    value: Obj,
    used: Map<protobuf.Field, string>,
    oneofs: Map<protobuf.OneOf, string>,
    path: string,
  ): void {
    for (const oneof of type.oneofsArray) {
      if (oneofRequired(oneof) && !oneofs.has(oneof)) {
        this.error(
          path,
          `one of ${oneof.oneof.map((f) => `'${f}'`).join(", ")} is required (oneof '${oneof.name}')`,
        );
      }
    }
    for (const field of type.fieldsArray) {
      const key = used.get(field);
      const present = key !== undefined && value[key] !== null;
      if (present) continue;
      const rules = fieldRules(field);
      if (!rules) continue;
      if (field.partOf) continue; // PGV checks oneof members only when set
      const p = join(path, field.name);
      const kind = Object.keys(rules).find((k) => k !== "message");
      if (field.repeated || field.map) {
        const min = field.map
          ? (rules.map as Rules | undefined)?.min_pairs
          : (rules.repeated as Rules | undefined)?.min_items;
        const ignoreEmpty =
          ((field.map ? rules.map : rules.repeated) as Rules | undefined)?.ignore_empty === true;
        if (min !== undefined && Number(min) > 0 && !ignoreEmpty)
          this.error(p, `is required (at least ${Number(min)} ${field.map ? "entries" : "items"})`);
        continue;
      }
      if (field.resolvedType instanceof protobuf.Type) {
        const name = typeName(field.resolvedType);
        const required =
          (rules.message as Rules | undefined)?.required === true ||
          (name === "google.protobuf.Duration" && (rules.duration as Rules | undefined)?.required === true) ||
          (name === "google.protobuf.Timestamp" &&
            (rules.timestamp as Rules | undefined)?.required === true) ||
          (name === "google.protobuf.Any" && (rules.any as Rules | undefined)?.required === true);
        if (required) this.error(p, `is required (${name})`);
        continue;
      }
      // A proto3 scalar that is not set has its default value, and PGV checks that value.
      if (kind === "string" && field.type === "string") {
        const problem = checkString("", rules.string as Rules);
        if (problem)
          this.error(p, problem === "must not be empty" ? "is required (must not be empty)" : problem);
      } else if (kind && kind in INT_RANGES && field.type === kind) {
        const problem = checkRange(0n, rules[kind] as Rules, (v) => BigInt(v as number), String);
        if (problem) this.error(p, `is required (${problem})`);
      } else if ((kind === "double" || kind === "float") && field.type === kind) {
        const problem = checkRange(0, rules[kind] as Rules, Number, String);
        if (problem) this.error(p, `is required (${problem})`);
      }
    }
  }

  private field(field: protobuf.Field, value: Json, path: string): void {
    const rules = fieldRules(field);
    if (field.map) {
      if (!isObj(value)) {
        this.error(
          path,
          `expected an object (map<${(field as unknown as protobuf.MapField).keyType}, ${field.type}>), got ${describe(value)}`,
        );
        return;
      }
      const entries = Object.entries(value);
      const mapRules = rules?.map as Rules | undefined;
      if (mapRules) {
        const n = entries.length;
        if (mapRules.min_pairs !== undefined && n < Number(mapRules.min_pairs))
          this.error(path, `needs at least ${Number(mapRules.min_pairs)} entries`);
        if (mapRules.max_pairs !== undefined && n > Number(mapRules.max_pairs))
          this.error(path, `allows at most ${Number(mapRules.max_pairs)} entries`);
      }
      for (const [k, v] of entries) {
        const p = join(path, k);
        this.mapKey((field as unknown as protobuf.MapField).keyType, k, p);
        const valueRules = isObj(mapRules?.values) ? (mapRules.values as Rules) : null;
        this.single(field, v, p, valueRules);
      }
      return;
    }
    if (field.repeated) {
      if (!Array.isArray(value)) {
        this.error(path, `expected a list (repeated ${field.type}), got ${describe(value)}`);
        return;
      }
      const rep = rules?.repeated as Rules | undefined;
      if (rep) {
        if (!(rep.ignore_empty === true && value.length === 0)) {
          if (rep.min_items !== undefined && value.length < Number(rep.min_items))
            this.error(path, `needs at least ${Number(rep.min_items)} items`);
          if (rep.max_items !== undefined && value.length > Number(rep.max_items))
            this.error(path, `allows at most ${Number(rep.max_items)} items`);
        }
        if (rep.unique === true) {
          const seen = new Set<string>();
          value.forEach((v, i) => {
            const key = JSON.stringify(v);
            if (seen.has(key)) this.error(index(path, i), "duplicates an earlier item; items must be unique");
            seen.add(key);
          });
        }
      }
      const itemRules = isObj(rep?.items) ? (rep.items as Rules) : null;
      value.forEach((v, i) => {
        if (v === null) this.error(index(path, i), "null is not allowed in a list");
        else this.single(field, v, index(path, i), itemRules);
      });
      return;
    }
    this.single(field, value, path, rules);
  }

  private mapKey(keyType: string, key: string, path: string): void {
    if (keyType === "string") return;
    if (keyType === "bool") {
      if (key !== "true" && key !== "false") this.error(path, `map key '${key}' is not a bool`);
      return;
    }
    this.scalar(keyType, key, path);
  }

  private single(field: protobuf.Field, value: Json, path: string, rules: Rules | null): void {
    const rt = field.resolvedType;
    if (rt instanceof protobuf.Type) {
      const name = typeName(rt);
      this.message(rt, value, path);
      if (!rules) return;
      if (name === "google.protobuf.Duration" && isObj(rules.duration) && typeof value === "string") {
        const ns = this.durationValue(value);
        if (ns !== null) {
          const r = rules.duration as Rules;
          const problem = checkRange(ns, r, durationNanos, formatNanos);
          if (problem) this.error(path, problem);
        }
      } else if (name === "google.protobuf.Any" && isObj(rules.any) && isObj(value)) {
        const allowed = (rules.any as Rules).in;
        const url = value["@type"];
        if (Array.isArray(allowed) && typeof url === "string" && !allowed.includes(url))
          this.error(path, `@type must be one of ${allowed.join(", ")}`);
      } else if (WRAPPERS[name]) {
        this.scalarRules(WRAPPERS[name]!, value, path, rules);
      }
      return;
    }
    if (rt instanceof protobuf.Enum) {
      this.enumValue(rt, value, path, rules?.enum as Rules | undefined);
      return;
    }
    this.scalar(field.type, value, path);
    if (rules) this.scalarRules(field.type, value, path, rules);
  }

  private scalarRules(type: string, value: Json, path: string, rules: Rules): void {
    const scalar = this.scalarValue(type, value);
    if (!scalar) return;
    const r = rules[type === "bytes" ? "bytes" : type] as Rules | undefined;
    if (!isObj(r)) return;
    let problem: string | null = null;
    if (scalar.kind === "string" && type === "string") problem = checkString(scalar.value, r);
    else if (scalar.kind === "number" && typeof scalar.value === "bigint")
      problem = checkRange(scalar.value, r, (v) => BigInt(v as number), String);
    else if (scalar.kind === "number") problem = checkRange(scalar.value as number, r, Number, String);
    if (problem) this.error(path, problem);
  }

  private enumValue(type: protobuf.Enum, value: Json, path: string, rules: Rules | undefined): void {
    const name = typeName(type);
    if (typeof value === "string") {
      if (!(value in type.values)) {
        this.error(
          path,
          `unknown enum value '${value}' for ${name} (one of ${Object.keys(type.values).join(", ")})${suggest(value, Object.keys(type.values))}`,
        );
        return;
      }
      const options = type.valuesOptions?.[value];
      if (isDeprecated(options)) this.warnings.push({ path, message: `enum value '${value}' is deprecated` });
      this.enumRules(type, type.values[value]!, path, rules);
      return;
    }
    if (typeof value === "number" && Number.isInteger(value)) {
      this.enumRules(type, value, path, rules);
      return;
    }
    this.error(path, `expected an enum value of ${name} (a name or a number), got ${describe(value)}`);
  }

  private enumRules(type: protobuf.Enum, n: number, path: string, rules: Rules | undefined): void {
    if (!rules) return;
    if (rules.defined_only === true && !Object.values(type.values).includes(n))
      this.error(path, `enum number ${n} is not defined in ${typeName(type)}`);
    if (Array.isArray(rules.in) && !rules.in.map(Number).includes(n))
      this.error(path, `enum value is not allowed here`);
    if (Array.isArray(rules.not_in) && rules.not_in.map(Number).includes(n))
      this.error(path, `enum value is not allowed here`);
  }

  /** Checks a scalar's JSON form; returns its value for the rules. */
  private scalar(type: string, value: Json, path: string): void {
    const problem = this.scalarProblem(type, value);
    if (problem) this.error(path, problem);
  }

  private scalarProblem(type: string, value: Json): string | null {
    switch (type) {
      case "string":
        return typeof value === "string" ? null : `expected a string, got ${describe(value)}`;
      case "bool":
        return typeof value === "boolean" ? null : `expected true or false, got ${describe(value)}`;
      case "bytes":
        if (typeof value !== "string") return `expected base64 bytes, got ${describe(value)}`;
        return BASE64.test(value) || BASE64URL.test(value) ? null : "is not valid base64";
      case "double":
      case "float": {
        if (typeof value === "number") {
          return type === "float" && Math.abs(value) > 3.4028234663852886e38
            ? "is out of range for float"
            : null;
        }
        if (typeof value === "string") {
          if (value === "NaN" || value === "Infinity" || value === "-Infinity") return null;
          return value.trim() !== "" && Number.isFinite(Number(value)) ? null : `'${value}' is not a number`;
        }
        return `expected a number, got ${describe(value)}`;
      }
      default: {
        const range = INT_RANGES[type];
        if (!range) return `unsupported scalar type ${type}`;
        let n: bigint;
        if (typeof value === "number") {
          if (!Number.isInteger(value)) return `expected an integer (${type}), got ${value}`;
          n = BigInt(value);
        } else if (typeof value === "string" && /^-?\d+$/.test(value)) {
          n = BigInt(value);
        } else {
          return `expected an integer (${type}), got ${describe(value)}`;
        }
        if (n < range[0] || n > range[1]) return `${n} is out of range for ${type}`;
        return null;
      }
    }
  }

  private scalarValue(type: string, value: Json): Scalar {
    if (this.scalarProblem(type, value)) return null;
    if (type === "string") return { kind: "string", value: value as string };
    if (type === "double" || type === "float") return { kind: "number", value: Number(value) };
    if (type in INT_RANGES) return { kind: "number", value: BigInt(value as number | string) };
    return null;
  }

  /** Duration string -> nanoseconds, or null (error reported) when malformed. */
  private durationValue(value: string): bigint | null {
    const m = DURATION.exec(value);
    if (!m) return null;
    const seconds = BigInt(m[2]!);
    const nanos = BigInt((m[3] ?? "").padEnd(9, "0") || "0");
    const total = seconds * 1_000_000_000n + nanos;
    return m[1] ? -total : total;
  }

  /** The proto3 JSON forms of well-known types. Returns true when `name` was one. */
  private wellKnown(name: string, type: protobuf.Type, value: Json, path: string): boolean {
    const wrapped = WRAPPERS[name];
    if (wrapped) {
      const problem = this.scalarProblem(wrapped, value);
      if (problem)
        this.error(path, isObj(value) ? `${problem} (${name} is written as a plain value)` : problem);
      return true;
    }
    switch (name) {
      case "google.protobuf.Any":
        this.any(value, path);
        return true;
      case "google.protobuf.Duration": {
        if (typeof value !== "string") {
          this.error(path, `expected a duration string such as "1.5s", got ${describe(value)}`);
          return true;
        }
        const m = DURATION.exec(value);
        if (!m) this.error(path, `'${value}' is not a duration (seconds with an 's' suffix, e.g. "0.25s")`);
        else if (BigInt(m[2]!) > MAX_DURATION_SECONDS)
          this.error(path, `duration '${value}' is out of range`);
        return true;
      }
      case "google.protobuf.Timestamp":
        if (typeof value !== "string" || !TIMESTAMP.test(value))
          this.error(path, `expected an RFC 3339 timestamp, got ${describe(value)}`);
        return true;
      case "google.protobuf.FieldMask":
        if (typeof value !== "string")
          this.error(path, `expected a field mask string, got ${describe(value)}`);
        return true;
      case "google.protobuf.Struct":
        if (!isObj(value))
          this.error(path, `expected an object (google.protobuf.Struct), got ${describe(value)}`);
        return true;
      case "google.protobuf.ListValue":
        if (!Array.isArray(value))
          this.error(path, `expected a list (google.protobuf.ListValue), got ${describe(value)}`);
        return true;
      case "google.protobuf.Value":
        return true; // any JSON value
      default:
        void type;
        return false;
    }
  }

  private any(value: Json, path: string): void {
    if (!isObj(value)) {
      this.error(path, `expected an object with '@type' (google.protobuf.Any), got ${describe(value)}`);
      return;
    }
    const url = value["@type"];
    const typePath = join(path, "@type");
    if (typeof url !== "string" || url === "") {
      this.error(typePath, "is required: every typed_config / Any names its type");
      return;
    }
    const slash = url.lastIndexOf("/");
    if (slash < 0) {
      this.error(typePath, `'${url}' is not a type URL (expected type.googleapis.com/<full.type.Name>)`);
      return;
    }
    const full = url.slice(slash + 1);
    const type = this.api.message(full);
    if (!type) {
      this.error(typePath, `unknown type '${full}': no such message in the Envoy API protos`);
      return;
    }
    this.anyTypes.set(full, (this.anyTypes.get(full) ?? 0) + 1);
    const rest: Obj = {};
    for (const [k, v] of Object.entries(value)) if (k !== "@type") rest[k] = v;
    const special = full.startsWith("google.protobuf.");
    if (special && !(full in WRAPPERS) && full !== "google.protobuf.Empty") {
      const extra = Object.keys(rest).filter((k) => k !== "value");
      if (extra.length)
        this.error(
          join(path, extra[0]!),
          `unknown field '${extra[0]}' (an Any holding ${full} has only 'value')`,
        );
      this.message(type, rest.value, join(path, "value"));
      return;
    }
    if (full in WRAPPERS) {
      this.message(type, rest.value, join(path, "value"));
      return;
    }
    this.message(type, rest, path);
    if (
      (full === "udpa.type.v1.TypedStruct" || full === "xds.type.v3.TypedStruct") &&
      typeof rest.type_url === "string"
    ) {
      this.any({ ...(isObj(rest.value) ? rest.value : {}), "@type": rest.type_url }, join(path, "value"));
    }
  }
}

/** Decodes a parsed YAML/JSON value as the Envoy message `type` (full name, e.g. envoy.config.cluster.v3.Cluster). */
export function decodeEnvoy(type: string, value: unknown, api: EnvoyApi = loadEnvoyApi()): DecodeReport {
  const root = api.message(type);
  if (!root) throw new Error(`unknown Envoy message type '${type}'`);
  const decoder = new Decoder(api);
  decoder.message(root, value, "");
  return { errors: decoder.errors, warnings: decoder.warnings, anyTypes: decoder.anyTypes };
}

/**
 * Parses YAML the way Envoy's loader sees it (one document, no duplicate keys) and decodes it.
 * YAML syntax errors are reported as problems at the root.
 */
export function validateEnvoyYaml(
  text: string,
  type: string,
  api?: EnvoyApi,
): DecodeReport & { value: unknown } {
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: false });
  if (doc.errors.length > 0) {
    return {
      value: undefined,
      errors: doc.errors.map((e) => ({ path: "", message: `YAML: ${e.message.split("\n")[0]}` })),
      warnings: [],
      anyTypes: new Map(),
    };
  }
  const value = doc.toJS({ maxAliasCount: 100 }) as unknown;
  return { value, ...decodeEnvoy(type, value ?? {}, api) };
}

export function formatProblems(file: string, problems: readonly EnvoyProblem[]): string {
  return problems.map((p) => `${file}: ${p.path || "(root)"}: ${p.message}`).join("\n");
}
