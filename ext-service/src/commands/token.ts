import { resolve } from "node:path";
import type { Command } from "../cli.js";
import { UsageError } from "../cli.js";
import { DEV_AUDIENCE, DEV_ISSUER, ensureDevKeys, signDevToken } from "../config/devkeys.js";

export const DEFAULT_DEV_DIR = ".dev";

export const tokenCommand: Command = {
  name: "token",
  summary: "Mint a signed JWT from the dev issuer (demo and local testing only)",
  usage: `Usage: mcp-gateway token --sub <agent> [--roles a,b] [--ttl 1h] [--keys .dev] [--aud mcp-gateway]

Signs a token with the local dev key in <keys>/signing-key.json (created on first use, never
committed). Issuer '${DEV_ISSUER}', audience '${DEV_AUDIENCE}' unless --aud is given.
Prints the token alone on stdout.`,
  options: {
    sub: { type: "string" },
    roles: { type: "string" },
    ttl: { type: "string", default: "1h" },
    keys: { type: "string", default: DEFAULT_DEV_DIR },
    aud: { type: "string", default: DEV_AUDIENCE },
  },
  async run(values) {
    if (typeof values.sub !== "string" || values.sub === "") throw new UsageError("--sub is required");
    const ttl = values.ttl as string;
    if (!/^\d+(\.\d+)?(ms|s|m|h)$/.test(ttl))
      throw new UsageError(`--ttl '${ttl}' is not a duration such as 30m or 1h`);
    const keys = await ensureDevKeys(resolve(values.keys as string));
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
