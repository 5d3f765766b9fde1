import { describe, expect, it } from "vitest";
import { ConfigError, parseGatewayConfig } from "../../ext-service/src/config/load.js";
import { SecurityConfigError } from "../../ext-service/src/policy/security.js";
import { makeEngine } from "./helpers.js";

const base = "registry: r.yaml\nauth:\n  mode: optional\n";

function problems(text: string) {
  try {
    parseGatewayConfig(text, "gateway.yaml");
  } catch (err) {
    if (err instanceof ConfigError) return err.problems.map((p) => `${p.path}: ${p.message}`);
    throw err;
  }
  return [];
}

describe("the security section of gateway.yaml", () => {
  it("has secure defaults", () => {
    const config = parseGatewayConfig(base);
    expect(config.security).toMatchObject({
      pins: { enforce: true },
      validateArguments: true,
      maxScanChars: 2_097_152,
      injection: {
        enabled: true,
        descriptions: { block: "block", alert: "log" },
        arguments: { block: "block", alert: "log" },
        outputs: { block: "block", alert: "annotate" },
      },
      dlp: {
        enabled: true,
        arguments: { secret: "block", pii: "log" },
        outputs: { secret: "redact", pii: "redact" },
      },
      decode: { maxDepth: 3 },
    });
  });

  it("names misspelled keys, unknown detectors and actions not allowed for arguments", () => {
    expect(problems(`${base}security:\n  injection:\n    outputz: {}\n`)).toEqual([
      "security.injection: unknown key 'outputz' (did you mean 'outputs'?)",
    ]);
    expect(problems(`${base}security:\n  dlp:\n    detectors: [email, ssn]\n`)[0]).toMatch(
      /^security\.dlp\.detectors\[1\]: /,
    );
    expect(problems(`${base}security:\n  injection:\n    arguments: { block: redact }\n`)[0]).toMatch(
      /^security\.injection\.arguments\.block: /,
    );
  });

  it("resolves per server and per tool overrides in order", () => {
    const engine = makeEngine({
      security: {
        overrides: [
          { match: ["kb/*"], dlp: { outputs: { pii: "log" } } },
          { match: ["kb/create_ticket"], dlp: { outputs: { pii: "block" } }, injection: { enabled: false } },
        ],
      },
    });
    expect(engine.security.resolve("kb", "search_articles").dlp.outputs).toEqual({
      secret: "redact",
      pii: "log",
    });
    expect(engine.security.resolve("kb", "create_ticket").dlp.outputs).toEqual({
      secret: "redact",
      pii: "block",
    });
    expect(engine.security.resolve("kb", "create_ticket").injection.enabled).toBe(false);
    expect(engine.security.resolve("other", "x").dlp.outputs).toEqual({ secret: "redact", pii: "redact" });
  });

  it("rejects an allowlist pattern that is not a regular expression, naming where", () => {
    expect(() => makeEngine({ security: { dlp: { allow: [{ patterns: ["(unclosed"] }] } } })).toThrow(
      SecurityConfigError,
    );
    try {
      makeEngine({ security: { dlp: { allow: [{ patterns: ["(unclosed"] }] } } });
    } catch (err) {
      expect((err as SecurityConfigError).path).toBe("security.dlp.allow[0].patterns[0]");
    }
  });
});
