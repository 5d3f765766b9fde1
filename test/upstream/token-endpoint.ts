import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { createLocalJWKSet, jwtVerify, type JWK, type JWTVerifyGetKey } from "jose";
import { DEV_AUDIENCE, DEV_ISSUER } from "../../ext-service/src/config/devkeys.js";

/**
 * An OAuth 2.0 authorization server's token endpoint for tests, doing RFC 8693 token exchange
 * the way a real one must: client authentication (client_secret_basic), the grant type, the
 * subject token's signature and claims (the gateway's dev issuer), the audience or resource
 * asked for. It issues opaque per-agent tokens that expire, remembers whom each is for (so a
 * test MCP server can check the one it receives), and can be told to fail, be slow or answer
 * nonsense.
 */

export type EndpointMode = "ok" | "refuse" | "error" | "slow" | "malformed" | "wrong_token_type";

export interface IssuedToken {
  token: string;
  /** The agent: the subject token's `sub`. */
  subject: string;
  /** The audience or resource the token is for. */
  target: string;
  scope: string | undefined;
  expiresAt: number;
}

export interface TokenEndpoint {
  url: string;
  /** Exchange requests received, valid or not. */
  calls: number;
  /** Requests refused, with the OAuth error returned. */
  refusals: string[];
  issued: Map<string, IssuedToken>;
  /** The subject token of every exchange whose subject token verified, in order. */
  subjects: string[];
  mode: EndpointMode;
  /** `expires_in` of issued tokens, seconds; undefined leaves it out. */
  expiresIn: number | undefined;
  slowMs: number;
  /** The gateway's dev issuer key (made when the gateway starts): subject tokens verify with its public half. */
  setIssuerJwk(jwk: JWK): void;
  /** The token's holder for `target`, if `token` is one this endpoint issued and it has not expired. */
  holder(token: string, target: string): IssuedToken | undefined;
  close(): Promise<void>;
}

export async function startTokenEndpoint(options: {
  clientId: string;
  clientSecret: string;
  /** Audiences and resources this server issues tokens for. */
  targets: string[];
}): Promise<TokenEndpoint> {
  let keys: JWTVerifyGetKey | undefined;
  const expectedAuth = `Basic ${Buffer.from(
    `${encodeURIComponent(options.clientId)}:${encodeURIComponent(options.clientSecret)}`,
  ).toString("base64")}`;

  const send = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" });
    res.end(JSON.stringify(body));
  };

  const endpoint: TokenEndpoint = {
    url: "",
    calls: 0,
    refusals: [],
    issued: new Map(),
    subjects: [],
    mode: "ok",
    expiresIn: 300,
    slowMs: 2_000,
    setIssuerJwk(jwk) {
      const { d: _private, ...publicJwk } = jwk;
      keys = createLocalJWKSet({ keys: [publicJwk] });
    },
    holder(token, target) {
      const issued = this.issued.get(token);
      return issued && issued.target === target && issued.expiresAt > Date.now() ? issued : undefined;
    },
    close: () => Promise.resolve(),
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    endpoint.calls++;
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const refuse = (status: number, error: string) => {
      endpoint.refusals.push(error);
      send(res, status, { error, error_description: `refused: ${error}` });
    };
    if (endpoint.mode === "error") return send(res, 500, { error: "server_error" });
    if (endpoint.mode === "slow") await new Promise((r) => setTimeout(r, endpoint.slowMs));
    if (req.method !== "POST" || req.headers["content-type"] !== "application/x-www-form-urlencoded")
      return refuse(400, "invalid_request");
    if (req.headers.authorization !== expectedAuth) return refuse(401, "invalid_client");
    const form = new URLSearchParams(Buffer.concat(chunks).toString("utf8"));
    if (form.get("grant_type") !== "urn:ietf:params:oauth:grant-type:token-exchange")
      return refuse(400, "unsupported_grant_type");
    if (form.get("subject_token_type") !== "urn:ietf:params:oauth:token-type:access_token")
      return refuse(400, "invalid_request");
    // RFC 8693: a client authenticates itself, so it must not also send credentials in the form.
    if (form.has("client_secret") || form.has("actor_token")) return refuse(400, "invalid_request");
    const target = form.get("resource") ?? form.get("audience");
    if (target === null || !options.targets.includes(target)) return refuse(400, "invalid_target");
    let subject: string;
    try {
      if (!keys) throw new Error("no issuer key yet");
      const { payload } = await jwtVerify(form.get("subject_token") ?? "", keys, {
        issuer: DEV_ISSUER,
        audience: DEV_AUDIENCE,
      });
      subject = payload.sub ?? "";
      endpoint.subjects.push(form.get("subject_token") ?? "");
    } catch {
      return refuse(400, "invalid_grant");
    }
    if (endpoint.mode === "refuse") return refuse(400, "invalid_grant");
    if (endpoint.mode === "malformed") return send(res, 200, { token_type: "Bearer", expires_in: 60 });
    // Opaque, with no known secret format: only an exact-match detector can recognise it.
    const token = `xt-${randomBytes(18).toString("hex")}`;
    const expiresIn = endpoint.expiresIn;
    endpoint.issued.set(token, {
      token,
      subject,
      target,
      scope: form.get("scope") ?? undefined,
      expiresAt: Date.now() + (expiresIn ?? 3600) * 1000,
    });
    send(res, 200, {
      access_token: token,
      issued_token_type: "urn:ietf:params:oauth:token-type:access_token",
      token_type: endpoint.mode === "wrong_token_type" ? "MAC" : "Bearer",
      ...(expiresIn !== undefined ? { expires_in: expiresIn } : {}),
      ...(form.has("scope") ? { scope: form.get("scope") } : {}),
    });
  }

  const server = createServer((req, res) => {
    handle(req, res).catch(() => send(res, 500, { error: "server_error" }));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  endpoint.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/oauth2/token`;
  endpoint.close = () =>
    new Promise<void>((r) => {
      server.close(() => r());
      server.closeAllConnections();
    });
  return endpoint;
}
