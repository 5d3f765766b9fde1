import { readFileSync } from "node:fs";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { LineCounter, isMap, isNode, isScalar, parseDocument, type Document } from "yaml";
import type { z } from "zod";
import { GatewayConfigSchema, RegistrySchema, type GatewayConfig, type Registry } from "./schema.js";

/** One problem in a config file, located as precisely as the YAML allows. */
export interface ConfigProblem {
  file: string;
  /** Dotted path inside the file, e.g. `auth.issuers[0].audiences`. Empty for the document root. */
  path: string;
  line?: number;
  column?: number;
  message: string;
}

export class ConfigError extends Error {
  readonly problems: readonly ConfigProblem[];
  constructor(problems: ConfigProblem[]) {
    super(problems.map(formatProblem).join("\n"));
    this.name = "ConfigError";
    this.problems = problems;
  }
}

export function formatProblem(p: ConfigProblem): string {
  const where = p.line ? `${p.file}:${p.line}:${p.column ?? 1}` : p.file;
  return `${where}: ${p.path || "(root)"}: ${p.message}`;
}

export function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const key of path) {
    if (typeof key === "number") out += `[${key}]`;
    else out += out ? `.${String(key)}` : String(key);
  }
  return out;
}

/** Where values of one parsed file live, so later checks (cross-references) can point at them. */
export interface ConfigSource {
  /** The file as shown in problems: the path the user gave, not the resolved one. */
  readonly file: string;
  /** Position of the value at `path`, or of its nearest existing parent. */
  locate(path: readonly PropertyKey[]): { line: number; column: number } | undefined;
}

/** A problem at `path` in `source`'s file, with line and column when the YAML has them. */
export function problemAt(
  source: ConfigSource,
  path: readonly PropertyKey[],
  message: string,
): ConfigProblem {
  const pos = source.locate(path);
  return { file: source.file, path: formatPath(path), line: pos?.line, column: pos?.column, message };
}

interface ParsedYaml extends ConfigSource {
  value: unknown;
  /** Position of the key `key` of the mapping at `path`. */
  locateKey(path: readonly PropertyKey[], key: string): { line: number; column: number } | undefined;
}

function parseYamlFile(file: string, text: string): ParsedYaml {
  const lineCounter = new LineCounter();
  const doc: Document = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const yamlProblem = (offset: number | undefined, message: string): ConfigProblem => {
    const pos = offset === undefined ? undefined : lineCounter.linePos(offset);
    return { file, path: "", line: pos?.line, column: pos?.col, message: `YAML: ${message.split("\n")[0]}` };
  };
  if (doc.errors.length > 0) {
    throw new ConfigError(doc.errors.map((e) => yamlProblem(e.pos[0], e.message)));
  }
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    throw new ConfigError([yamlProblem(undefined, (err as Error).message)]);
  }
  const position = (offset: number) => {
    const pos = lineCounter.linePos(offset);
    return { line: pos.line, column: pos.col };
  };
  return {
    file,
    value,
    locate(path) {
      // Walk up until a node exists: a missing key is reported at its parent.
      for (let n = path.length; n >= 0; n--) {
        const node = doc.getIn(path.slice(0, n) as unknown[], true);
        if (isNode(node) && node.range) return position(node.range[0]);
      }
      return undefined;
    },
    locateKey(path, key) {
      const node = path.length === 0 ? doc.contents : doc.getIn(path as unknown[], true);
      if (isMap(node)) {
        for (const pair of node.items) {
          if (isScalar(pair.key) && String(pair.key.value) === key && pair.key.range) {
            return position(pair.key.range[0]);
          }
        }
      }
      return this.locate(path);
    },
  };
}

/** The object keys a schema accepts at `path`, for "did you mean" hints. */
function keysAt(schema: z.ZodType, path: readonly PropertyKey[]): string[] {
  let cur: unknown = schema;
  const def = (s: unknown) => (s as { _zod: { def: Record<string, unknown> } })._zod.def;
  const unwrap = (s: unknown): unknown => {
    for (;;) {
      const d = def(s);
      if (d.type === "default" || d.type === "optional" || d.type === "prefault") s = d.innerType;
      // A transform after an object (defaults computed from other keys) is a pipe: its keys are the input's.
      else if (d.type === "pipe") s = d.in;
      else return s;
    }
  };
  for (const key of path) {
    cur = unwrap(cur);
    const d = def(cur);
    if (d.type === "object" && typeof key === "string") cur = (d.shape as Record<string, unknown>)[key];
    else if (d.type === "record") cur = d.valueType;
    else if (d.type === "array" && typeof key === "number") cur = d.element;
    else return [];
    if (cur === undefined) return [];
  }
  const d = def(unwrap(cur));
  return d.type === "object" ? Object.keys(d.shape as Record<string, unknown>) : [];
}

/** Edits (insert, delete, substitute, swap two neighbours) that turn `a` into `b`. */
function editDistance(a: string, b: string): number {
  const d: number[][] = [];
  for (let i = 0; i <= a.length; i++) {
    d[i] = [i];
    for (let j = 1; j <= b.length; j++) {
      if (i === 0) {
        d[i]![j] = j;
        continue;
      }
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        best = Math.min(best, d[i - 2]![j - 2]! + 1);
      }
      d[i]![j] = best;
    }
  }
  return d[a.length]![b.length]!;
}

/** ` (did you mean 'x'?)` for the known name closest to `key`, when one is close enough; else "". */
export function suggestion(key: string, known: readonly string[]): string {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of known) {
    const d = editDistance(key.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best !== undefined && bestDistance <= Math.max(1, Math.floor(best.length / 3))
    ? ` (did you mean '${best}'?)`
    : "";
}

/**
 * A union's issue lists one issue set per alternative. When one alternative clearly fits best
 * (fewest problems), report its problems instead of the union's generic message.
 */
function expandIssue(issue: z.core.$ZodIssue): z.core.$ZodIssue[] {
  if (issue.code !== "invalid_union" || issue.errors.length === 0) return [issue];
  const sizes = issue.errors.map((e) => e.length);
  const fewest = Math.min(...sizes);
  if (sizes.filter((n) => n === fewest).length !== 1) return [issue];
  const best = issue.errors[sizes.indexOf(fewest)]!;
  return best.flatMap((inner) => expandIssue({ ...inner, path: [...issue.path, ...inner.path] }));
}

function describeIssue(issue: z.core.$ZodIssue): string {
  if (issue.code === "invalid_type" && /received undefined$/.test(issue.message)) {
    return `required (expected ${issue.expected})`;
  }
  // zod's "Invalid input: expected number, received string": the path already says where.
  return issue.message
    .replace(/^(Invalid (input|option)|Too (small|big)): /, "")
    .replace(/\bexpected int\b/, "expected integer");
}

interface ParsedFile<T> {
  value: T | undefined;
  /** The YAML as plain data, when it parsed as YAML (even if the schema rejected it). */
  raw: unknown;
  source: ConfigSource | undefined;
  problems: ConfigProblem[];
}

function parseFile<S extends z.ZodType>(schema: S, file: string, text: string): ParsedFile<z.infer<S>> {
  let parsed: ParsedYaml;
  try {
    parsed = parseYamlFile(file, text);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return { value: undefined, raw: undefined, source: undefined, problems: [...err.problems] };
  }
  const result = schema.safeParse(parsed.value ?? {});
  if (result.success) return { value: result.data, raw: parsed.value, source: parsed, problems: [] };
  const problems: ConfigProblem[] = [];
  for (const issue of result.error.issues.flatMap(expandIssue)) {
    if (issue.code === "unrecognized_keys") {
      // One problem per key, each at the key itself, with the closest known key as a hint.
      const known = keysAt(schema, issue.path);
      for (const key of issue.keys) {
        const pos = parsed.locateKey(issue.path, key);
        problems.push({
          file,
          path: formatPath(issue.path),
          line: pos?.line,
          column: pos?.column,
          message: `unknown key '${key}'${suggestion(key, known)}`,
        });
      }
      continue;
    }
    problems.push(problemAt(parsed, issue.path, describeIssue(issue)));
  }
  problems.sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0));
  return { value: undefined, raw: parsed.value, source: parsed, problems };
}

function parseWith<S extends z.ZodType>(schema: S, file: string, text: string): z.infer<S> {
  const parsed = parseFile(schema, file, text);
  if (parsed.problems.length > 0) throw new ConfigError(parsed.problems);
  return parsed.value as z.infer<S>;
}

function readText(path: string): string | { error: string } {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return { error: code === "ENOENT" ? "file not found" : `cannot read (${code})` };
  }
}

export function parseGatewayConfig(text: string, file = "gateway.yaml"): GatewayConfig {
  return parseWith(GatewayConfigSchema, file, text);
}

export function parseRegistry(text: string, file = "registry.yaml"): Registry {
  return parseWith(RegistrySchema, file, text);
}

export interface LoadedConfig {
  /** Absolute path of gateway.yaml. */
  configFile: string;
  /** Absolute path of the registry file. */
  registryFile: string;
  config: GatewayConfig;
  registry: Registry;
  /** Positions in gateway.yaml, for problems found after the schema (see config/compile.ts). */
  configSource?: ConfigSource;
  /** Positions in the registry, for problems found after the schema (registry pins). */
  registrySource?: ConfigSource;
}

/** Whatever could be read of gateway.yaml and its registry, with every problem found so far. */
export interface ConfigFiles {
  configFile: string;
  registryFile: string;
  config: GatewayConfig | undefined;
  registry: Registry | undefined;
  configSource: ConfigSource | undefined;
  registrySource: ConfigSource | undefined;
  problems: ConfigProblem[];
}

/**
 * Reads gateway.yaml and the registry it names. The registry is checked even when gateway.yaml
 * has other problems (as long as its `registry` key can be read), so one run reports both.
 */
export function readConfigFiles(configFile: string): ConfigFiles {
  const configPath = resolve(configFile);
  const out: ConfigFiles = {
    configFile: configPath,
    registryFile: "",
    config: undefined,
    registry: undefined,
    configSource: undefined,
    registrySource: undefined,
    problems: [],
  };
  const text = readText(configPath);
  if (typeof text !== "string") {
    out.problems.push({ file: configFile, path: "", message: text.error });
    return out;
  }
  const gateway = parseFile(GatewayConfigSchema, configFile, text);
  out.config = gateway.value;
  out.configSource = gateway.source;
  out.problems.push(...gateway.problems);
  const ref: unknown = gateway.value?.registry ?? (gateway.raw as { registry?: unknown } | null)?.registry;
  if (typeof ref !== "string" || ref === "") return out;
  out.registryFile = resolve(dirname(configPath), ref);
  const label = isAbsolute(ref) ? ref : join(dirname(configFile), ref);
  const registryText = readText(out.registryFile);
  if (typeof registryText !== "string") {
    const problem = { file: configFile, path: "registry", message: `${registryText.error}: ${label}` };
    out.problems.push(gateway.source ? problemAt(gateway.source, ["registry"], problem.message) : problem);
    return out;
  }
  const registry = parseFile(RegistrySchema, label, registryText);
  out.registry = registry.value;
  out.registrySource = registry.source;
  out.problems.push(...registry.problems);
  return out;
}

/** Loads gateway.yaml and the registry it names; throws one ConfigError listing every problem. */
export function loadConfig(configFile: string): LoadedConfig {
  const files = readConfigFiles(configFile);
  if (files.problems.length > 0 || !files.config || !files.registry) throw new ConfigError(files.problems);
  return {
    configFile: files.configFile,
    registryFile: files.registryFile,
    config: files.config,
    registry: files.registry,
    configSource: files.configSource,
    registrySource: files.registrySource,
  };
}
