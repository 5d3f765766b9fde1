import { SignJWT, exportJWK, generateKeyPair, type JWK, type JWTPayload, type KeyObject } from "jose";
import type { CryptoKey } from "jose";
import {
  GatewayConfigSchema,
  RegistrySchema,
  type GatewayConfig,
  type Registry,
} from "../../ext-service/src/config/schema.js";
import { PolicyEngine } from "../../ext-service/src/policy/engine.js";

/** A signing key pair for tests: made fresh per test file, never read from .dev/. */
export interface TestKey {
  alg: string;
  kid: string;
  privateKey: CryptoKey | KeyObject;
  publicJwk: JWK;
}

export async function makeKey(alg: "RS256" | "ES256" | "EdDSA", kid: string): Promise<TestKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { alg, kid, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: "sig" } };
}

/** Fixed test clock (seconds) so expiry is decided by the injected `now`, not the wall clock. */
export const T0 = Date.parse("2026-03-04T10:30:00Z") / 1000;

export function sign(
  key: TestKey,
  claims: JWTPayload,
  header: Record<string, unknown> = {},
): Promise<string> {
  return new SignJWT({ iat: T0, exp: T0 + 3600, ...claims })
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: "JWT", ...header })
    .sign(key.privateKey);
}

/** A JWT with any header and payload and a made-up signature (for attacks that need no key). */
export function forge(
  header: Record<string, unknown>,
  payload: Record<string, unknown>,
  signature = "",
): string {
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
  return `${b64(header)}.${b64(payload)}.${signature}`;
}

export function gatewayConfig(overrides: Record<string, unknown>): GatewayConfig {
  return GatewayConfigSchema.parse({ registry: "registry.yaml", ...overrides });
}

export function registry(value: Record<string, unknown>): Registry {
  return RegistrySchema.parse(value);
}

export function engineFor(
  config: Record<string, unknown>,
  reg: Record<string, unknown>,
  now: () => number = () => T0 * 1000,
): PolicyEngine {
  return new PolicyEngine(
    { config: gatewayConfig(config), registry: registry(reg), configFile: "/nonexistent/gateway.yaml" },
    now,
  );
}
