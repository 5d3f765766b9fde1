import { describe, expect, it } from "vitest";
import { ConfigError, parseGatewayConfig } from "../../ext-service/src/config/load.js";

function problems(text: string) {
  try {
    parseGatewayConfig(text, "gateway.yaml");
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error("expected a ConfigError");
}

describe("gateway.yaml loading", () => {
  it("names a misspelled key with its file, line and path", () => {
    const found = problems("registry: r.yaml\nauth:\n  mode: optional\n  moed: required\n");
    expect(found).toEqual([
      { file: "gateway.yaml", path: "auth", line: 3, column: 3, message: "unknown key 'moed'" },
    ]);
  });

  it("requires an issuer when auth is required", () => {
    const found = problems("registry: r.yaml\nauth:\n  mode: required\n");
    expect(found.map((p) => `${p.path}: ${p.message}`)).toEqual([
      "auth.issuers: mode 'required' needs at least one issuer",
    ]);
  });
});
