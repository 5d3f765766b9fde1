import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from "jose";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { findDevKeyDir } from "../../ext-service/src/commands/token.js";
import { DEV_ISSUER, ensureDevKeys } from "../../ext-service/src/config/devkeys.js";
import { runCli } from "./cli-capture.js";

const tmp = mkdtempSync(join(tmpdir(), "mcp-gateway-token-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const startDir = process.cwd();
afterEach(() => process.chdir(startDir));

/** `token` run from `cwd`, as a user in a shell would. */
async function tokenIn(cwd: string, args: string[]) {
  process.chdir(cwd);
  return runCli(["token", ...args]);
}

async function verifiesWith(token: string, jwksFile: string): Promise<string | undefined> {
  const jwks = JSON.parse(readFileSync(jwksFile, "utf8")) as JSONWebKeySet;
  const { payload } = await jwtVerify(token, createLocalJWKSet(jwks), { issuer: DEV_ISSUER });
  return payload.sub;
}

describe("new-user trial B11: token never makes up a signing key", () => {
  it("run in a directory with no key, it creates no .dev there", async () => {
    const empty = join(tmp, "elsewhere");
    mkdirSync(empty);
    const run = await tokenIn(empty, ["--sub", "x"]);
    expect(existsSync(join(empty, ".dev"))).toBe(false);
    // Either this checkout's dev key signed it (and says so), or the command failed saying why.
    if (run.code === 0) expect(run.stderr).toMatch(/signed with the key in .*\.dev/);
    else expect(run.stderr).toContain("no dev signing key");
  });

  it("an explicit --keys without a key fails with what to do, and exit 1", async () => {
    const run = await tokenIn(tmp, ["--sub", "x", "--keys", "nokeys"]);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe("");
    expect(run.stderr).toContain(`no dev signing key in ${join(tmp, "nokeys")}`);
    expect(run.stderr).toContain("--init-key");
    expect(existsSync(join(tmp, "nokeys"))).toBe(false);
  });

  it("--init-key creates the pair and says so; the token verifies with its jwks.json", async () => {
    const run = await tokenIn(tmp, ["--sub", "fresh-bot", "--keys", "made", "--init-key"]);
    expect(run.code).toBe(0);
    expect(run.stderr).toContain(`created a new dev key pair in ${join(tmp, "made")}`);
    expect(await verifiesWith(run.stdout.trim(), join(tmp, "made", "jwks.json"))).toBe("fresh-bot");
  });

  it("finds the project's .dev from a subdirectory and signs with that key", async () => {
    const project = join(tmp, "project");
    const keys = await ensureDevKeys(join(project, ".dev"));
    const deep = join(project, "a", "b");
    mkdirSync(deep, { recursive: true });
    const run = await tokenIn(deep, ["--sub", "support-bot"]);
    expect(run.code).toBe(0);
    expect(run.stderr).toBe(`mcp-gateway token: signed with the key in ${join("..", "..", ".dev")}\n`);
    expect(await verifiesWith(run.stdout.trim(), keys.jwksFile)).toBe("support-bot");
    expect(existsSync(join(deep, ".dev"))).toBe(false);
  });

  it("looks in the checkout's .dev last, and reports nothing found when there is none", () => {
    const lone = join(tmp, "lone");
    mkdirSync(lone);
    expect(findDevKeyDir(lone, undefined, undefined)).toEqual({ dir: join(lone, ".dev"), found: false });
    expect(findDevKeyDir(lone, undefined, join(tmp, "made"))).toEqual({
      dir: join(tmp, "made"),
      found: true,
    });
  });
});
