import { generateKeyPair, SignJWT, type JWK, importJWK } from "jose";
import { DEV_AUDIENCE, DEV_ISSUER, signDevToken } from "../../ext-service/src/config/devkeys.js";
import type { Body, Identity, ScenarioRequest } from "./table.js";

/**
 * Turns scenario data into what goes on the wire, for any runner (edge over HTTP, Envoy
 * adapters over gRPC): the Authorization value, the request headers and the body bytes.
 */

type PrivateKey = Awaited<ReturnType<typeof generateKeyPair>>["privateKey"];
let foreignKey: Promise<PrivateKey> | undefined;

/** The Authorization header value for an identity, or undefined for none. */
export async function authorizationFor(identity: Identity, devKey: JWK): Promise<string | undefined> {
  if (!("token" in identity)) return `Bearer ${await signDevToken(devKey, { subject: identity.agent })}`;
  switch (identity.token) {
    case "none":
      return undefined;
    case "malformed":
      return "Bearer not-a-jwt";
    case "wrong_audience":
      return `Bearer ${await signDevToken(devKey, { subject: identity.agent, audience: "some-other-api" })}`;
    case "unknown_issuer":
      return `Bearer ${await signDevToken(devKey, { subject: identity.agent, issuer: "https://evil.example" })}`;
    case "expired": {
      const now = Math.floor(Date.now() / 1000);
      const jwt = await new SignJWT({})
        .setProtectedHeader({ alg: devKey.alg ?? "ES256", kid: devKey.kid, typ: "JWT" })
        .setSubject(identity.agent)
        .setIssuer(DEV_ISSUER)
        .setAudience(DEV_AUDIENCE)
        .setIssuedAt(now - 7200)
        .setExpirationTime(now - 3600)
        .sign(await importJWK(devKey, devKey.alg ?? "ES256"));
      return `Bearer ${jwt}`;
    }
    case "foreign_key": {
      foreignKey ??= generateKeyPair("ES256").then((k) => k.privateKey);
      const jwt = await new SignJWT({})
        .setProtectedHeader({ alg: "ES256", kid: devKey.kid, typ: "JWT" })
        .setSubject(identity.agent)
        .setIssuer(DEV_ISSUER)
        .setAudience(DEV_AUDIENCE)
        .setIssuedAt()
        .setExpirationTime("1h")
        .sign(await foreignKey);
      return `Bearer ${jwt}`;
    }
    case "alg_none": {
      const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
      const now = Math.floor(Date.now() / 1000);
      return `Bearer ${b64({ alg: "none", typ: "JWT" })}.${b64({ sub: identity.agent, iss: DEV_ISSUER, aud: DEV_AUDIENCE, iat: now, exp: now + 3600 })}.`;
    }
  }
}

/** The agent whose session a row needs, if any. */
export function agentOf(identity: Identity): string | undefined {
  return "agent" in identity ? identity.agent : undefined;
}

export function bodyBytes(body: Body | undefined): Buffer | undefined {
  if (body === undefined) return undefined;
  if ("hex" in body) return Buffer.from(body.hex, "hex");
  if ("text" in body) return Buffer.from(body.text, "utf8");
  const json = Buffer.from(JSON.stringify(body.json), "utf8");
  if ("padTo" in body) return Buffer.concat([json, Buffer.alloc(Math.max(0, body.padTo - json.length), " ")]);
  return json;
}

export const SCENARIO_PROTOCOL_VERSION = "2025-06-18";

/** Request headers (lower-case) after applying the row's changes to the defaults. */
export function requestHeaders(
  request: ScenarioRequest,
  authorization: string | undefined,
  sessionId: string | undefined,
): Record<string, string> {
  const headers: Record<string, string> =
    request.method === "GET"
      ? { accept: "text/event-stream" }
      : {
          "content-type": "application/json",
          accept: "application/json, text/event-stream",
          "mcp-protocol-version": SCENARIO_PROTOCOL_VERSION,
        };
  if (authorization !== undefined) headers.authorization = authorization;
  if (sessionId !== undefined) headers["mcp-session-id"] = sessionId;
  for (const [name, value] of Object.entries(request.headers ?? {})) {
    if (value === null) delete headers[name.toLowerCase()];
    else headers[name.toLowerCase()] = value;
  }
  return headers;
}
