import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { jsonSchemas } from "../../ext-service/src/config/export-schema.js";

/**
 * docs/CONFIG.md is written by hand from config/schema.ts; this keeps it accurate: every key of
 * the schema has a row, every row names a key that exists, and defaults match.
 */

interface Key {
  path: string;
  default: unknown;
  required: boolean;
  /** Under a union (such as `jwks`): the key is required only for its alternative. */
  inUnion: boolean;
  hasChildren: boolean;
}

interface Schema {
  type?: string;
  properties?: Record<string, Schema>;
  required?: string[];
  additionalProperties?: Schema | boolean;
  items?: Schema;
  anyOf?: Schema[];
  default?: unknown;
}

function keys(schema: Schema, path = "", inUnion = false, out: Key[] = []): Key[] {
  for (const branch of schema.anyOf ?? []) keys(branch, path, true, out);
  if (schema.properties) {
    for (const [name, child] of Object.entries(schema.properties)) {
      const p = path ? `${path}.${name}` : name;
      out.push({
        path: p,
        default: child.default,
        required: schema.required?.includes(name) ?? false,
        inUnion,
        hasChildren: child.properties !== undefined,
      });
      keys(child, p, false, out);
    }
  } else if (typeof schema.additionalProperties === "object") {
    keys(schema.additionalProperties, `${path}.<name>`, inUnion, out);
  } else if (schema.items) {
    keys(schema.items, `${path}[]`, inUnion, out);
  }
  return out;
}

/** How CONFIG.md writes a default value: YAML flow style, strings unquoted. */
function render(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(render).join(", ")}]`;
  if (typeof v === "object" && v !== null) {
    return `{${Object.entries(v)
      .map(([k, x]) => `${k}: ${render(x)}`)
      .join(", ")}}`;
  }
  return v === "" ? '""' : String(v);
}

function documented(section: string): Map<string, string> {
  const text = readFileSync(join(import.meta.dirname, "../../docs/CONFIG.md"), "utf8");
  const start = text.indexOf(`## ${section}`);
  const end = text.indexOf("\n## ", start + 1);
  const rows = new Map<string, string>();
  for (const line of text.slice(start, end < 0 ? undefined : end).split("\n")) {
    const cells = line.split("|").map((c) => c.trim());
    const m = /^`([^`]+)`$/.exec(cells[1] ?? "");
    if (!m || cells.length !== 6) continue;
    rows.set(m[1]!, cells[3]!);
  }
  return rows;
}

const schemas = jsonSchemas();
for (const [file, name] of [
  ["gateway.yaml", "gateway.schema.json"],
  ["registry.yaml", "registry.schema.json"],
] as const) {
  describe(`docs/CONFIG.md: ${file}`, () => {
    const all = keys(JSON.parse(schemas[name]!) as Schema);
    const rows = documented(file);
    it("parses the reference tables", () => {
      expect(rows.size).toBeGreaterThan(15);
    });

    it("documents every key, and no key that does not exist", () => {
      expect([...rows.keys()].sort()).toEqual([...new Set(all.map((k) => k.path))].sort());
    });

    it("gives each key's default, or says it is required", () => {
      for (const key of all) {
        const cell = rows.get(key.path);
        if (key.default !== undefined && !key.hasChildren)
          expect(cell, key.path).toBe(`\`${render(key.default)}\``);
        else if (key.default !== undefined) expect(cell, key.path).toBe("see below");
        else if (key.required && key.inUnion) expect(cell, key.path).toBe("one of");
        else if (key.required) expect(cell, key.path).toBe("required");
        else expect(cell, key.path).toBe("—");
      }
    });
  });
}
