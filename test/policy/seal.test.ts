import { describe, expect, it } from "vitest";
import { newExchange, type Exchange } from "../../ext-service/src/policy/exchange.js";
import { StreamResumption } from "../../ext-service/src/policy/resumption.js";
import { Sealer } from "../../ext-service/src/policy/seal.js";
import { SessionSealer, type SessionOwner } from "../../ext-service/src/policy/session-seal.js";
import { REGISTRY, engineFor, gatewayFor, makeKey } from "./support.js";

/**
 * One sealing primitive and one key source (policy/seal.ts, `sessions.keys`): session ids, SSE
 * event ids and hop tokens are sealed the same way, rotate the same way, and one never opens as
 * another.
 */

const OLD = "old-secret-".padEnd(40, "o");
const NEW = "new-secret-".padEnd(40, "n");
const alice: SessionOwner = { issuer: "https://idp.example", agent: "alice", server: "docs" };

function exchange(sessionId = "s-1"): Exchange {
  const ex = newExchange("req-1", "POST", 0);
  ex.principal = { agent: "alice", roles: [], claims: {}, issuer: "https://idp.example", anonymous: false };
  ex.server = "docs";
  ex.sessionId = sessionId;
  ex.pending.set("n:1", { method: "tools/call", target: "search" });
  return ex;
}

describe("one sealing primitive", () => {
  it("keeps purposes apart: the same secret, data and content seal differently, and never open across", () => {
    const aad = Buffer.from("owner");
    const session = new Sealer([OLD], "session", 4096);
    const resumption = new Sealer([OLD], "resumption", 4096);
    const sealed = session.seal(aad, "content");
    expect(resumption.seal(aad, "content")).not.toBe(sealed);
    expect(session.open(sealed, aad)).toBe("content");
    expect(resumption.open(sealed, aad)).toBeUndefined();
  });

  it("rotates SSE event ids like session ids: the new key seals, the old one still opens", () => {
    const before = new StreamResumption([OLD]).seal(exchange(), "ev-7");
    const rotating = new StreamResumption([NEW, OLD]);
    expect(rotating.open(exchange(), before)?.upstreamEventId).toBe("ev-7");
    const after = rotating.seal(exchange(), "ev-8");
    expect(new StreamResumption([NEW]).open(exchange(), after)?.pending).toEqual([
      ["n:1", { method: "tools/call", target: "search" }],
    ]);
    expect(new StreamResumption([NEW]).open(exchange(), before)).toBeUndefined();
    expect(new StreamResumption([OLD]).open(exchange(), after)).toBeUndefined();
    // Bound to the session as before.
    expect(rotating.open(exchange("s-2"), after)).toBeUndefined();
  });

  it("a session id never opens as an event id, nor the reverse", () => {
    const sessionId = new SessionSealer([OLD]).seal(alice, "ev-1");
    expect(new StreamResumption([OLD]).open(exchange(), sessionId)).toBeUndefined();
    const eventId = new StreamResumption([OLD]).seal(exchange(), "ev-1");
    expect(new SessionSealer([OLD]).open(eventId, alice)).toBeUndefined();
  });

  it("two engines with the same sessions.keys (two replicas) open each other's session and event ids", async () => {
    const { publicJwk: jwk } = await makeKey("ES256", "seal-test");
    process.env.MCP_GATEWAY_SEAL_TEST_KEY = NEW;
    process.env.MCP_GATEWAY_SEAL_TEST_OTHER = OLD;
    try {
      const keyed = (env: string) => ({ ...gatewayFor(jwk), sessions: { keys: [{ env }] } });
      const one = engineFor(keyed("MCP_GATEWAY_SEAL_TEST_KEY"), REGISTRY);
      const two = engineFor(keyed("MCP_GATEWAY_SEAL_TEST_KEY"), REGISTRY);
      const other = engineFor(keyed("MCP_GATEWAY_SEAL_TEST_OTHER"), REGISTRY);
      const sessionId = one.sessions.seal(alice, "u-1");
      const eventId = one.resumption.seal(exchange(), "ev-3");
      expect(two.sessions.open(sessionId, alice)).toBe("u-1");
      expect(two.resumption.open(exchange(), eventId)?.upstreamEventId).toBe("ev-3");
      expect(other.sessions.open(sessionId, alice)).toBeUndefined();
      expect(other.resumption.open(exchange(), eventId)).toBeUndefined();
    } finally {
      delete process.env.MCP_GATEWAY_SEAL_TEST_KEY;
      delete process.env.MCP_GATEWAY_SEAL_TEST_OTHER;
    }
  });
});
