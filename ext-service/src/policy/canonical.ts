import { createHash } from "node:crypto";

/**
 * Canonical JSON in the style of RFC 8785 (JCS): object keys sorted by UTF-16 code units, no
 * whitespace, strings and finite numbers serialised exactly as JSON.stringify does (which is the
 * ECMAScript number formatting JCS prescribes). Used to hash tool definitions into pins, so two
 * definitions that differ only in key order or formatting get the same pin.
 */

export class CanonicalJsonError extends Error {}

export function canonicalJson(value: unknown): string {
  return write(value, 0);
}

const MAX_DEPTH = 128;

function write(value: unknown, depth: number): string {
  if (depth > MAX_DEPTH) throw new CanonicalJsonError("value nested too deeply to canonicalise");
  if (value === null) return "null";
  switch (typeof value) {
    case "string":
      return JSON.stringify(value);
    case "boolean":
      return value ? "true" : "false";
    case "number":
      if (!Number.isFinite(value)) throw new CanonicalJsonError(`${value} has no JSON form`);
      return JSON.stringify(value);
    case "object": {
      if (Array.isArray(value)) {
        let out = "[";
        for (let i = 0; i < value.length; i++) {
          if (i > 0) out += ",";
          // As in JSON.stringify, holes and undefined inside arrays become null.
          const item: unknown = value[i];
          out += item === undefined ? "null" : write(item, depth + 1);
        }
        return out + "]";
      }
      const record = value as Record<string, unknown>;
      // Default sort compares UTF-16 code units, which is what RFC 8785 specifies.
      const keys = Object.keys(record)
        .filter((k) => record[k] !== undefined)
        .sort();
      let out = "{";
      for (let i = 0; i < keys.length; i++) {
        if (i > 0) out += ",";
        const key = keys[i]!;
        out += JSON.stringify(key) + ":" + write(record[key], depth + 1);
      }
      return out + "}";
    }
    default:
      throw new CanonicalJsonError(`a ${typeof value} has no JSON form`);
  }
}

/** The fields of a tool definition that a pin covers, in the MCP `Tool` shape. */
export interface ToolDefinition {
  name: string;
  title?: string;
  description?: string;
  inputSchema?: Record<string, unknown>;
  outputSchema?: Record<string, unknown>;
  annotations?: Record<string, unknown>;
}

export const PINNED_FIELDS = [
  "name",
  "title",
  "description",
  "inputSchema",
  "outputSchema",
  "annotations",
] as const satisfies readonly (keyof ToolDefinition)[];

export type PinnedField = (typeof PINNED_FIELDS)[number];

/**
 * Picks the pinned fields from a tool as a server lists it or as the registry records it. Absent
 * fields are omitted; an empty description counts as absent, because the registry schema
 * defaults a missing description to "".
 */
export function toolDefinition(tool: Readonly<Record<string, unknown>>): ToolDefinition {
  const def: Record<string, unknown> = {};
  for (const field of PINNED_FIELDS) {
    const v = tool[field];
    if (v === undefined || v === null) continue;
    if (field === "description" && v === "") continue;
    def[field] = v;
  }
  return def as unknown as ToolDefinition;
}

/** `sha256:<hex>` of the canonical JSON of the tool's pinned fields. */
export function toolPin(tool: Readonly<Record<string, unknown>>): string {
  return (
    "sha256:" +
    createHash("sha256")
      .update(canonicalJson(toolDefinition(tool)), "utf8")
      .digest("hex")
  );
}

/** Which pinned fields differ between two definitions (compared canonically). */
export function changedFields(
  before: Readonly<Record<string, unknown>>,
  after: Readonly<Record<string, unknown>>,
): PinnedField[] {
  const a = toolDefinition(before) as unknown as Record<string, unknown>;
  const b = toolDefinition(after) as unknown as Record<string, unknown>;
  return PINNED_FIELDS.filter((f) => {
    const x = a[f];
    const y = b[f];
    if (x === undefined || y === undefined) return x !== y;
    return canonicalJson(x) !== canonicalJson(y);
  });
}
