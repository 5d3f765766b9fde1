import { beforeAll, describe, expect, it } from "vitest";
import { REGISTRY, engineFor, gatewayFor, makeKey, type TestKey } from "./support.js";

let key: TestKey;
beforeAll(async () => {
  key = await makeKey("ES256", "k1");
});

describe("the engine's date (deprecation checks)", () => {
  it("follows the clock across UTC midnight, forwards and backwards, with one engine", () => {
    let now = Date.parse("2026-12-31T23:59:59.999Z");
    const engine = engineFor(gatewayFor(key.publicJwk), REGISTRY, () => now);
    const decide = () => {
      const exchange = engine.newExchange("POST");
      exchange.principal = {
        agent: "support-bot",
        roles: ["support"],
        claims: {},
        issuer: undefined,
        anonymous: false,
      };
      exchange.server = "tickets";
      const message = {
        jsonrpc: "2.0",
        id: 1,
        method: "tools/call",
        params: { name: "new_export", arguments: {} },
      };
      const v = engine.evaluateRequestBody(exchange, new TextEncoder().encode(JSON.stringify(message)), {});
      return v.action === "reply" ? JSON.parse(v.reply.body).error.data.reason : v.action;
    };
    expect(engine.today()).toBe("2026-12-31");
    expect(decide()).toBe("forward");
    now += 1; // 2027-01-01T00:00:00.000Z: the tool's deprecation date
    expect(engine.today()).toBe("2027-01-01");
    expect(decide()).toBe("tool_deprecated");
    now = Date.parse("2027-01-01T23:59:59.999Z");
    expect(engine.today()).toBe("2027-01-01");
    now = Date.parse("2026-06-01T12:00:00Z"); // a clock set back
    expect(engine.today()).toBe("2026-06-01");
    expect(decide()).toBe("forward");
  });
});
