import { existsSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import type { Command } from "./command.js";
import { UsageError } from "./command.js";
import { DEV_AUDIENCE, DEV_ISSUER, devKeyPaths, ensureDevKeys, signDevToken } from "../config/devkeys.js";
import { repoRoot } from "./dev.js";

export const DEFAULT_DEV_DIR = ".dev";

/**
 * Where the dev signing key is: `--keys` when given; else the nearest `.dev/` holding a key in the
 * current directory or above it (run from anywhere inside a project); else the `.dev/` of this
 * gateway's checkout, which `mcp-gateway dev` (`npm start`) creates. A key made up on the spot
 * would sign tokens no gateway trusts, so none is created unless asked (`--init-key`).
 */
export function findDevKeyDir(
  cwd: string,
  explicit: string | undefined,
  checkout: string | undefined,
): { dir: string; found: boolean } {
  if (explicit !== undefined) {
    const dir = resolve(cwd, explicit);
    return { dir, found: hasDevKey(dir) };
  }
  for (let dir = resolve(cwd); ; dir = dirname(dir)) {
    if (hasDevKey(join(dir, DEFAULT_DEV_DIR))) return { dir: join(dir, DEFAULT_DEV_DIR), found: true };
    if (dirname(dir) === dir) break;
  }
  if (checkout !== undefined && hasDevKey(checkout)) return { dir: checkout, found: true };
  return { dir: resolve(cwd, DEFAULT_DEV_DIR), found: false };
}

/** The `.dev/` of this gateway's checkout, where `mcp-gateway dev` keeps its key. */
export function checkoutDevDir(): string | undefined {
  try {
    return join(repoRoot(), DEFAULT_DEV_DIR);
  } catch {
    return undefined; // installed without the examples: there is no checkout to look in
  }
}

function hasDevKey(dir: string): boolean {
  const { privateFile, jwksFile } = devKeyPaths(dir);
  return existsSync(privateFile) && existsSync(jwksFile);
}

export const tokenCommand: Command = {
  name: "token",
  summary: "Mint a signed JWT from the dev issuer (demo and local testing only)",
  usage: `Usage: mcp-gateway token --sub <agent> [--roles a,b] [--ttl 1h] [--keys DIR] [--aud mcp-gateway] [--init-key]

Signs a token with the dev key <keys>/signing-key.json. Without --keys, the key is the one in
the nearest .dev/ of the current directory or a parent, else in the .dev/ of this gateway's
checkout (created by 'mcp-gateway dev' / 'npm start'). When there is none, the command fails:
--init-key creates a new key pair in <keys> (default ./.dev), and a gateway accepts its tokens
only once its config trusts <keys>/jwks.json.
Issuer '${DEV_ISSUER}', audience '${DEV_AUDIENCE}' unless --aud is given.
Prints the token alone on stdout.`,
  options: {
    sub: { type: "string" },
    roles: { type: "string" },
    ttl: { type: "string", default: "1h" },
    keys: { type: "string" },
    aud: { type: "string", default: DEV_AUDIENCE },
    "init-key": { type: "boolean", default: false },
  },
  async run(values) {
    if (typeof values.sub !== "string" || values.sub === "") throw new UsageError("--sub is required");
    const ttl = values.ttl as string;
    if (!/^\d+(\.\d+)?(ms|s|m|h)$/.test(ttl))
      throw new UsageError(`--ttl '${ttl}' is not a duration such as 30m or 1h`);
    const cwd = process.cwd();
    const located = findDevKeyDir(cwd, values.keys as string | undefined, checkoutDevDir());
    if (!located.found && values["init-key"] !== true) {
      const where =
        values.keys === undefined
          ? `no dev signing key in ${DEFAULT_DEV_DIR}/ here or in a parent directory, nor in this gateway's checkout`
          : `no dev signing key in ${located.dir}`;
      process.stderr.write(
        `mcp-gateway token: ${where}.\n` +
          `Pass --keys with the directory of the key your gateway trusts (its dev issuer's jwks.json sits\n` +
          `beside signing-key.json; 'mcp-gateway dev' creates them in the checkout's ${DEFAULT_DEV_DIR}/), or\n` +
          `--init-key to create a new key pair in ${located.dir} (trust its jwks.json in the gateway config).\n`,
      );
      return 1;
    }
    const keys = await ensureDevKeys(located.dir);
    if (!located.found) {
      process.stderr.write(`mcp-gateway token: created a new dev key pair in ${located.dir}\n`);
    } else if (located.dir !== resolve(cwd, DEFAULT_DEV_DIR)) {
      process.stderr.write(
        `mcp-gateway token: signed with the key in ${relative(cwd, located.dir) || "."}\n`,
      );
    }
    const roles =
      typeof values.roles === "string"
        ? values.roles
            .split(",")
            .map((r) => r.trim())
            .filter(Boolean)
        : [];
    const token = await signDevToken(keys.privateJwk, {
      subject: values.sub,
      roles,
      ttl,
      audience: values.aud as string,
    });
    process.stdout.write(token + "\n");
  },
};
