import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { runCli } from "./cli-capture.js";

/**
 * Every fixture under test/fixtures/config goes through the real `validate` command. Each
 * invalid fixture is paired with the exact text the operator sees (expected.txt, where
 * `{fixtures}` stands for the fixture directory as given on the command line).
 */
const root = relative(process.cwd(), join(import.meta.dirname, "../fixtures/config"));
const invalidDir = join(root, "invalid");
const validDir = join(root, "valid");

describe("validate: invalid fixtures print every problem, exactly", () => {
  const cases = readdirSync(invalidDir).sort();
  it("has a fixture for each kind of mistake the brief names", () => {
    expect(cases).toEqual(
      expect.arrayContaining([
        "misspelled-key",
        "wrong-type",
        "bad-duration",
        "unknown-role",
        "invalid-cel",
        "hs256-with-jwks",
        "server-name-not-dns",
        "duplicate-tool",
        "bad-pin",
        "missing-registry",
        "missing-jwks-file",
        "every-problem",
        "unknown-rule-target",
      ]),
    );
  });

  for (const name of cases) {
    it(name, async () => {
      const expected = readFileSync(join(invalidDir, name, "expected.txt"), "utf8").replaceAll(
        "{fixtures}",
        invalidDir,
      );
      const run = await runCli(["validate", "--config", join(invalidDir, name, "gateway.yaml")]);
      expect(run.stderr).toBe(expected);
      expect(run.stdout).toBe("");
      expect(run.code).toBe(1);
      // The summary line counts exactly the problems printed above it.
      const lines = expected.trimEnd().split("\n");
      expect(lines.at(-1)).toBe(`${lines.length - 1} problem(s) found.`);
      for (const line of lines.slice(0, -1)) {
        expect(line).toMatch(/^\S+\.(yaml|json):\d+:\d+: \S+: .+$/);
      }
    });
  }
});

describe("validate: valid fixtures", () => {
  for (const name of readdirSync(validDir).sort()) {
    it(name, async () => {
      const file = join(validDir, name, "gateway.yaml");
      const run = await runCli(["validate", "--config", file]);
      expect(run.stderr).toBe("");
      expect(run.code).toBe(0);
      expect(run.stdout).toMatch(
        new RegExp(`^${file.replaceAll(".", "\\.")}: valid \\(registry 1\\.0\\.0: 2 servers, 3 tools;`),
      );
    });
  }
});

describe("validate: files and arguments", () => {
  it("reports a missing config file", async () => {
    const run = await runCli(["validate", "--config", "no/such/gateway.yaml"]);
    expect(run).toEqual({
      code: 1,
      stdout: "",
      stderr: "no/such/gateway.yaml: (root): file not found\n1 problem(s) found.\n",
    });
  });

  it("is a usage error (exit 2) without --config or with an unknown option", async () => {
    const missing = await runCli(["validate"]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("mcp-gateway validate: --config is required");
    expect(missing.stderr).toContain("Usage: mcp-gateway validate --config <gateway.yaml>");
    const unknown = await runCli(["validate", "--confg", "x.yaml"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("Unknown option '--confg'");
  });

  it("prints its help with exit 0", async () => {
    const run = await runCli(["validate", "--help"]);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain("file:line:column: path: message");
  });
});
