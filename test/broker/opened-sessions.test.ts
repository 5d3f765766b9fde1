import { describe, expect, it } from "vitest";
import {
  brokerSessionOwner,
  OpenedBrokerSessions,
  openBrokerSession,
  sealBrokerSession,
  type BrokerSession,
} from "../../ext-service/src/broker/session.js";
import { SessionSealer } from "../../ext-service/src/policy/session-seal.js";

const KEY = "broker-key-".padEnd(40, "k");
const OTHER_KEY = "other-key-".padEnd(40, "o");
const NOW = 1_800_000_000_000;
const tester = brokerSessionOwner("https://idp.example", "tester", undefined);

function session(expiresAt: number): BrokerSession {
  return {
    protocolVersion: "2025-11-25",
    clientCapabilities: { elicitation: {} },
    clientInfo: { name: "client", version: "1.0.0" },
    hops: { tickets: "g1.hop" },
    expiresAt,
  };
}

describe("sealed broker session ids opened once per process (OpenedBrokerSessions)", () => {
  it("answers as opening the id again would, for every owner, key set and time", () => {
    const sealer = new SessionSealer([KEY]);
    const opened = new OpenedBrokerSessions(100);
    const sealed = sealBrokerSession(sealer, tester, session(NOW + 60_000));
    const cases: [SessionSealer, typeof tester, number][] = [
      [sealer, tester, NOW],
      // Another agent, issuer or view with the id its owner used a moment ago.
      [sealer, brokerSessionOwner("https://idp.example", "reader", undefined), NOW],
      [sealer, brokerSessionOwner("https://other-idp.example", "tester", undefined), NOW],
      [sealer, brokerSessionOwner("https://idp.example", "tester", "support"), NOW],
      // A reload whose keys no longer include the one that sealed it.
      [new SessionSealer([OTHER_KEY]), tester, NOW],
      // A reload that keeps the key: the id still opens.
      [new SessionSealer([OTHER_KEY, KEY]), tester, NOW],
      [sealer, tester, NOW + 59_999],
      // Expired.
      [sealer, tester, NOW + 60_000],
      [sealer, tester, NOW],
    ];
    for (const [s, owner, now] of cases) {
      expect(opened.open(s, sealed, owner, now), JSON.stringify([owner, now])).toEqual(
        openBrokerSession(s, sealed, owner, now),
      );
    }
    expect(opened.open(sealer, sealed, tester, NOW)).toEqual(session(NOW + 60_000));
    expect(
      opened.open(sealer, sealed, brokerSessionOwner("https://idp.example", "reader", undefined), NOW),
    ).toBeUndefined();
  });

  it("a changed byte is another id: it does not open", () => {
    const sealer = new SessionSealer([KEY]);
    const opened = new OpenedBrokerSessions(100);
    const sealed = sealBrokerSession(sealer, tester, session(NOW + 60_000));
    expect(opened.open(sealer, sealed, tester, NOW)).toBeDefined();
    const last = sealed.at(-1) === "A" ? "B" : "A";
    expect(opened.open(sealer, `${sealed.slice(0, -1)}${last}`, tester, NOW)).toBeUndefined();
  });
});
