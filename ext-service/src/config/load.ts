import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { LineCounter, isNode, parseDocument, type Document } from "yaml";
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

interface ParsedYaml {
  value: unknown;
  locate(path: readonly PropertyKey[]): { line: number; column: number } | undefined;
}

function parseYamlFile(file: string, text: string): ParsedYaml {
  const lineCounter = new LineCounter();
  const doc: Document = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      doc.errors.map((e) => {
        const pos = e.linePos?.[0];
        return {
          file,
          path: "",
          line: pos?.line,
          column: pos?.col,
          message: `YAML: ${e.message.split("\n")[0]}`,
        };
      }),
    );
  }
  return {
    value: doc.toJS({ maxAliasCount: 100 }),
    locate(path) {
      // Walk up until a node exists: a missing key is reported at its parent.
      for (let n = path.length; n >= 0; n--) {
        const node = doc.getIn(path.slice(0, n) as unknown[], true);
        if (isNode(node) && node.range) {
          const pos = lineCounter.linePos(node.range[0]);
          return { line: pos.line, column: pos.col };
        }
      }
      return undefined;
    },
  };
}

function describeIssue(issue: z.core.$ZodIssue): string {
  if (issue.code === "unrecognized_keys") {
    return `unknown key${issue.keys.length > 1 ? "s" : ""} ${issue.keys.map((k) => `'${k}'`).join(", ")}`;
  }
  return issue.message;
}

function parseWith<S extends z.ZodType>(schema: S, file: string, text: string): z.infer<S> {
  const parsed = parseYamlFile(file, text);
  const result = schema.safeParse(parsed.value ?? {});
  if (result.success) return result.data;
  throw new ConfigError(
    result.error.issues.map((issue) => {
      const pos = parsed.locate(issue.path);
      return {
        file,
        path: formatPath(issue.path),
        line: pos?.line,
        column: pos?.column,
        message: describeIssue(issue),
      };
    }),
  );
}

function readText(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError([
      { file, path: "", message: code === "ENOENT" ? "file not found" : `cannot read (${code})` },
    ]);
  }
}

export function parseGatewayConfig(text: string, file = "gateway.yaml"): GatewayConfig {
  return parseWith(GatewayConfigSchema, file, text);
}

export function parseRegistry(text: string, file = "registry.yaml"): Registry {
  return parseWith(RegistrySchema, file, text);
}

export interface LoadedConfig {
  configFile: string;
  registryFile: string;
  config: GatewayConfig;
  registry: Registry;
}

/**
 * Loads gateway.yaml and the registry it names. Problems in both files are collected and thrown
 * together, so `validate` prints every error in one run.
 */
export function loadConfig(configFile: string): LoadedConfig {
  const configPath = resolve(configFile);
  const problems: ConfigProblem[] = [];
  let config: GatewayConfig | undefined;
  try {
    config = parseGatewayConfig(readText(configPath), configFile);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    problems.push(...err.problems);
  }
  let registry: Registry | undefined;
  let registryFile = "";
  if (config) {
    registryFile = resolve(dirname(configPath), config.registry);
    try {
      registry = parseRegistry(readText(registryFile), registryFile);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      problems.push(...err.problems);
    }
  }
  if (problems.length > 0 || !config || !registry) throw new ConfigError(problems);
  return { configFile: configPath, registryFile, config, registry };
}
