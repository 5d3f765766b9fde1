import { readFileSync } from "node:fs";
import { LineCounter, isNode, parseDocument } from "yaml";
import { UsageError } from "./command.js";
import { referenceProblems } from "../config/compile.js";
import { loadConfig } from "../config/load.js";
import type { Registry } from "../config/schema.js";
import { toolPin } from "../policy/canonical.js";
import { crossReferences, nameCollisions } from "../policy/collisions.js";
import { scanInjection } from "../policy/injection.js";
import type { DecodeLimits } from "../policy/normalize.js";
import { compileSchema } from "../policy/schema-validation.js";
import { definitionTexts } from "../policy/security.js";
import type { RegistrySubcommand } from "./command.js";

export interface LintProblem {
  severity: "error" | "warning";
  /** Path inside registry.yaml, e.g. `servers[0].tools[2].description`. */
  path: string;
  message: string;
}

const toolPath = (i: number, j: number) => `servers[${i}].tools[${j}]`;

/** Every check `registry lint` runs, as data (the command formats and locates them). */
export function lintRegistry(registry: Registry, decode?: DecodeLimits): LintProblem[] {
  const problems: LintProblem[] = [];
  const where = new Map<string, string>();
  registry.servers.forEach((s, i) =>
    s.tools.forEach((t, j) => where.set(`${s.name}/${t.name}`, toolPath(i, j))),
  );
  const all = registry.servers.flatMap((s) =>
    s.tools.map((t) => ({ server: s.name, name: t.name, description: t.description })),
  );

  for (const c of nameCollisions(all)) {
    problems.push({
      severity: "error",
      path: `${where.get(c.tools[0]!)}.name`,
      message: `collision: ${c.message}`,
    });
  }

  registry.servers.forEach((server, i) => {
    server.tools.forEach((tool, j) => {
      const at = toolPath(i, j);
      const label = `${server.name}/${tool.name}`;
      for (const field of ["inputSchema", "outputSchema"] as const) {
        const schema = tool[field];
        if (schema === undefined) continue;
        const compiled = compileSchema(schema);
        if (!compiled.ok) {
          problems.push({
            severity: "error",
            path: `${at}.${field}`,
            message: `${label}: invalid JSON Schema: ${compiled.error}`,
          });
        } else if (field === "inputSchema" && schema.type !== "object") {
          problems.push({
            severity: "error",
            path: `${at}.${field}`,
            message: `${label}: an inputSchema must have type 'object'`,
          });
        }
      }
      const rules = new Map<string, "block" | "alert">();
      for (const text of definitionTexts(tool)) {
        for (const f of scanInjection(text, decode ? { decode } : {}).findings) {
          if (rules.get(f.rule) !== "block") rules.set(f.rule, f.tier);
        }
      }
      for (const [rule, tier] of rules) {
        problems.push({
          severity: tier === "block" ? "error" : "warning",
          path: `${at}.description`,
          message: `${label}: ${tier === "block" ? "poisoning" : "suspicious text"} (${rule})`,
        });
      }
      const others = all.filter((t) => t.server !== server.name);
      for (const c of crossReferences(
        { server: server.name, name: tool.name, description: tool.description },
        others,
        registry.servers.map((s) => s.name),
      )) {
        problems.push({ severity: "error", path: `${at}.description`, message: `shadowing: ${c.message}` });
      }
      const computed = toolPin(tool);
      if (tool.pin === undefined) {
        problems.push({
          severity: "warning",
          path: at,
          message: `${label}: no pin recorded (definition hashes to ${computed})`,
        });
      } else if (tool.pin !== computed) {
        problems.push({
          severity: "error",
          path: `${at}.pin`,
          message: `${label}: pin does not match the recorded definition (which hashes to ${computed})`,
        });
      }
    });
  });
  return problems;
}

function locator(file: string): (path: string) => string {
  const lineCounter = new LineCounter();
  const doc = parseDocument(readFileSync(file, "utf8"), { lineCounter });
  return (path) => {
    const keys: (string | number)[] = [];
    for (const m of path.matchAll(/([^.[\]]+)|\[(\d+)\]/g))
      keys.push(m[2] !== undefined ? Number(m[2]) : m[1]!);
    for (let n = keys.length; n >= 0; n--) {
      const node = doc.getIn(keys.slice(0, n), true);
      if (isNode(node) && node.range) {
        const pos = lineCounter.linePos(node.range[0]);
        return `${file}:${pos.line}:${pos.col}`;
      }
    }
    return file;
  };
}

export const registryLintCommand: RegistrySubcommand = {
  name: "lint",
  summary: "Check the registry: collisions, schemas, poisoned descriptions, pins",
  usage: `Usage: mcp-gateway registry lint --config <gateway.yaml>

Checks the registry named by gateway.yaml:
  - the same tool name on two servers, and names equal after folding case, separators
    (_ - . space) and lookalike characters (errors)
  - every inputSchema and outputSchema compiles as JSON Schema (errors)
  - descriptions and schema texts scanned for poisoning: block-tier rules are errors,
    alert-tier rules warnings
  - descriptions that give instructions about another server or its tools (errors)
  - recorded pins that do not match the definition (errors); missing pins (warnings)
  - rules and security overrides in gateway.yaml naming a server, or a tool of a known
    server, that the registry lacks (errors, located in gateway.yaml)

Each problem is printed as file:line:column: severity: path: message.
Exit code 0 when there are no errors, 1 otherwise.`,
  options: { config: { type: "string", short: "c" } },
  async run(values) {
    const file = values.config;
    if (typeof file !== "string") throw new UsageError("--config is required");
    const loaded = loadConfig(file);
    const problems = lintRegistry(loaded.registry, loaded.config.security.decode);
    const locate = locator(loaded.registryFile);
    for (const p of problems) {
      const stream = p.severity === "error" ? process.stderr : process.stdout;
      stream.write(`${locate(p.path)}: ${p.severity}: ${p.path}: ${p.message}\n`);
    }
    // Role rules and overrides that name servers or tools this registry lacks (in gateway.yaml).
    const references = referenceProblems(loaded);
    for (const p of references) {
      const at = p.line ? `${p.file}:${p.line}:${p.column ?? 1}` : p.file;
      process.stderr.write(`${at}: error: ${p.path}: ${p.message}\n`);
    }
    const errors = problems.filter((p) => p.severity === "error").length + references.length;
    const tools = loaded.registry.servers.reduce((n, s) => n + s.tools.length, 0);
    process.stdout.write(
      `${loaded.registryFile}: ${loaded.registry.servers.length} servers, ${tools} tools: ` +
        `${errors} error(s), ${problems.length + references.length - errors} warning(s)\n`,
    );
    return errors > 0 ? 1 : 0;
  },
};
