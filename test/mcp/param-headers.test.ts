import { describe, expect, it } from "vitest";
import { paramHeaderDeclarations, paramHeaderMismatch } from "../../ext-service/src/mcp/param-headers.js";

const SCHEMA = {
  type: "object",
  properties: {
    region: { type: "string", "x-mcp-header": "Region" },
    limit: { type: "integer", "x-mcp-header": "Limit" },
    options: { type: "object", properties: { dryRun: { type: "boolean", "x-mcp-header": "Dry-Run" } } },
    // Not reachable through `properties` alone: not a declaration.
    tags: { type: "array", items: { type: "string", "x-mcp-header": "Tag" } },
    plain: { type: "string" },
  },
};

const headersOf = (h: Record<string, string>) => (name: string) => h[name];

describe("Mcp-Param-* headers (SEP-2243)", () => {
  it("finds declarations along properties only, at any depth", () => {
    expect(paramHeaderDeclarations(SCHEMA)).toEqual([
      { header: "Region", path: ["region"], type: "string" },
      { header: "Limit", path: ["limit"], type: "integer" },
      { header: "Dry-Run", path: ["options", "dryRun"], type: "boolean" },
    ]);
  });

  const declarations = paramHeaderDeclarations(SCHEMA);

  it("accepts headers that agree, literal or Base64, and ignores arguments that are absent", () => {
    const args = { region: "eu-west", limit: 10, options: { dryRun: true } };
    expect(
      paramHeaderMismatch(
        declarations,
        args,
        headersOf({ "mcp-param-region": " eu-west ", "mcp-param-limit": "1e1", "mcp-param-dry-run": "true" }),
      ),
    ).toBeUndefined();
    expect(
      paramHeaderMismatch(
        declarations,
        { region: "Grüße" },
        headersOf({ "mcp-param-region": `=?base64?${Buffer.from("Grüße").toString("base64")}?=` }),
      ),
    ).toBeUndefined();
    expect(paramHeaderMismatch(declarations, {}, headersOf({}))).toBeUndefined();
  });

  it("refuses a missing header, a different value and a broken Base64 value", () => {
    expect(paramHeaderMismatch(declarations, { region: "eu" }, headersOf({}))).toBe(
      "the Mcp-Param-Region header is missing",
    );
    expect(paramHeaderMismatch(declarations, { region: "eu" }, headersOf({ "mcp-param-region": "us" }))).toBe(
      "Mcp-Param-Region does not match the argument region",
    );
    expect(
      paramHeaderMismatch(
        declarations,
        { options: { dryRun: false } },
        headersOf({ "mcp-param-dry-run": "true" }),
      ),
    ).toBe("Mcp-Param-Dry-Run does not match the argument options.dryRun");
    expect(
      paramHeaderMismatch(
        declarations,
        { region: "Hello" },
        headersOf({ "mcp-param-region": "=?base64?SGVsbG8?=" }),
      ),
    ).toBe("the Mcp-Param-Region header has an invalid Base64 value");
  });
});
