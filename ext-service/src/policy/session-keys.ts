import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { MIN_SECRET_LENGTH } from "./seal.js";
import type { PolicyConfig } from "./settings.js";

/** A problem with one configured session key, at its path in gateway.yaml. */
export interface SessionKeyProblem {
  path: (string | number)[];
  message: string;
}

/**
 * Reads the `sessions.keys` secrets (files relative to gateway.yaml, or environment variables),
 * trimmed of surrounding white space. Every unusable key is reported; none is skipped silently.
 */
export function readSessionSecrets(
  config: PolicyConfig,
  baseDir: string,
): { secrets: string[]; problems: SessionKeyProblem[] } {
  const secrets: string[] = [];
  const problems: SessionKeyProblem[] = [];
  config.sessions.keys.forEach((source, i) => {
    let secret: string | undefined;
    let where: string;
    if ("file" in source) {
      where = `file ${source.file}`;
      try {
        secret = readFileSync(resolve(baseDir, source.file), "utf8").trim();
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        problems.push({
          path: ["sessions", "keys", i, "file"],
          message:
            code === "ENOENT"
              ? `session key file not found: ${source.file}`
              : `cannot read ${where} (${code})`,
        });
        return;
      }
    } else {
      where = `environment variable ${source.env}`;
      secret = process.env[source.env]?.trim();
    }
    if (!secret || secret.length < MIN_SECRET_LENGTH) {
      problems.push({
        path: ["sessions", "keys", i, "file" in source ? "file" : "env"],
        message: `${where} must hold a secret of at least ${MIN_SECRET_LENGTH} characters (e.g. 32 random bytes as base64)`,
      });
      return;
    }
    secrets.push(secret);
  });
  return { secrets, problems };
}
