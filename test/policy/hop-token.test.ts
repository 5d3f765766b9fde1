import { describe, expect, it } from "vitest";
import { HopTokens, MAX_HOP_TOKEN_LENGTH } from "../../ext-service/src/policy/hop-token.js";
import type { Principal } from "../../ext-service/src/policy/identity.js";
import { SessionSealer } from "../../ext-service/src/policy/session-seal.js";

/**
 * The broker's hop identity (policy/hop-token.ts): one server, a short life, and for a
 * token-exchange server the agent's token sealed inside, never longer than that token lives.
 */

const SECRET = "hop-secret-".padEnd(40, "h");
const T0 = 1_800_000_000_000;
const tester: Principal = Object.freeze({
  agent: "tester",
  roles: ["all"],
  claims: {},
  issuer: "https://idp.example",
  anonymous: false,
});

/** An unsigned JWT-shaped token with this `exp` (seconds): minting reads it, opening does not trust it. */
function jwtWith(exp: number): string {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
  return `${part({ alg: "ES256", typ: "JWT" })}.${part({ sub: "tester", exp })}.c2ln`;
}

function hops(now: { t: number }) {
  return new HopTokens(
    new SessionSealer([SECRET], MAX_HOP_TOKEN_LENGTH),
    60_000,
    () => now.t,
    (server) => server === "jira",
  );
}

describe("hop tokens", () => {
  it("seal the agent's token only for a token-exchange server", () => {
    const now = { t: T0 };
    const agentToken = jwtWith(T0 / 1000 + 3600);
    const forJira = hops(now).mint(tester, "jira", agentToken);
    const forKb = hops(now).mint(tester, "kb", agentToken);
    expect(hops(now).open(forJira, "jira")).toMatchObject({
      principal: { agent: "tester", issuer: "https://idp.example", viaBroker: true },
      subjectToken: agentToken,
    });
    expect(hops(now).open(forKb, "kb")?.subjectToken).toBeUndefined();
    // Ciphertext only: the token is not readable in the hop.
    expect(forJira).not.toContain(agentToken.split(".")[1]);
  });

  it("open on their own server only, and not once changed", () => {
    const now = { t: T0 };
    const hop = hops(now).mint(tester, "jira", jwtWith(T0 / 1000 + 3600));
    expect(hops(now).open(hop, "wiki")).toBeUndefined();
    expect(hops(now).open(`${hop.slice(0, -2)}AA`, "jira")).toBeUndefined();
  });

  it("live no longer than the TTL, nor than the agent token inside", () => {
    const now = { t: T0 };
    const longLived = hops(now).mint(tester, "jira", jwtWith(T0 / 1000 + 3600));
    const shortLived = hops(now).mint(tester, "jira", jwtWith(T0 / 1000 + 10));
    const expired = hops(now).mint(tester, "jira", jwtWith(T0 / 1000 - 1));
    expect(hops(now).open(expired, "jira")).toBeUndefined();
    now.t = T0 + 9_000;
    expect(hops(now).open(shortLived, "jira")).toBeDefined();
    now.t = T0 + 10_000;
    expect(hops(now).open(shortLived, "jira")).toBeUndefined();
    expect(hops(now).open(longLived, "jira")).toBeDefined();
    now.t = T0 + 61_000;
    expect(hops(now).open(longLived, "jira")).toBeUndefined();
  });

  it("carry no token for an anonymous principal", () => {
    const now = { t: T0 };
    const anonymous = { ...tester, agent: "anonymous", issuer: undefined, anonymous: true };
    const hop = hops(now).mint(anonymous, "jira", jwtWith(T0 / 1000 + 3600));
    expect(hops(now).open(hop, "jira")?.subjectToken).toBeUndefined();
  });
});
