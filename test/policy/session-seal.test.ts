import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  MAX_SEALED_LENGTH,
  openUpstreamSession,
  sealUpstreamSession,
  SessionSealer,
  type SessionOwner,
} from "../../ext-service/src/policy/session-seal.js";

const OLD = "old-secret-".padEnd(40, "o");
const NEW = "new-secret-".padEnd(40, "n");
const alice: SessionOwner = { issuer: "https://idp-a.example", agent: "alice", server: "docs" };

describe("session ids sealed by the gateway", () => {
  const sealer = new SessionSealer([OLD]);

  it("opens for its owner, and carries the upstream id and endpoint", () => {
    const sealed = sealUpstreamSession(sealer, alice, {
      upstream: "u-1",
      endpoint: "http://10.0.0.1:3000/mcp",
    });
    expect(openUpstreamSession(sealer, sealed, alice)).toEqual({
      upstream: "u-1",
      endpoint: "http://10.0.0.1:3000/mcp",
    });
    expect(
      openUpstreamSession(sealer, sealUpstreamSession(sealer, alice, { upstream: "u-2" }), alice),
    ).toEqual({
      upstream: "u-2",
    });
  });

  it("never shows the upstream id, and is a valid header value", () => {
    const sealed = sealUpstreamSession(sealer, alice, { upstream: "3f1c0a2e-upstream-session" });
    expect(sealed).not.toContain("upstream");
    expect(sealed).toMatch(/^g1\.[A-Za-z0-9_-]+$/);
  });

  it("seals the same session to the same id (any replica, any response), different sessions differently", () => {
    const other = new SessionSealer([OLD]);
    const a = sealUpstreamSession(sealer, alice, { upstream: "u-1" });
    expect(sealUpstreamSession(other, alice, { upstream: "u-1" })).toBe(a);
    expect(sealUpstreamSession(sealer, alice, { upstream: "u-2" })).not.toBe(a);
    expect(sealUpstreamSession(sealer, { ...alice, agent: "bob" }, { upstream: "u-1" })).not.toBe(a);
  });

  it("reads as unknown for another agent, another issuer's agent of the same name, another server", () => {
    const sealed = sealUpstreamSession(sealer, alice, { upstream: "u-1" });
    for (const owner of [
      { ...alice, agent: "bob" },
      { ...alice, issuer: "https://partner.example" },
      { ...alice, issuer: undefined },
      { ...alice, server: "tickets" },
    ]) {
      expect(openUpstreamSession(sealer, sealed, owner), JSON.stringify(owner)).toBeUndefined();
    }
  });

  it("reads as unknown after any change of any character, or when it is not one of ours", () => {
    const sealed = sealUpstreamSession(sealer, alice, { upstream: "u-1" });
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";
    fc.assert(
      fc.property(fc.nat(sealed.length - 1), fc.constantFrom(...alphabet), (i, c) => {
        fc.pre(sealed[i] !== c);
        const changed = sealed.slice(0, i) + c + sealed.slice(i + 1);
        expect(openUpstreamSession(sealer, changed, alice)).toBeUndefined();
      }),
      { numRuns: 500 },
    );
    for (const junk of [
      "",
      "u-1",
      "g1.",
      "g1.!!!!",
      "g1.AAAA",
      sealed + "A",
      sealed.slice(0, -2),
      "g2" + sealed.slice(2),
    ]) {
      expect(openUpstreamSession(sealer, junk, alice), junk).toBeUndefined();
    }
    expect(openUpstreamSession(sealer, "g1." + "A".repeat(MAX_SEALED_LENGTH), alice)).toBeUndefined();
  });

  it("rotates keys: the first seals, the previous still opens; a dropped key opens nothing", () => {
    const before = sealUpstreamSession(new SessionSealer([OLD]), alice, { upstream: "u-1" });
    const rotating = new SessionSealer([NEW, OLD]);
    expect(openUpstreamSession(rotating, before, alice)).toEqual({ upstream: "u-1" });
    const after = sealUpstreamSession(rotating, alice, { upstream: "u-1" });
    expect(after).not.toBe(before);
    expect(openUpstreamSession(new SessionSealer([NEW]), after, alice)).toEqual({ upstream: "u-1" });
    expect(openUpstreamSession(new SessionSealer([NEW]), before, alice)).toBeUndefined();
    expect(openUpstreamSession(new SessionSealer([OLD]), after, alice)).toBeUndefined();
  });
});
