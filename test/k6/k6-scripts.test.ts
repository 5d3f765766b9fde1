import { spawnSync } from "node:child_process";
import { readFileSync, readdirSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { describe, expect, it } from "vitest";

/**
 * k6 cannot be installed here, so its scripts are checked for structure: each parses as an ES
 * module (V8 via `node --check`, TypeScript's parser for the syntax tree), imports only k6 modules
 * and its own lib/, exports options with scenarios and thresholds and the functions its scenarios
 * run, reads its parameters from __ENV, and every variable it reads is documented in the README.
 */

const K6_DIR = fileURLToPath(new URL("../../k6/", import.meta.url));
const README = readFileSync(join(K6_DIR, "README.md"), "utf8");

const K6_MODULES = new Set([
  "k6",
  "k6/http",
  "k6/metrics",
  "k6/execution",
  "k6/encoding",
  "k6/crypto",
  "k6/data",
  "k6/timers",
]);
/** Metrics k6 defines itself (thresholds may name them without declaring them). */
const BUILTIN_METRICS = new Set([
  "checks",
  "data_received",
  "data_sent",
  "dropped_iterations",
  "http_req_blocked",
  "http_req_connecting",
  "http_req_duration",
  "http_req_failed",
  "http_req_receiving",
  "http_req_sending",
  "http_req_tls_handshaking",
  "http_req_waiting",
  "http_reqs",
  "iteration_duration",
  "iterations",
  "vus",
  "vus_max",
]);
/** Globals of Node or browsers that k6 does not have. */
const FOREIGN_GLOBALS = new Set(["require", "process", "Buffer", "module", "exports", "__dirname", "fetch"]);

function jsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return jsFiles(path);
    return name.endsWith(".js") ? [path] : [];
  });
}

interface ScriptFacts {
  file: string;
  imports: string[];
  dynamicImports: number;
  foreignGlobals: string[];
  envReads: string[];
  computedEnvReads: number;
  exportedFunctions: string[];
  hasDefaultExport: boolean;
  optionsKeys: string[] | undefined;
  thresholdKeys: string[];
  declaredMetrics: string[];
  executors: string[];
  execs: string[];
}

function propertyName(name: ts.PropertyName): string | undefined {
  if (ts.isIdentifier(name) || ts.isStringLiteral(name)) return name.text;
  if (ts.isComputedPropertyName(name) && ts.isStringLiteral(name.expression)) return name.expression.text;
  return undefined;
}

function hasExport(node: ts.Node): boolean {
  return (
    ts.canHaveModifiers(node) &&
    (ts.getModifiers(node) ?? []).some((m) => m.kind === ts.SyntaxKind.ExportKeyword)
  );
}

function analyse(file: string): ScriptFacts {
  const sf = ts.createSourceFile(
    file,
    readFileSync(file, "utf8"),
    ts.ScriptTarget.ES2022,
    true,
    ts.ScriptKind.JS,
  );
  const facts: ScriptFacts = {
    file: relative(K6_DIR, file),
    imports: [],
    dynamicImports: 0,
    foreignGlobals: [],
    envReads: [],
    computedEnvReads: 0,
    exportedFunctions: [],
    hasDefaultExport: false,
    optionsKeys: undefined,
    thresholdKeys: [],
    declaredMetrics: [],
    executors: [],
    execs: [],
  };
  const objectKeys = (o: ts.ObjectLiteralExpression) =>
    o.properties.flatMap((p) => {
      const name = p.name ? propertyName(p.name) : undefined;
      return name === undefined ? [] : [name];
    });

  for (const st of sf.statements) {
    if (ts.isImportDeclaration(st) && ts.isStringLiteral(st.moduleSpecifier)) {
      facts.imports.push(st.moduleSpecifier.text);
    }
    if (ts.isFunctionDeclaration(st) && hasExport(st)) {
      const isDefault = (ts.getModifiers(st) ?? []).some((m) => m.kind === ts.SyntaxKind.DefaultKeyword);
      if (isDefault) facts.hasDefaultExport = true;
      else if (st.name) facts.exportedFunctions.push(st.name.text);
    }
    if (ts.isVariableStatement(st) && hasExport(st)) {
      for (const d of st.declarationList.declarations) {
        if (ts.isIdentifier(d.name) && d.name.text === "options" && d.initializer) {
          facts.optionsKeys = ts.isObjectLiteralExpression(d.initializer) ? objectKeys(d.initializer) : [];
        }
      }
    }
  }

  const visit = (node: ts.Node): void => {
    if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword)
      facts.dynamicImports++;
    if (
      ts.isIdentifier(node) &&
      FOREIGN_GLOBALS.has(node.text) &&
      !(ts.isPropertyAccessExpression(node.parent) && node.parent.name === node) &&
      !(ts.isPropertyAssignment(node.parent) && node.parent.name === node)
    ) {
      facts.foreignGlobals.push(node.text);
    }
    if (
      ts.isPropertyAccessExpression(node) &&
      ts.isIdentifier(node.expression) &&
      node.expression.text === "__ENV"
    ) {
      facts.envReads.push(node.name.text);
    }
    if (
      ts.isElementAccessExpression(node) &&
      ts.isIdentifier(node.expression) &&
      node.expression.text === "__ENV"
    ) {
      if (ts.isStringLiteral(node.argumentExpression)) facts.envReads.push(node.argumentExpression.text);
      else facts.computedEnvReads++;
    }
    if (
      ts.isNewExpression(node) &&
      ts.isIdentifier(node.expression) &&
      ["Trend", "Rate", "Counter", "Gauge"].includes(node.expression.text) &&
      node.arguments?.[0] &&
      ts.isStringLiteral(node.arguments[0])
    ) {
      facts.declaredMetrics.push(node.arguments[0].text);
    }
    if (ts.isPropertyAssignment(node) && ts.isStringLiteral(node.initializer)) {
      const name = propertyName(node.name);
      if (name === "executor") facts.executors.push(node.initializer.text);
      if (name === "exec") facts.execs.push(node.initializer.text);
    }
    // Scenario builders take the exec name as an argument: openRate("direct").
    if (
      ts.isPropertyAssignment(node) &&
      ts.isIdentifier(node.initializer) &&
      propertyName(node.name) === "exec"
    ) {
      facts.execs.push(`param:${node.initializer.text}`);
    }
    // The thresholds object: `const thresholds = {...}` plus `thresholds.x = ` / `thresholds["x"] = `.
    if (ts.isVariableDeclaration(node) && ts.isIdentifier(node.name) && node.name.text === "thresholds") {
      if (node.initializer && ts.isObjectLiteralExpression(node.initializer)) {
        facts.thresholdKeys.push(...objectKeys(node.initializer));
      }
    }
    if (
      ts.isBinaryExpression(node) &&
      node.operatorToken.kind === ts.SyntaxKind.EqualsToken &&
      (ts.isPropertyAccessExpression(node.left) || ts.isElementAccessExpression(node.left)) &&
      ts.isIdentifier(node.left.expression) &&
      node.left.expression.text === "thresholds"
    ) {
      const key = ts.isPropertyAccessExpression(node.left)
        ? node.left.name.text
        : ts.isStringLiteral(node.left.argumentExpression)
          ? node.left.argumentExpression.text
          : "<computed>";
      facts.thresholdKeys.push(key);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return facts;
}

/** Exec names passed to scenario builders: `openRate("direct")`, `sessions("gatewaySession")`. */
function builderExecs(file: string, builder: string): string[] {
  const text = readFileSync(file, "utf8");
  return [...text.matchAll(new RegExp(`\\b${builder}\\("([A-Za-z_$][\\w$]*)"\\)`, "g"))].map((m) => m[1]!);
}

const files = jsFiles(K6_DIR);
const entries = files.filter((f) => dirname(f) === resolve(K6_DIR));
const facts = new Map(files.map((f) => [f, analyse(f)]));

describe("k6 scripts", () => {
  it("are there: overhead.js and session.js, with their lib", () => {
    expect(entries.map((f) => relative(K6_DIR, f)).sort()).toEqual(["overhead.js", "session.js"]);
    expect(files.map((f) => relative(K6_DIR, f))).toContain(join("lib", "mcp.js"));
  });

  it.each(files.map((f) => [relative(K6_DIR, f), f]))("%s parses as an ES module", (_name, file) => {
    const check = spawnSync(process.execPath, ["--check", file], { encoding: "utf8" });
    expect(check.stderr).toBe("");
    expect(check.status).toBe(0);
  });

  it.each(files.map((f) => [relative(K6_DIR, f), f]))(
    "%s imports only k6 modules and files of k6/, and uses no Node globals",
    (_name, file) => {
      const f = facts.get(file)!;
      for (const spec of f.imports) {
        if (spec.startsWith("./") || spec.startsWith("../")) {
          const target = resolve(dirname(file), spec);
          expect(relative(K6_DIR, target).startsWith(".."), `${spec} leaves k6/`).toBe(false);
          expect(files, `${spec} exists`).toContain(target);
        } else {
          expect(K6_MODULES.has(spec), `${spec} is a k6 module`).toBe(true);
        }
      }
      expect(f.dynamicImports).toBe(0);
      expect(f.foreignGlobals).toEqual([]);
      expect(f.computedEnvReads).toBe(0);
    },
  );

  it.each(entries.map((f) => [relative(K6_DIR, f), f]))(
    "%s exports options with constant-arrival-rate scenarios, thresholds and its exec functions",
    (_name, file) => {
      const f = facts.get(file)!;
      expect(f.optionsKeys).toEqual(expect.arrayContaining(["scenarios", "thresholds"]));
      expect(f.executors.length).toBeGreaterThan(0);
      expect(new Set(f.executors)).toEqual(new Set(["constant-arrival-rate"]));
      const execs = [
        ...f.execs.filter((e) => !e.startsWith("param:")),
        ...["openRate", "sessions"].flatMap((b) => builderExecs(file, b)),
      ];
      expect(execs.length).toBeGreaterThanOrEqual(2);
      for (const exec of execs) expect(f.exportedFunctions, `exec '${exec}' is exported`).toContain(exec);
      expect(f.exportedFunctions.length + (f.hasDefaultExport ? 1 : 0)).toBeGreaterThan(0);
    },
  );

  it.each(entries.map((f) => [relative(K6_DIR, f), f]))(
    "%s has thresholds on declared or built-in metrics, including failures",
    (_name, file) => {
      const f = facts.get(file)!;
      expect(f.thresholdKeys).toContain("http_req_failed");
      for (const key of f.thresholdKeys) {
        const metric = key.split("{")[0]!;
        expect(
          BUILTIN_METRICS.has(metric) || f.declaredMetrics.includes(metric),
          `threshold on unknown metric '${key}'`,
        ).toBe(true);
      }
    },
  );

  it("overhead.js encodes the budget as thresholds on the paired added latency", () => {
    const f = [...facts.values()].find((x) => x.file === "overhead.js")!;
    expect(f.declaredMetrics).toEqual(expect.arrayContaining(["mcp_added_latency", "mcp_call_duration"]));
    expect(f.thresholdKeys).toContain("mcp_added_latency");
    expect(f.exportedFunctions).toEqual(expect.arrayContaining(["direct", "gateway", "paired"]));
  });

  it.each(entries.map((f) => [relative(K6_DIR, f), f]))(
    "%s reads its parameters from __ENV, all documented in k6/README.md",
    (name, file) => {
      const reads = new Set(facts.get(file)!.envReads);
      for (const required of ["GATEWAY_URL", "DIRECT_URL", "TOKEN", "DURATION", "TOOL", "ARGS"]) {
        expect(reads, `${name} reads ${required}`).toContain(required);
      }
      expect(reads.has("RATE") || reads.has("SESSION_RATE")).toBe(true);
      for (const v of reads) expect(README, `${v} documented`).toContain(`| \`${v}\``);
      expect(README).toMatch(new RegExp(`k6 run [^\\n]*(\\\\\\n[^\\n]*)*k6/${name.replace(".", "\\.")}`));
    },
  );

  it("the README documents no variable the scripts do not read", () => {
    const documented = [...README.matchAll(/^\| `([A-Z_0-9]+)`/gm)].map((m) => m[1]!);
    const read = new Set([...facts.values()].flatMap((f) => f.envReads));
    expect(documented.length).toBeGreaterThan(10);
    for (const v of documented) expect(read, `${v} is read by a script`).toContain(v);
  });
});
