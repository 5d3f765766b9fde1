import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { createPublicKey } from "node:crypto";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  agentHeaderValue,
  Authenticator,
  ConfigurationProblem,
} from "../../ext-service/src/policy/identity.js";
import { T0, forge, gatewayConfig, makeKey, sign, type TestKey } from "./support.js";

let rsa: TestKey;
let ec: TestKey;
let stranger: TestKey;
let remoteKey: TestKey;

/** A real JWKS endpoint on a loopback port: counts fetches, can fail or hang on request. */
let server: Server;
let base = "";
let closedPortUrl = "";
const fetches: Record<string, number> = {};
const hanging: ServerResponse[] = [];

beforeAll(async () => {
  [rsa, ec, stranger, remoteKey] = await Promise.all([
    makeKey("RS256", "rsa-1"),
    makeKey("ES256", "ec-1"),
    makeKey("RS256", "rsa-1"), // same kid as `rsa`, different key
    makeKey("ES256", "remote-1"),
  ]);
  server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = req.url ?? "";
    fetches[path] = (fetches[path] ?? 0) + 1;
    if (path === "/hang") {
      hanging.push(res);
      return;
    }
    if (path === "/error") return void res.writeHead(500).end("boom");
    if (path === "/not-json") return void res.writeHead(200, { "content-type": "application/json" }).end("{");
    res
      .writeHead(200, { "content-type": "application/json" })
      .end(JSON.stringify({ keys: [remoteKey.publicJwk] }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  // A port nothing listens on: bind one, then close it.
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  closedPortUrl = `http://127.0.0.1:${(probe.address() as AddressInfo).port}/jwks`;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
});

afterAll(async () => {
  for (const res of hanging) res.destroy();
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

let clock = T0 * 1000;
const now = () => clock;

function authenticator(auth: Record<string, unknown>, rest: Record<string, unknown> = {}): Authenticator {
  return new Authenticator(
    gatewayConfig({
      auth: {
        issuers: [
          {
            issuer: "https://idp-a.example",
            audiences: ["mcp-gateway"],
            jwks: { inline: { keys: [rsa.publicJwk] } },
            algorithms: ["RS256"],
          },
          {
            issuer: "https://idp-b.example",
            audiences: ["mcp", "mcp-gateway"],
            jwks: { inline: { keys: [ec.publicJwk] } },
            algorithms: ["ES256", "RS256"],
            agentClaim: "client_id",
            rolesClaim: "realm_access.roles",
          },
        ],
        ...auth,
      },
      roles: { reader: {}, writer: {}, admin: {} },
      // The default issuers' agent; tests that replace the issuers bring their own agents.
      agents: auth.issuers ? {} : { "support-bot": { issuer: "https://idp-a.example", roles: ["reader"] } },
      ...rest,
    }),
    "/nonexistent",
    now,
  );
}

const bearer = (t: string) => `Bearer ${t}`;
const A = { iss: "https://idp-a.example", aud: "mcp-gateway", sub: "support-bot" };

async function reason(auth: Authenticator, token: string): Promise<string> {
  const r = await auth.authenticate(bearer(token));
  return r.ok ? "ok" : r.reason;
}

describe("identity: valid tokens", () => {
  it("verifies a token and resolves the principal, merging config roles with token roles", async () => {
    clock = T0 * 1000;
    const auth = authenticator({});
    const r = await auth.authenticate(bearer(await sign(rsa, { ...A, roles: ["writer", "reader"] })));
    expect(r).toMatchObject({
      ok: true,
      cached: false,
      principal: {
        agent: "support-bot",
        roles: ["reader", "writer"],
        issuer: "https://idp-a.example",
        anonymous: false,
      },
    });
    expect(r.ok && r.principal.claims.sub).toBe("support-bot");
    expect(r.ok && Object.isFrozen(r.principal)).toBe(true);
  });

  it("reads roles as a space-separated string, and from a dotted claim path", async () => {
    const auth = authenticator({});
    const spaced = await auth.authenticate(
      bearer(await sign(rsa, { ...A, sub: "bot-2", roles: "reader  writer" })),
    );
    expect(spaced.ok && spaced.principal.roles).toEqual(["reader", "writer"]);
    const dotted = await auth.authenticate(
      bearer(
        await sign(ec, {
          iss: "https://idp-b.example",
          aud: ["mcp"],
          client_id: "support-bot",
          realm_access: { roles: ["admin", 7, "reader"] },
        }),
      ),
    );
    // Issuer B's support-bot is not issuer A's: only the roles in B's token count.
    expect(dotted).toMatchObject({
      ok: true,
      principal: { agent: "support-bot", roles: ["admin", "reader"], issuer: "https://idp-b.example" },
    });
  });

  it("ignores token roles when trustTokenRoles is false", async () => {
    const auth = new Authenticator(
      gatewayConfig({
        auth: {
          issuers: [
            {
              issuer: "https://idp-a.example",
              audiences: ["mcp-gateway"],
              jwks: { inline: { keys: [rsa.publicJwk] } },
              algorithms: ["RS256"],
              trustTokenRoles: false,
            },
          ],
        },
        roles: { reader: {}, admin: {} },
        agents: { "support-bot": { roles: ["reader"] } },
      }),
      "/nonexistent",
      now,
    );
    const r = await auth.authenticate(bearer(await sign(rsa, { ...A, roles: ["admin"] })));
    expect(r.ok && r.principal.roles).toEqual(["reader"]);
    const unknown = await auth.authenticate(
      bearer(await sign(rsa, { ...A, sub: "someone-else", roles: ["admin"] })),
    );
    expect(unknown.ok && unknown.principal.roles).toEqual([]);
  });

  it("verifies each issuer with its own keys only", async () => {
    const auth = authenticator({});
    // Signed by issuer A's key, but claims to come from issuer B (which also allows RS256).
    expect(
      await reason(auth, await sign(rsa, { iss: "https://idp-b.example", aud: "mcp", client_id: "x" })),
    ).toBe("jwt_key_unknown");
    // A different key under A's kid.
    expect(await reason(auth, await sign(stranger, A))).toBe("jwt_signature_invalid");
    expect(
      await reason(auth, await sign(ec, { iss: "https://idp-b.example", aud: "mcp", client_id: "x" })),
    ).toBe("ok");
  });
});

describe("identity: agents are namespaced by issuer", () => {
  const B = { iss: "https://idp-b.example", aud: "mcp" };

  it("gives an agent's configured roles only to tokens from the agent's own issuer", async () => {
    const auth = authenticator({}, { roles: { reader: {} } });
    const own = await auth.authenticate(bearer(await sign(rsa, A)));
    expect(own).toMatchObject({
      ok: true,
      principal: { roles: ["reader"], issuer: "https://idp-a.example" },
    });
    // Issuer B is trusted too, and mints a token naming A's agent: it gets none of A's roles.
    const minted = await auth.authenticate(bearer(await sign(ec, { ...B, client_id: "support-bot" })));
    expect(minted).toMatchObject({
      ok: true,
      principal: { agent: "support-bot", roles: [], issuer: "https://idp-b.example" },
    });
  });

  it("with one issuer, agents belong to it without saying so", async () => {
    const auth = new Authenticator(
      gatewayConfig({
        auth: {
          issuers: [
            {
              issuer: "https://idp-a.example",
              audiences: ["mcp-gateway"],
              jwks: { inline: { keys: [rsa.publicJwk] } },
              algorithms: ["RS256"],
            },
          ],
        },
        roles: { reader: {} },
        agents: { "support-bot": { roles: ["reader"] } },
      }),
      "/nonexistent",
      now,
    );
    expect(await auth.authenticate(bearer(await sign(rsa, A)))).toMatchObject({
      principal: { roles: ["reader"] },
    });
  });

  it("refuses a config where an agent's issuer is missing (several issuers) or unknown", () => {
    const problems = (agents: Record<string, unknown>) => {
      try {
        authenticator({}, { agents });
        return [];
      } catch (err) {
        if (!(err instanceof ConfigurationProblem)) throw err;
        return err.problems.map((p) => `${p.path.join(".")}: ${p.message}`);
      }
    };
    expect(problems({ "support-bot": { roles: ["reader"] } })).toEqual([
      "agents.support-bot: 'issuer' is required when auth.issuers lists more than one issuer: name the issuer whose tokens speak for this agent",
    ]);
    expect(problems({ bot: { issuer: "https://idp-c.example" } })).toEqual([
      "agents.bot.issuer: unknown issuer 'https://idp-c.example' (auth.issuers lists 'https://idp-a.example', 'https://idp-b.example')",
    ]);
    expect(problems({ bot: { issuer: "https://idp-b.example" } })).toEqual([]);
  });
});

describe("identity: agent names", () => {
  it("refuses names that are no valid identifier: controls, line separators, lone surrogates, too long", async () => {
    const auth = authenticator({});
    for (const sub of [
      "bot\u0000x",
      "bot\r\nx-mcp-agent: admin",
      "bot\u007fx",
      "bot\u0085",
      "a\u2028b",
      "x\ud800y",
      "b".repeat(257),
    ]) {
      const r = await auth.authenticate(bearer(await sign(rsa, { ...A, sub })));
      expect(r, JSON.stringify(sub)).toMatchObject({ ok: false, reason: "jwt_claims_invalid" });
      expect(!r.ok && r.detail).toMatch(/^claim sub: the agent name /);
    }
    for (const sub of ["客服机器人", "bøt-ü", "has space", "100%", "b".repeat(256), "emoji-🤖"]) {
      expect(await reason(auth, await sign(rsa, { ...A, sub })), sub).toBe("ok");
    }
  });

  it("writes a name as a header value: printable ASCII as it is, anything else percent-encoded UTF-8", () => {
    expect(agentHeaderValue("support-bot")).toBe("support-bot");
    expect(agentHeaderValue("客服")).toBe("%E5%AE%A2%E6%9C%8D");
    expect(agentHeaderValue("bøt")).toBe("b%C3%B8t");
    // '%' itself is encoded, so an encoded name never reads as another agent's plain name.
    expect(agentHeaderValue("b%C3%B8t")).toBe("b%25C3%25B8t");
    expect(agentHeaderValue("a b🤖")).toBe("a%20b%F0%9F%A4%96");
    for (const name of ["客服机器人", "bøt-ü", "a b", "100%", "emoji-🤖"]) {
      expect(decodeURIComponent(agentHeaderValue(name))).toBe(name);
      expect(agentHeaderValue(name)).toMatch(/^[\x21-\x7e]+$/);
    }
  });
});

describe("identity: token lifetime", () => {
  it("refuses a token valid for longer than maxTokenLifetime (plus skew), e.g. exp: 1e300", async () => {
    clock = T0 * 1000;
    const auth = authenticator({ maxTokenLifetime: "24h", clockSkew: "30s" });
    expect(await reason(auth, await sign(rsa, { ...A, exp: 1e300 }))).toBe("jwt_claims_invalid");
    expect(await reason(auth, await sign(rsa, { ...A, exp: T0 + 86_400 + 31 }))).toBe("jwt_claims_invalid");
    expect(await reason(auth, await sign(rsa, { ...A, exp: T0 + 86_400 + 29 }))).toBe("ok");
    const r = await auth.authenticate(bearer(await sign(rsa, { ...A, exp: T0 + 90_000 })));
    expect(!r.ok && r.detail).toBe("exp is further away than auth.maxTokenLifetime (86400 s)");
    const hour = authenticator({ maxTokenLifetime: "1h", clockSkew: 0 });
    expect(await reason(hour, await sign(rsa, { ...A, exp: T0 + 3601 }))).toBe("jwt_claims_invalid");
    expect(await reason(hour, await sign(rsa, { ...A, exp: T0 + 3600 }))).toBe("ok");
  });

  it("refuses a token issued in the future, beyond the clock skew", async () => {
    clock = T0 * 1000;
    const auth = authenticator({ clockSkew: "30s" });
    expect(await reason(auth, await sign(rsa, { ...A, iat: T0 + 31 }))).toBe("jwt_not_yet_valid");
    expect(await reason(auth, await sign(rsa, { ...A, iat: T0 + 29 }))).toBe("ok");
    expect(await reason(auth, await sign(rsa, { ...A, iat: T0 + 86_400 * 365 }))).toBe("jwt_not_yet_valid");
  });

  it("defaults to 24 hours, and refuses a zero lifetime in config", () => {
    expect(gatewayConfig({ auth: { mode: "optional" } }).auth.maxTokenLifetime).toBe("24h");
    expect(() => gatewayConfig({ auth: { mode: "optional", maxTokenLifetime: 0 } })).toThrow(/longer than 0/);
  });
});

describe("identity: time", () => {
  it("rejects an expired token and one not yet valid; honours the clock skew", async () => {
    clock = T0 * 1000;
    const auth = authenticator({ clockSkew: "30s" });
    expect(await reason(auth, await sign(rsa, { ...A, exp: T0 - 31 }))).toBe("jwt_expired");
    expect(await reason(auth, await sign(rsa, { ...A, exp: T0 - 29 }))).toBe("ok");
    expect(await reason(auth, await sign(rsa, { ...A, nbf: T0 + 31 }))).toBe("jwt_not_yet_valid");
    expect(await reason(auth, await sign(rsa, { ...A, nbf: T0 + 29 }))).toBe("ok");
    const strict = authenticator({ clockSkew: 0 });
    expect(await reason(strict, await sign(rsa, { ...A, exp: T0 - 1 }))).toBe("jwt_expired");
    expect(await reason(strict, await sign(rsa, { ...A, nbf: T0 + 1 }))).toBe("jwt_not_yet_valid");
  });

  it("requires exp, and numeric time claims", async () => {
    const auth = authenticator({});
    const noExp = await new SignJWT({ ...A, iat: T0 })
      .setProtectedHeader({ alg: "RS256", kid: rsa.kid })
      .sign(rsa.privateKey);
    expect(await reason(auth, noExp)).toBe("jwt_claims_invalid");
    expect(await reason(auth, await sign(rsa, { ...A, nbf: "soon" as never }))).toBe("jwt_claims_invalid");
    expect(await reason(auth, await sign(rsa, { ...A, exp: "later" as never }))).toBe("jwt_claims_invalid");
  });
});

describe("identity: attacks and bad tokens", () => {
  it("rejects a wrong issuer and a wrong audience", async () => {
    const auth = authenticator({});
    expect(await reason(auth, await sign(rsa, { ...A, iss: "https://evil.example" }))).toBe(
      "jwt_issuer_unknown",
    );
    expect(await reason(auth, await sign(rsa, { ...A, iss: undefined }))).toBe("jwt_issuer_unknown");
    expect(await reason(auth, await sign(rsa, { ...A, aud: "other-service" }))).toBe("jwt_audience_invalid");
    expect(await reason(auth, await sign(rsa, { ...A, aud: undefined }))).toBe("jwt_audience_invalid");
  });

  it("never accepts alg none, in any spelling", async () => {
    const auth = authenticator({});
    for (const alg of ["none", "None", "NONE", "nOnE"]) {
      expect(await reason(auth, forge({ alg, typ: "JWT" }, { ...A, exp: T0 + 60 }))).toBe(
        "jwt_algorithm_rejected",
      );
    }
  });

  it("rejects HS256 signed with the issuer's public key as the HMAC secret", async () => {
    const auth = authenticator({});
    const pem = createPublicKey({ key: rsa.publicJwk as never, format: "jwk" }).export({
      type: "spki",
      format: "pem",
    });
    const secrets = [Buffer.from(pem as string), Buffer.from(JSON.stringify(rsa.publicJwk))];
    for (const secret of secrets) {
      const token = await new SignJWT({ ...A, exp: T0 + 60 })
        .setProtectedHeader({ alg: "HS256", kid: rsa.kid })
        .sign(new Uint8Array(secret));
      expect(await reason(auth, token)).toBe("jwt_algorithm_rejected");
    }
  });

  it("refuses HS* next to public keys at compile time", () => {
    expect(() =>
      authenticator({
        issuers: [
          {
            issuer: "x",
            audiences: ["a"],
            jwks: { inline: { keys: [rsa.publicJwk] } },
            algorithms: ["RS256", "HS256"],
          },
        ],
      }),
    ).toThrow(ConfigurationProblem);
  });

  it("rejects an algorithm the issuer does not allow", async () => {
    const auth = authenticator({});
    const ps = await makeKey("ES256", "rsa-1");
    expect(await reason(auth, await sign(ps, A))).toBe("jwt_algorithm_rejected");
  });

  it("rejects an unknown kid", async () => {
    const auth = authenticator({});
    expect(await reason(auth, await sign(rsa, A, { kid: "rotated-away" }))).toBe("jwt_key_unknown");
  });

  it("rejects a tampered payload", async () => {
    const auth = authenticator({});
    const [h, , s] = (await sign(rsa, { ...A, roles: ["reader"] })).split(".");
    const evil = Buffer.from(JSON.stringify({ ...A, iat: T0, exp: T0 + 3600, roles: ["admin"] })).toString(
      "base64url",
    );
    expect(await reason(auth, `${h}.${evil}.${s}`)).toBe("jwt_signature_invalid");
  });

  it("rejects malformed tokens and Authorization headers", async () => {
    const auth = authenticator({});
    const good = await sign(rsa, A);
    const cases: [string | undefined, string][] = [
      [undefined, "token_missing"],
      ["", "token_missing"],
      [`Basic ${Buffer.from("u:p").toString("base64")}`, "token_malformed"],
      ["Bearer", "token_malformed"],
      ["Bearer ", "token_malformed"],
      [`Bearer ${good} extra`, "token_malformed"],
      [`Bearer ${good.replace(".", "!")}`, "token_malformed"],
      ["Bearer abc", "token_malformed"],
      ["Bearer abc.def.ghi", "token_malformed"],
      [`Bearer ${forge({ alg: "RS256" }, A).replace(/^[^.]+/, "bm90LWpzb24")}`, "token_malformed"],
      [`Bearer ${good.split(".").slice(0, 2).join(".")}`, "token_malformed"],
    ];
    for (const [header, expected] of cases) {
      const r = await auth.authenticate(header);
      expect(r.ok ? "ok" : r.reason, String(header)).toBe(expected);
    }
    // The scheme is case-insensitive.
    expect((await auth.authenticate(`bearer ${good}`)).ok).toBe(true);
  });

  it("rejects a token without the agent claim", async () => {
    const auth = authenticator({});
    expect(await reason(auth, await sign(rsa, { ...A, sub: undefined }))).toBe("jwt_claims_invalid");
    expect(await reason(auth, await sign(rsa, { ...A, sub: "" }))).toBe("jwt_claims_invalid");
  });
});

describe("identity: shared-secret (HS256) issuers", () => {
  const secret = "an-hmac-secret-of-at-least-32-characters!";
  afterAll(() => {
    delete process.env.MCP_GATEWAY_TEST_SECRET;
    delete process.env.MCP_GATEWAY_TEST_SHORT;
  });
  const hsConfig = (env: string, algorithms = ["HS256"]) =>
    gatewayConfig({
      auth: {
        issuers: [{ issuer: "https://hs.example", audiences: ["mcp"], jwks: { secretEnv: env }, algorithms }],
      },
    });

  it("verifies HS256 tokens with the secret from the environment, and nothing else", async () => {
    process.env.MCP_GATEWAY_TEST_SECRET = secret;
    const auth = new Authenticator(hsConfig("MCP_GATEWAY_TEST_SECRET"), "/nonexistent", now);
    const claims = { iss: "https://hs.example", aud: "mcp", sub: "hs-bot", iat: T0, exp: T0 + 60 };
    const good = await new SignJWT(claims)
      .setProtectedHeader({ alg: "HS256" })
      .sign(new TextEncoder().encode(secret));
    expect(await reason(auth, good)).toBe("ok");
    const wrong = await new SignJWT(claims)
      .setProtectedHeader({ alg: "HS256" })
      .sign(new TextEncoder().encode(secret + "x"));
    expect(await reason(auth, wrong)).toBe("jwt_signature_invalid");
    expect(await reason(auth, await sign(rsa, { ...claims }))).toBe("jwt_algorithm_rejected");
  });

  it("refuses a missing or short secret, and public-key algorithms next to it", () => {
    process.env.MCP_GATEWAY_TEST_SHORT = "too-short";
    const problems = (config: ReturnType<typeof hsConfig>) => {
      try {
        new Authenticator(config, "/nonexistent", now);
      } catch (err) {
        if (err instanceof ConfigurationProblem)
          return err.problems.map((p) => `${p.path.join(".")}: ${p.message}`);
        throw err;
      }
      return [];
    };
    expect(problems(hsConfig("MCP_GATEWAY_TEST_UNSET_VARIABLE"))).toEqual([
      "auth.issuers.0.jwks.secretEnv: environment variable MCP_GATEWAY_TEST_UNSET_VARIABLE must hold a secret of at least 32 characters",
    ]);
    expect(problems(hsConfig("MCP_GATEWAY_TEST_SHORT"))).toHaveLength(1);
    expect(problems(hsConfig("MCP_GATEWAY_TEST_SECRET", ["HS256", "RS256"]))).toEqual([
      "auth.issuers.0.algorithms: a shared secret (jwks.secretEnv) only verifies HS* algorithms",
    ]);
  });
});

describe("identity: optional mode", () => {
  it("gives requests without a token the anonymous principal, with its configured and agent roles", async () => {
    const auth = authenticator(
      { mode: "optional", anonymous: { agent: "guest", roles: ["reader"] } },
      { agents: { guest: { roles: ["writer"] } } },
    );
    const r = await auth.authenticate(undefined);
    expect(r).toEqual({
      ok: true,
      cached: true,
      principal: {
        agent: "guest",
        roles: ["writer", "reader"],
        claims: {},
        issuer: undefined,
        anonymous: true,
      },
    });
    // A token that is sent must still be valid: a bad token never falls back to anonymous.
    expect(await reason(auth, await sign(rsa, { ...A, exp: T0 - 3600 }))).toBe("jwt_expired");
    expect((await auth.authenticate("Bearer nope")).ok).toBe(false);
  });
});

describe("identity: remote JWKS", () => {
  const R = { iss: "https://remote.example", aud: "mcp-gateway", sub: "remote-bot" };
  const remote = (path: string, jwks: Record<string, unknown> = {}) =>
    authenticator({
      issuers: [
        {
          issuer: R.iss,
          audiences: ["mcp-gateway"],
          jwks: { uri: `${base}${path}`, ...jwks },
          algorithms: ["ES256"],
        },
      ],
    });

  it("fetches keys once and reuses them for other tokens", async () => {
    const auth = remote("/jwks?cached");
    expect(await reason(auth, await sign(remoteKey, R))).toBe("ok");
    expect(await reason(auth, await sign(remoteKey, { ...R, sub: "other" }))).toBe("ok");
    expect(fetches["/jwks?cached"]).toBe(1);
  });

  it("fails closed with jwks_unavailable when the endpoint is down, errors or sends junk", async () => {
    const down = authenticator({
      issuers: [
        { issuer: R.iss, audiences: ["mcp-gateway"], jwks: { uri: closedPortUrl }, algorithms: ["ES256"] },
      ],
    });
    const token = await sign(remoteKey, R);
    expect(await down.authenticate(bearer(token))).toMatchObject({ ok: false, reason: "jwks_unavailable" });
    expect(await reason(remote("/error"), token)).toBe("jwks_unavailable");
    expect(await reason(remote("/not-json"), token)).toBe("jwks_unavailable");
  });

  it("times out a hanging endpoint per config, with jwks_unavailable", async () => {
    const auth = remote("/hang", { timeout: "300ms" });
    const r = await auth.authenticate(bearer(await sign(remoteKey, R)));
    expect(r).toMatchObject({ ok: false, reason: "jwks_unavailable" });
    expect(!r.ok && r.detail).toMatch(/timed out/i);
    expect(fetches["/hang"]).toBe(1);
  });
});

/** `token` with the character at `i` replaced (inside the signature: its bits all count there). */
function changedAt(token: string, i: number): string {
  return token.slice(0, i) + (token[i] === "A" ? "B" : "A") + token.slice(i + 1);
}

describe("identity: token cache", () => {
  it("verifies a token once: the second call is a cache hit and fetches no keys", async () => {
    clock = T0 * 1000;
    // cacheMaxAge 0: jose would refetch the JWKS on every verification it performs.
    const auth = authenticator({
      issuers: [
        {
          issuer: "https://remote.example",
          audiences: ["a"],
          jwks: { uri: `${base}/jwks?nocache`, cacheMaxAge: 0 },
          algorithms: ["ES256"],
        },
      ],
    });
    const token = await sign(remoteKey, { iss: "https://remote.example", aud: "a", sub: "bot" });
    expect(await auth.authenticate(bearer(token))).toMatchObject({ ok: true, cached: false });
    expect(fetches["/jwks?nocache"]).toBe(1);
    const second = await auth.authenticate(bearer(token));
    expect(second).toMatchObject({ ok: true, cached: true, principal: { agent: "bot" } });
    expect(fetches["/jwks?nocache"]).toBe(1);
    // A different token is verified again (and jose, with cacheMaxAge 0, fetches again).
    await auth.authenticate(
      bearer(await sign(remoteKey, { iss: "https://remote.example", aud: "a", sub: "bot2" })),
    );
    expect(fetches["/jwks?nocache"]).toBe(2);
  });

  it("never keeps an entry past the token's exp, nor past the TTL", async () => {
    clock = T0 * 1000;
    const auth = authenticator({ clockSkew: 0, tokenCache: { ttl: "60s", maxEntries: 10 } });
    const short = await sign(rsa, { ...A, exp: T0 + 10 });
    expect(await auth.authenticate(bearer(short))).toMatchObject({ ok: true, cached: false });
    clock = (T0 + 9) * 1000;
    expect(await auth.authenticate(bearer(short))).toMatchObject({ ok: true, cached: true });
    clock = (T0 + 10) * 1000;
    expect(await auth.authenticate(bearer(short))).toMatchObject({ ok: false, reason: "jwt_expired" });

    clock = T0 * 1000;
    const long = await sign(rsa, { ...A, exp: T0 + 3600 });
    expect(await auth.authenticate(bearer(long))).toMatchObject({ cached: false });
    clock = (T0 + 59) * 1000;
    expect(await auth.authenticate(bearer(long))).toMatchObject({ cached: true });
    clock = (T0 + 60) * 1000;
    expect(await auth.authenticate(bearer(long))).toMatchObject({ ok: true, cached: false });
  });

  it("holds at most maxEntries tokens, evicting the oldest", async () => {
    clock = T0 * 1000;
    const auth = authenticator({ tokenCache: { ttl: "60s", maxEntries: 2 } });
    const [t1, t2, t3] = await Promise.all(["a", "b", "c"].map((sub) => sign(rsa, { ...A, sub })));
    for (const t of [t1!, t2!, t3!])
      expect(await auth.authenticate(bearer(t))).toMatchObject({ cached: false });
    expect(await auth.authenticate(bearer(t3!))).toMatchObject({ cached: true });
    expect(await auth.authenticate(bearer(t2!))).toMatchObject({ cached: true });
    expect(await auth.authenticate(bearer(t1!))).toMatchObject({ cached: false });
  });

  it("never answers a token from another token's entry: one changed character is verified again", async () => {
    clock = T0 * 1000;
    const auth = authenticator({});
    const token = await sign(rsa, A);
    expect(await auth.authenticate(bearer(token))).toMatchObject({ ok: true, cached: false });
    // The same header and claims, one signature character changed: not the cached token.
    const forged = changedAt(token, token.length - 10);
    expect(await auth.authenticate(bearer(forged))).toMatchObject({
      ok: false,
      reason: "jwt_signature_invalid",
    });
    // A prefix of the cached token is not it either.
    expect(await auth.authenticate(bearer(token.slice(0, -2)))).toMatchObject({ ok: false });
    expect(await auth.authenticate(bearer(token))).toMatchObject({ ok: true, cached: true });
  });

  it("caches a long token (over 1024 characters, keyed by its digest) as exactly that token", async () => {
    clock = T0 * 1000;
    const auth = authenticator({});
    const token = await sign(rsa, { ...A, groups: Array.from({ length: 80 }, (_, i) => `group-${i}`) });
    expect(token.length).toBeGreaterThan(1024);
    expect(await auth.authenticate(bearer(token))).toMatchObject({ ok: true, cached: false });
    expect(await auth.authenticate(bearer(token))).toMatchObject({ ok: true, cached: true });
    const forged = changedAt(token, token.length - 10);
    expect(await auth.authenticate(bearer(forged))).toMatchObject({
      ok: false,
      reason: "jwt_signature_invalid",
    });
  });

  it("does not cache failures", async () => {
    clock = T0 * 1000;
    const auth = authenticator({});
    const bad = await sign(rsa, { ...A, aud: "nope" });
    expect(await auth.authenticate(bearer(bad))).toMatchObject({ ok: false });
    expect(await auth.authenticate(bearer(bad))).toMatchObject({ ok: false, reason: "jwt_audience_invalid" });
  });
});
