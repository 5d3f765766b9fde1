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

/**
 * A config for core tests that evaluate bodies without an adapter: nothing would fetch a
 * server's tools/list, so pins are not verified before calls unless a test asks for it
 * (test/security/pin-verification.test.ts covers that).
 */
export function gatewayConfig(overrides: Record<string, unknown>): GatewayConfig {
  const security = (overrides.security ?? {}) as Record<string, unknown>;
  const pins = (security.pins ?? {}) as Record<string, unknown>;
  return GatewayConfigSchema.parse({
    registry: "registry.yaml",
    ...overrides,
    security: { ...security, pins: { verifyBeforeCall: false, ...pins } },
  });
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

/** The registry the engine and response tests share. */
export const REGISTRY = {
  version: "test-1",
  servers: [
    {
      name: "kb",
      upstreams: ["http://127.0.0.1:1/mcp"],
      tools: [
        {
          name: "search",
          description: "Search knowledge-base articles.",
          inputSchema: { type: "object", properties: { query: { type: "string" } } },
        },
        { name: "get_article", description: "Fetch one article by id." },
      ],
    },
    {
      name: "tickets",
      upstreams: ["http://127.0.0.1:2/mcp"],
      tools: [
        { name: "list_tickets", title: "List tickets", description: "List open tickets." },
        { name: "delete_ticket", description: "Delete a ticket.", annotations: { destructiveHint: true } },
        { name: "old_export", description: "Export tickets (old format).", deprecated: "2026-01-01" },
        { name: "new_export", description: "Export tickets.", deprecated: "2027-01-01" },
      ],
    },
    {
      name: "deploy",
      upstreams: ["http://127.0.0.1:3/mcp"],
      tools: [{ name: "deploy_service", description: "Deploy a service." }],
    },
  ],
};

/**
 * A tool as its MCP server lists it in tools/list. A registered tool is listed with the
 * registry's definition of it (the fields a pin covers, as the registry records them after
 * defaults), so it matches its pin as a well-behaved server's tool does; a name the registry does
 * not have gets a made-up definition, like an unregistered tool on a real server. Tests that need
 * a drifted definition change the result of this function.
 */
export function listedTool(
  reg: Record<string, unknown>,
  server: string,
  name: string,
): Record<string, unknown> {
  const tool = registry(reg)
    .servers.find((s) => s.name === server)
    ?.tools.find((t) => t.name === name);
  if (!tool) return { name, description: `${name} (not in the registry)`, inputSchema: { type: "object" } };
  const listed: Record<string, unknown> = { name: tool.name };
  if (tool.title !== undefined) listed.title = tool.title;
  if (tool.description !== "") listed.description = tool.description;
  listed.inputSchema = tool.inputSchema;
  if (tool.outputSchema !== undefined) listed.outputSchema = tool.outputSchema;
  if (tool.annotations !== undefined) listed.annotations = tool.annotations;
  return listed;
}

/** gateway.yaml for the engine and response tests: agents with different reach. */
export function gatewayFor(jwk: unknown) {
  return {
    publicUrl: "https://gw.example/",
    auth: {
      issuers: [
        {
          issuer: "https://idp.example",
          audiences: ["mcp-gateway"],
          jwks: { inline: { keys: [jwk] } },
          algorithms: ["ES256"],
        },
      ],
    },
    roles: {
      reader: { rules: [{ effect: "allow", tools: ["kb/*"], prompts: ["kb/*"], resources: ["kb/**"] }] },
      support: {
        rules: [
          { effect: "allow", tools: ["tickets/*"] },
          { effect: "deny", tools: ["tickets/delete_ticket"] },
        ],
      },
      limited: { rules: [{ effect: "allow", tools: ["tickets/list_tickets"] }] },
    },
    agents: {
      "research-bot": { roles: ["reader"] },
      "support-bot": { roles: ["reader", "support"] },
      "limited-bot": { roles: ["limited"] },
      "nobody-bot": { roles: [] },
    },
    limits: { maxBatchSize: 4, maxJsonDepth: 10, maxRequestBytes: 4096 },
  };
}
