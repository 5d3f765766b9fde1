import { hash } from "node:crypto";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  errors,
  jwtVerify,
  type JWTPayload,
  type JWTVerifyGetKey,
} from "jose";
import { durationMs, type GatewayConfig, type Issuer } from "../config/schema.js";
import type { Reason } from "./reasons.js";

/** Who is calling: resolved once per request, by ext_authz or the edge. */
export interface Principal {
  agent: string;
  roles: readonly string[];
  claims: Readonly<Record<string, unknown>>;
  issuer: string | undefined;
  anonymous: boolean;
}

export type AuthResult =
  { ok: true; principal: Principal; cached: boolean } | { ok: false; reason: Reason; detail: string };

interface CompiledIssuer {
  config: Issuer;
  key: JWTVerifyGetKey | Uint8Array;
  symmetric: boolean;
}

interface CacheEntry {
  principal: Principal;
  expiresAt: number;
}

const HMAC = /^HS/;

/** A problem at a path inside gateway.yaml (segments, e.g. ["auth", "issuers", 0, "jwks"]). */
export interface PathProblem {
  path: readonly (string | number)[];
  message: string;
}

/** Issuer settings that cannot work; config/compile.ts turns these into located ConfigProblems. */
export class ConfigurationProblem extends Error {
  constructor(readonly problems: readonly PathProblem[]) {
    super(problems.map((p) => p.message).join("; "));
    this.name = "ConfigurationProblem";
  }
}

/** Thrown while compiling one issuer; `path` is relative to the issuer. */
class IssuerProblem extends Error {
  constructor(
    readonly path: readonly (string | number)[],
    message: string,
  ) {
    super(message);
  }
}

/** Reads and checks a JWKS (file or inline): public keys only, each with a `kty`. */
function checkJwks(value: unknown, what: string): { keys: Record<string, unknown>[] } {
  const keys = (value as { keys?: unknown } | null)?.keys;
  if (typeof value !== "object" || value === null || !Array.isArray(keys) || keys.length === 0) {
    throw new Error(`${what} is not a JWKS: expected {"keys": [...]} with at least one key`);
  }
  keys.forEach((key: unknown, i) => {
    if (typeof key !== "object" || key === null || typeof (key as { kty?: unknown }).kty !== "string") {
      throw new Error(`${what}: key ${i} has no 'kty'`);
    }
    // A private key here means the signing key was published by mistake: refuse to start.
    if ("d" in key || "k" in key) throw new Error(`${what}: key ${i} is private or symmetric key material`);
  });
  return value as { keys: Record<string, unknown>[] };
}

function readJwksFile(file: string, baseDir: string): { keys: Record<string, unknown>[] } {
  let text: string;
  try {
    text = readFileSync(resolve(baseDir, file), "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new IssuerProblem(
      ["jwks", "file"],
      code === "ENOENT" ? `JWKS file not found: ${file}` : `cannot read JWKS file ${file} (${code})`,
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new IssuerProblem(["jwks", "file"], `JWKS file ${file} is not valid JSON`);
  }
  try {
    return checkJwks(value, `JWKS file ${file}`);
  } catch (err) {
    throw new IssuerProblem(["jwks", "file"], (err as Error).message);
  }
}

function compileIssuer(issuer: Issuer, baseDir: string): CompiledIssuer {
  const jwks = issuer.jwks;
  const hmacAlgs = issuer.algorithms.filter((a) => HMAC.test(a));
  if ("secretEnv" in jwks) {
    if (hmacAlgs.length !== issuer.algorithms.length) {
      throw new IssuerProblem(
        ["algorithms"],
        "a shared secret (jwks.secretEnv) only verifies HS* algorithms",
      );
    }
    const secret = process.env[jwks.secretEnv];
    if (!secret || secret.length < 32) {
      throw new IssuerProblem(
        ["jwks", "secretEnv"],
        `environment variable ${jwks.secretEnv} must hold a secret of at least 32 characters`,
      );
    }
    return { config: issuer, key: new TextEncoder().encode(secret), symmetric: true };
  }
  // An HMAC algorithm next to public keys would let anyone sign with the public key as the secret.
  if (hmacAlgs.length > 0) {
    throw new IssuerProblem(
      ["algorithms"],
      `${hmacAlgs.join(", ")} cannot be verified with public keys; HS* algorithms need a shared secret (jwks.secretEnv)`,
    );
  }
  if ("uri" in jwks) {
    return {
      config: issuer,
      key: createRemoteJWKSet(new URL(jwks.uri), {
        timeoutDuration: durationMs(jwks.timeout),
        cooldownDuration: durationMs(jwks.cooldown),
        cacheMaxAge: durationMs(jwks.cacheMaxAge),
      }),
      symmetric: false,
    };
  }
  let set: { keys: Record<string, unknown>[] };
  if ("file" in jwks) set = readJwksFile(jwks.file, baseDir);
  else {
    try {
      set = checkJwks(jwks.inline, "inline JWKS");
    } catch (err) {
      throw new IssuerProblem(["jwks", "inline"], (err as Error).message);
    }
  }
  return {
    config: issuer,
    key: createLocalJWKSet(set as Parameters<typeof createLocalJWKSet>[0]),
    symmetric: false,
  };
}

function rolesFromClaim(value: unknown): string[] {
  if (Array.isArray(value)) return value.filter((v): v is string => typeof v === "string");
  if (typeof value === "string") return value.split(/[\s,]+/).filter(Boolean);
  return [];
}

function claimAt(payload: JWTPayload, path: string): unknown {
  // Dotted paths reach nested claims such as `realm_access.roles`; an exact key wins first.
  if (path in payload) return payload[path];
  let cur: unknown = payload;
  for (const part of path.split(".")) {
    if (typeof cur !== "object" || cur === null) return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

/** Maps jose's errors onto our stable reasons. */
function reasonFor(err: unknown): { reason: Reason; detail: string } {
  const detail = err instanceof Error ? err.message : String(err);
  if (err instanceof errors.JWTExpired) return { reason: "jwt_expired", detail };
  if (err instanceof errors.JWTClaimValidationFailed) {
    // "check_failed" is a time check; "invalid"/"missing" is a claim of the wrong type or absent.
    if ((err.claim === "nbf" || err.claim === "iat") && err.reason === "check_failed") {
      return { reason: "jwt_not_yet_valid", detail };
    }
    if (err.claim === "aud") return { reason: "jwt_audience_invalid", detail };
    if (err.claim === "iss") return { reason: "jwt_issuer_unknown", detail };
    return { reason: "jwt_claims_invalid", detail };
  }
  if (err instanceof errors.JOSEAlgNotAllowed) return { reason: "jwt_algorithm_rejected", detail };
  if (err instanceof errors.JWSSignatureVerificationFailed)
    return { reason: "jwt_signature_invalid", detail };
  if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys) {
    return { reason: "jwt_key_unknown", detail };
  }
  if (err instanceof errors.JWKSTimeout || err instanceof errors.JWKSInvalid)
    return { reason: "jwks_unavailable", detail };
  if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid)
    return { reason: "token_malformed", detail };
  if (err instanceof errors.JOSENotSupported) return { reason: "jwt_algorithm_rejected", detail };
  // Network failures fetching a JWKS surface as plain errors: fail closed with a clear reason.
  return { reason: "jwks_unavailable", detail };
}

/**
 * Verifies bearer tokens against the configured issuers. Verified tokens are cached by their
 * SHA-256 so a busy agent costs one signature check per TTL; an entry never outlives `exp`.
 */
export class Authenticator {
  private readonly issuers: Map<string, CompiledIssuer>;
  private readonly cache = new Map<string, CacheEntry>();
  private readonly cacheTtlMs: number;
  private readonly cacheMax: number;
  private readonly clockSkewSec: number;
  private readonly agentRoles: ReadonlyMap<string, readonly string[]>;
  private readonly anonymous: Principal | undefined;

  constructor(
    config: GatewayConfig,
    baseDir: string,
    private readonly now: () => number = Date.now,
  ) {
    const problems: PathProblem[] = [];
    this.issuers = new Map();
    config.auth.issuers.forEach((issuer, i) => {
      try {
        this.issuers.set(issuer.issuer, compileIssuer(issuer, baseDir));
      } catch (err) {
        if (!(err instanceof IssuerProblem)) throw err;
        problems.push({ path: ["auth", "issuers", i, ...err.path], message: err.message });
      }
    });
    if (problems.length > 0) throw new ConfigurationProblem(problems);
    this.cacheTtlMs = durationMs(config.auth.tokenCache.ttl);
    this.cacheMax = config.auth.tokenCache.maxEntries;
    this.clockSkewSec = durationMs(config.auth.clockSkew) / 1000;
    this.agentRoles = new Map(Object.entries(config.agents).map(([name, a]) => [name, a.roles]));
    this.anonymous =
      config.auth.mode === "optional"
        ? Object.freeze({
            agent: config.auth.anonymous.agent,
            roles: Object.freeze(this.mergeRoles(config.auth.anonymous.agent, config.auth.anonymous.roles)),
            claims: Object.freeze({}),
            issuer: undefined,
            anonymous: true,
          })
        : undefined;
  }

  /** Extracts the token from an Authorization header value; undefined when absent. */
  static bearerToken(header: string | undefined): string | undefined | null {
    if (header === undefined || header === "") return undefined;
    const match = /^Bearer[ \t]+([A-Za-z0-9\-._~+/]+=*)[ \t]*$/i.exec(header);
    return match ? match[1]! : null;
  }

  async authenticate(authorization: string | undefined): Promise<AuthResult> {
    const token = Authenticator.bearerToken(authorization);
    if (token === null)
      return { ok: false, reason: "token_malformed", detail: "Authorization is not 'Bearer <token>'" };
    if (token === undefined) {
      if (this.anonymous) return { ok: true, principal: this.anonymous, cached: true };
      return { ok: false, reason: "token_missing", detail: "no bearer token" };
    }
    const cacheKey = hash("sha256", token, "base64url");
    const hit = this.cache.get(cacheKey);
    const now = this.now();
    if (hit) {
      if (hit.expiresAt > now) return { ok: true, principal: hit.principal, cached: true };
      this.cache.delete(cacheKey);
    }
    const result = await this.verify(token);
    if (result.ok) {
      const exp =
        typeof result.principal.claims.exp === "number" ? result.principal.claims.exp * 1000 : Infinity;
      this.remember(cacheKey, {
        principal: result.principal,
        expiresAt: Math.min(now + this.cacheTtlMs, exp),
      });
    }
    return result;
  }

  private async verify(token: string): Promise<AuthResult> {
    let header: ReturnType<typeof decodeProtectedHeader>;
    let unverified: JWTPayload;
    try {
      header = decodeProtectedHeader(token);
      unverified = decodeJwt(token);
    } catch (err) {
      return { ok: false, reason: "token_malformed", detail: (err as Error).message };
    }
    if (typeof header.alg !== "string" || header.alg.toLowerCase() === "none") {
      return { ok: false, reason: "jwt_algorithm_rejected", detail: "unsigned tokens are never accepted" };
    }
    const issuer = typeof unverified.iss === "string" ? this.issuers.get(unverified.iss) : undefined;
    if (!issuer)
      return { ok: false, reason: "jwt_issuer_unknown", detail: `issuer ${String(unverified.iss)}` };
    if (!issuer.config.algorithms.includes(header.alg as never)) {
      return {
        ok: false,
        reason: "jwt_algorithm_rejected",
        detail: `alg ${header.alg} not allowed for this issuer`,
      };
    }
    try {
      const options = {
        issuer: issuer.config.issuer,
        audience: issuer.config.audiences,
        algorithms: issuer.config.algorithms,
        clockTolerance: this.clockSkewSec,
        // A token without exp would be valid forever if it leaked: refuse it.
        requiredClaims: ["exp"],
        currentDate: new Date(this.now()),
      };
      const { payload } =
        issuer.key instanceof Uint8Array
          ? await jwtVerify(token, issuer.key, options)
          : await jwtVerify(token, issuer.key, options);
      const agent = claimAt(payload, issuer.config.agentClaim);
      if (typeof agent !== "string" || agent.length === 0) {
        return {
          ok: false,
          reason: "jwt_claims_invalid",
          detail: `claim ${issuer.config.agentClaim} missing`,
        };
      }
      const tokenRoles = issuer.config.trustTokenRoles
        ? rolesFromClaim(claimAt(payload, issuer.config.rolesClaim))
        : [];
      const principal: Principal = Object.freeze({
        agent,
        roles: Object.freeze(this.mergeRoles(agent, tokenRoles)),
        claims: Object.freeze(payload as Record<string, unknown>),
        issuer: issuer.config.issuer,
        anonymous: false,
      });
      return { ok: true, principal, cached: false };
    } catch (err) {
      return { ok: false, ...reasonFor(err) };
    }
  }

  private mergeRoles(agent: string, tokenRoles: readonly string[]): string[] {
    const configured = this.agentRoles.get(agent) ?? [];
    return [...new Set([...configured, ...tokenRoles])];
  }

  private remember(key: string, entry: CacheEntry): void {
    if (this.cache.size >= this.cacheMax) {
      const oldest = this.cache.keys().next().value;
      if (oldest !== undefined) this.cache.delete(oldest);
    }
    this.cache.set(key, entry);
  }
}
