import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { SCHEMA_DIR, jsonSchemas } from "../../ext-service/src/config/export-schema.js";

describe("committed JSON Schemas", () => {
  it("match the zod schemas (run `npm run schema` after changing config/schema.ts)", () => {
    const generated = jsonSchemas();
    expect(readdirSync(SCHEMA_DIR).sort()).toEqual(Object.keys(generated).sort());
    for (const [name, text] of Object.entries(generated)) {
      expect(readFileSync(join(SCHEMA_DIR, name), "utf8"), name).toBe(text);
    }
  });
});
