import { execFile } from "node:child_process";
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ensureDevKeys } from "../../ext-service/src/config/devkeys.js";

/** The real binary in a child process: exit codes are what scripts and CI see. */
function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ["--import", "tsx", "ext-service/src/cli.ts", ...args],
      { cwd: join(import.meta.dirname, "../.."), timeout: 60_000 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === "number" ? error.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

const tmp = mkdtempSync(join(tmpdir(), "mcp-gateway-cli-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const REPO = join(import.meta.dirname, "../..");

// Each case starts the CLI from source (a cold tsx compile of every command module): 12 s at load
// average 21 on two cores, over the 20 s default when busier. The child's own limit is 60 s.
const CHILD_PROCESS_CASES = { timeout: 60_000 };

describe(
  "mcp-gateway through a symlink (npx, global install, node_modules/.bin)",
  CHILD_PROCESS_CASES,
  () => {
    const link = join(tmp, "mcp-gateway");
    symlinkSync(join(REPO, "ext-service/src/cli.ts"), link);
    function linked(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
      return new Promise((resolve) => {
        execFile(
          process.execPath,
          ["--import", "tsx", link, ...args],
          { cwd: REPO, timeout: 60_000 },
          (error, stdout, stderr) =>
            resolve({ code: error ? (typeof error.code === "number" ? error.code : -1) : 0, stdout, stderr }),
        );
      });
    }

    it("prints usage for --help", async () => {
      const result = await linked(["--help"]);
      expect(result.code).toBe(0);
      expect(result.stdout).toMatch(/^Usage: mcp-gateway <command>/m);
    });

    it("fails validate with exit 1 for a broken config", async () => {
      const broken = join(tmp, "broken-through-link.yaml");
      writeFileSync(broken, "registry: ../nowhere/registry.yaml\nauth: { mode: sometimes }\n");
      const result = await linked(["validate", "--config", broken]);
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/auth\.mode/);
    });

    it("keeps the command modules independent of cli.ts (no import cycle)", () => {
      const dir = join(REPO, "ext-service/src/commands");
      for (const file of readdirSync(dir).filter((f) => f.endsWith(".ts"))) {
        expect(readFileSync(join(dir, file), "utf8"), file).not.toMatch(/from "\.\.\/cli\.js"/);
      }
    });
  },
);

describe("mcp-gateway validate (child process)", CHILD_PROCESS_CASES, () => {
  it("exits 0 for examples/gateway.yaml with its registry and a JWKS", async () => {
    // The example points at ../registry/registry.yaml and ../.dev/jwks.json: rebuild that layout.
    cpSync("examples", join(tmp, "examples"), { recursive: true });
    cpSync("registry", join(tmp, "registry"), { recursive: true });
    await ensureDevKeys(join(tmp, ".dev"));
    const run = await cli(["validate", "--config", join(tmp, "examples/gateway.yaml")]);
    expect(run.stderr).toBe("");
    expect(run.stdout).toMatch(
      /gateway\.yaml: valid \(registry \S+: 3 servers, 9 tools; 6 roles, 6 agents; auth required\)/,
    );
    expect(run.code).toBe(0);
  });

  it("exits 1 and prints every problem for an invalid config", async () => {
    const run = await cli([
      "validate",
      "--config",
      "test/fixtures/config/invalid/every-problem/gateway.yaml",
    ]);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe("");
    const lines = run.stderr.trimEnd().split("\n");
    expect(lines.at(-1)).toBe("7 problem(s) found.");
    expect(lines.filter((l) => l.includes("every-problem/gateway.yaml:"))).toHaveLength(3);
    expect(lines.filter((l) => l.includes("every-problem/registry.yaml:"))).toHaveLength(4);
  });

  it("exits 2 on a usage error", async () => {
    const run = await cli(["validate"]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("--config is required");
  });
});
