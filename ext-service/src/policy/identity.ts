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
import type { Issuer, PolicyConfig } from "./settings.js";
import { durationMs } from "../model/duration.js";
import type { Reason } from "./reasons.js";

/** Who is calling: resolved once per request, by ext_authz or the edge. */
export interface Principal {
  agent: string;
  roles: readonly string[];
  claims: Readonly<Record<string, unknown>>;
  issuer: string | undefined;
  anonymous: boolean;
  /** Authenticated by the aggregated endpoint's hop identity (policy/hop-token.ts), not a token of its own. */
  viaBroker?: boolean;
}

export type AuthResult =
  { ok: true; principal: Principal; cached: boolean } | { ok: false; reason: Reason; detail: string };

interface CompiledIssuer {
  config: Issuer;
  key: JWTVerifyGetKey | Uint8Array;
  symmetric: boolean;
}

/** An agent's configured roles and the issuer whose tokens may speak for it. */
interface AgentBinding {
  /** Undefined: no issuer was named (only possible without issuers, or for the anonymous agent). */
  issuer: string | undefined;
  roles: readonly string[];
}

interface CacheEntry {
  /** What a hit answers: one frozen object per verified token, not one per request. */
  result: Readonly<AuthResult & { ok: true }>;
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

/** Longest agent name accepted, in UTF-16 code units: a name is an identifier, not a document. */
export const MAX_AGENT_NAME_LENGTH = 256;

// C0 and C1 controls, DEL, and the Unicode line and paragraph separators: none belongs in a name,
// and each can break a header, a log line or a terminal.
// eslint-disable-next-line no-control-regex -- finding control characters is the point
const NAME_CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;
// With the u flag a surrogate pair is one code point: only a lone half matches.
const LONE_SURROGATE = /\p{Cs}/u;

/**
 * Why a claimed agent name cannot be used, or undefined when it can. Names are refused at
 * authentication rather than failing later (an upstream header undici refuses to build).
 */
export function agentNameProblem(agent: string): string | undefined {
  if (agent.length > MAX_AGENT_NAME_LENGTH)
    return `the agent name is longer than ${MAX_AGENT_NAME_LENGTH} characters`;
  if (NAME_CONTROL.test(agent)) return "the agent name contains control characters";
  if (LONE_SURROGATE.test(agent)) return "the agent name is not well-formed Unicode";
  return undefined;
}

// Printable ASCII except '%': what goes into the header as it is.
const HEADER_SAFE = /^[\x21-\x24\x26-\x7e]*$/;

/**
 * An agent name as an HTTP header value (`x-mcp-agent`): printable ASCII other than '%' stays as
 * it is, every other character is percent-encoded as UTF-8 (so "客服" is "%E5%AE%A2%E6%9C%8D" and
 * a literal '%' is "%25"), which keeps the value unambiguous and valid for every HTTP stack.
 */
export function agentHeaderValue(agent: string): string {
  if (HEADER_SAFE.test(agent)) return agent;
  let out = "";
  for (const char of agent) {
    // encodeURIComponent writes UTF-8 bytes as upper-case %XX (names are well-formed, see above).
    out += HEADER_SAFE.test(char) ? char : encodeURIComponent(char);
  }
  return out;
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
 * Tokens up to this length are their own token-cache key; longer ones are keyed by their SHA-256.
 * A key is then the exact token (no digest to compute per request, and no collision possible),
 * while the cache's keys stay bounded: at most `tokenCache.maxEntries` times this many bytes
 * (10 MB at the default 10,000 entries; a JWT of a few claims is 300 to 900 characters).
 */
const MAX_TOKEN_KEY_CHARS = 1024;

/**
 * The token cache's key of `token`: the token itself, or `#` and its SHA-256 when it is long. A
 * bearer token never holds `#` (Authenticator.bearerToken), so the two kinds of key never meet.
 */
function tokenCacheKey(token: string): string {
  return token.length <= MAX_TOKEN_KEY_CHARS ? token : `#${hash("sha256", token, "base64url")}`;
}

/**
 * Verifies bearer tokens against the configured issuers. Verified tokens are cached (keyed by the
 * token, tokenCacheKey) so a busy agent costs one signature check per TTL; an entry never
 * outlives `exp`.
 */
export class Authenticator {
  private readonly issuers: Map<string, CompiledIssuer>;
  private readonly cache = new Map<string, CacheEntry>();
  private readonly cacheTtlMs: number;
  private readonly cacheMax: number;
  private readonly clockSkewSec: number;
  private readonly maxLifetimeSec: number;
  private readonly agents: ReadonlyMap<string, AgentBinding>;
  private readonly anonymous: Principal | undefined;

  constructor(
    config: PolicyConfig,
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
    const issuerNames = config.auth.issuers.map((i) => i.issuer);
    // The anonymous principal's own entry needs no issuer: without one, no token gets its roles.
    const anonymousOnly = (name: string) =>
      config.auth.mode === "optional" && name === config.auth.anonymous.agent;
    const agents = new Map<string, AgentBinding>();
    for (const [name, agent] of Object.entries(config.agents)) {
      // Agents are namespaced by issuer: with one issuer an agent belongs to it; with several,
      // each agent names its own, or any trusted issuer could mint it (and get its roles).
      let issuer = agent.issuer;
      if (issuer !== undefined && !issuerNames.includes(issuer)) {
        problems.push({
          path: ["agents", name, "issuer"],
          message: `unknown issuer '${issuer}' (auth.issuers lists ${issuerNames.map((n) => `'${n}'`).join(", ") || "none"})`,
        });
      } else if (issuer === undefined && issuerNames.length > 1 && !anonymousOnly(name)) {
        problems.push({
          path: ["agents", name],
          message:
            "'issuer' is required when auth.issuers lists more than one issuer: name the issuer whose tokens speak for this agent",
        });
      }
      if (issuer === undefined && issuerNames.length === 1) issuer = issuerNames[0];
      agents.set(name, { issuer, roles: agent.roles });
    }
    if (problems.length > 0) throw new ConfigurationProblem(problems);
    this.agents = agents;
    this.cacheTtlMs = durationMs(config.auth.tokenCache.ttl);
    this.cacheMax = config.auth.tokenCache.maxEntries;
    this.clockSkewSec = durationMs(config.auth.clockSkew) / 1000;
    this.maxLifetimeSec = durationMs(config.auth.maxTokenLifetime) / 1000;
    const anonymousAgent = config.auth.anonymous.agent;
    // The anonymous principal has no issuer: it gets an agent entry's roles only if that entry
    // names no issuer of its own.
    const anonymousEntry = Object.hasOwn(config.agents, anonymousAgent)
      ? config.agents[anonymousAgent]
      : undefined;
    this.anonymous =
      config.auth.mode === "optional"
        ? Object.freeze({
            agent: anonymousAgent,
            roles: Object.freeze([
              ...new Set([
                ...(anonymousEntry && anonymousEntry.issuer === undefined ? anonymousEntry.roles : []),
                ...config.auth.anonymous.roles,
              ]),
            ]),
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
    return this.authenticateStep(authorization);
  }

  /**
   * As authenticate, but answered at once (no promise) when no signature has to be checked: a
   * missing or malformed header, or a token verified before whose cache entry has not expired.
   * The request path then takes no promise and no microtask for the token of a known agent.
   */
  authenticateStep(authorization: string | undefined): AuthResult | Promise<AuthResult> {
    const token = Authenticator.bearerToken(authorization);
    if (token === null)
      return { ok: false, reason: "token_malformed", detail: "Authorization is not 'Bearer <token>'" };
    if (token === undefined) {
      if (this.anonymous) return { ok: true, principal: this.anonymous, cached: true };
      return { ok: false, reason: "token_missing", detail: "no bearer token" };
    }
    const cacheKey = tokenCacheKey(token);
    const hit = this.cache.get(cacheKey);
    const now = this.now();
    if (hit) {
      if (hit.expiresAt > now) return hit.result;
      this.cache.delete(cacheKey);
    }
    return this.verifyAndRemember(token, cacheKey, now);
  }

  private async verifyAndRemember(token: string, cacheKey: string, now: number): Promise<AuthResult> {
    const result = await this.verify(token);
    if (result.ok) {
      const exp =
        typeof result.principal.claims.exp === "number" ? result.principal.claims.exp * 1000 : Infinity;
      this.remember(cacheKey, {
        result: Object.freeze({ ok: true, principal: result.principal, cached: true }),
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
      const lifetime = this.lifetimeProblem(payload);
      if (lifetime) return { ok: false, ...lifetime };
      const agent = claimAt(payload, issuer.config.agentClaim);
      if (typeof agent !== "string" || agent.length === 0) {
        return {
          ok: false,
          reason: "jwt_claims_invalid",
          detail: `claim ${issuer.config.agentClaim} missing`,
        };
      }
      const nameProblem = agentNameProblem(agent);
      if (nameProblem) {
        return {
          ok: false,
          reason: "jwt_claims_invalid",
          detail: `claim ${issuer.config.agentClaim}: ${nameProblem}`,
        };
      }
      const tokenRoles = issuer.config.trustTokenRoles
        ? rolesFromClaim(claimAt(payload, issuer.config.rolesClaim))
        : [];
      const principal: Principal = Object.freeze({
        agent,
        roles: Object.freeze(this.mergeRoles(agent, issuer.config.issuer, tokenRoles)),
        claims: Object.freeze(payload as Record<string, unknown>),
        issuer: issuer.config.issuer,
        anonymous: false,
      });
      return { ok: true, principal, cached: false };
    } catch (err) {
      return { ok: false, ...reasonFor(err) };
    }
  }

  /**
   * jose checks `exp` and `nbf`; a token must also not live longer than auth.maxTokenLifetime
   * from now (`exp: 1e300` would be a credential for ever), nor claim to be issued in the future.
   */
  private lifetimeProblem(payload: JWTPayload): { reason: Reason; detail: string } | undefined {
    const nowSec = this.now() / 1000;
    if (typeof payload.iat === "number" && payload.iat > nowSec + this.clockSkewSec) {
      return { reason: "jwt_not_yet_valid", detail: "iat is in the future" };
    }
    if (typeof payload.exp === "number" && payload.exp > nowSec + this.maxLifetimeSec + this.clockSkewSec) {
      return {
        reason: "jwt_claims_invalid",
        detail: `exp is further away than auth.maxTokenLifetime (${this.maxLifetimeSec} s)`,
      };
    }
    return undefined;
  }

  /**
   * The principal a valid token for `agent` would yield (issuer: the agent's configured one
   * unless given; roles: the configured ones for a token of that issuer, plus `tokenRoles` where
   * the issuer trusts token roles), for
   * `mcp-gateway explain`: the same role merge as authenticate().
   */
  principalFor(
    agent: string,
    options: { issuer?: string; tokenRoles?: readonly string[]; claims?: Record<string, unknown> } = {},
  ): Principal {
    const issuer = options.issuer ?? this.agents.get(agent)?.issuer;
    const binding = this.agents.get(agent);
    // As authenticate(): a token's roles count only where its issuer trusts them.
    const trusted = issuer !== undefined && this.issuers.get(issuer)?.config.trustTokenRoles === true;
    const tokenRoles = trusted ? (options.tokenRoles ?? []) : [];
    const roles =
      issuer === undefined
        ? [...new Set([...(binding?.issuer === undefined ? (binding?.roles ?? []) : []), ...tokenRoles])]
        : this.mergeRoles(agent, issuer, tokenRoles);
    return Object.freeze({
      agent,
      roles: Object.freeze(roles),
      claims: Object.freeze({ sub: agent, ...options.claims }),
      issuer,
      anonymous: false,
    });
  }

  /** Whether gateway.yaml names this agent. */
  knowsAgent(agent: string): boolean {
    return this.agents.has(agent);
  }

  /** Configured roles count only for a token from the agent's own issuer. */
  private mergeRoles(agent: string, issuer: string, tokenRoles: readonly string[]): string[] {
    const binding = this.agents.get(agent);
    const configured = binding !== undefined && binding.issuer === issuer ? binding.roles : [];
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
