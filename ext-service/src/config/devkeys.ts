import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { SignJWT, exportJWK, generateKeyPair, importJWK, type JWK } from "jose";
import { durationMs } from "./schema.js";

/** The demo/dev issuer: a local key pair, created on first use and never committed. */
export const DEV_ISSUER = "mcp-gateway-dev";
export const DEV_AUDIENCE = "mcp-gateway";
export const DEV_ALG = "ES256";

export interface DevKeys {
  privateJwk: JWK;
  jwksFile: string;
}

export function devKeyPaths(dir: string): { privateFile: string; jwksFile: string } {
  return { privateFile: join(dir, "signing-key.json"), jwksFile: join(dir, "jwks.json") };
}

/** Loads the dev key pair from `dir`, creating it (mode 0600) when missing. */
export async function ensureDevKeys(dir: string): Promise<DevKeys> {
  const { privateFile, jwksFile } = devKeyPaths(dir);
  if (existsSync(privateFile) && existsSync(jwksFile)) {
    return { privateJwk: JSON.parse(readFileSync(privateFile, "utf8")) as JWK, jwksFile };
  }
  const { privateKey, publicKey } = await generateKeyPair(DEV_ALG, { extractable: true });
  const kid = `dev-${Date.now().toString(36)}`;
  const privateJwk = { ...(await exportJWK(privateKey)), kid, alg: DEV_ALG, use: "sig" };
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg: DEV_ALG, use: "sig" };
  mkdirSync(dirname(privateFile), { recursive: true });
  writeFileSync(privateFile, JSON.stringify(privateJwk, null, 2) + "\n", { mode: 0o600 });
  writeFileSync(jwksFile, JSON.stringify({ keys: [publicJwk] }, null, 2) + "\n");
  return { privateJwk, jwksFile };
}

/** Where the dev session key lives beside the dev signing key. */
export function devSessionKeyFile(dir: string): string {
  return join(dir, "session-key");
}

/**
 * The dev gateway's `sessions.keys` secret: created in `dir` on first use (32 random bytes,
 * base64url, mode 0600) and read back after, so session ids the agents hold survive a restart of
 * `mcp-gateway dev`. Never committed (.dev/ is gitignored). A file others may read is tightened
 * to 0600 (it seals every session id); one holding less than 32 characters is replaced.
 */
export function ensureDevSessionKey(dir: string): string {
  const file = devSessionKeyFile(dir);
  if (existsSync(file)) {
    if ((statSync(file).mode & 0o077) !== 0) chmodSync(file, 0o600);
    if (readFileSync(file, "utf8").trim().length >= 32) return file;
  }
  mkdirSync(dir, { recursive: true });
  writeFileSync(file, randomBytes(32).toString("base64url") + "\n", { mode: 0o600 });
  chmodSync(file, 0o600); // writeFileSync's mode applies to a new file only
  return file;
}

export interface TokenRequest {
  subject: string;
  roles?: string[];
  ttl?: string;
  issuer?: string;
  audience?: string;
  extraClaims?: Record<string, unknown>;
}

export async function signDevToken(privateJwk: JWK, req: TokenRequest): Promise<string> {
  const key = await importJWK(privateJwk, privateJwk.alg ?? DEV_ALG);
  const ttlSeconds = Math.round(durationMs(req.ttl ?? "1h") / 1000);
  const claims: Record<string, unknown> = { ...req.extraClaims };
  if (req.roles && req.roles.length > 0) claims.roles = req.roles;
  return new SignJWT(claims)
    .setProtectedHeader({ alg: privateJwk.alg ?? DEV_ALG, kid: privateJwk.kid, typ: "JWT" })
    .setSubject(req.subject)
    .setIssuer(req.issuer ?? DEV_ISSUER)
    .setAudience(req.audience ?? DEV_AUDIENCE)
    .setIssuedAt()
    .setExpirationTime(`${ttlSeconds}s`)
    .sign(key);
}
