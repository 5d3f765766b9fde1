import type { Struct, StructValue } from "./types.js";

/** JSON-like values that fit in a google.protobuf.Struct. */
export type StructJson = null | boolean | number | string | StructJson[] | { [key: string]: StructJson };

function toValue(value: unknown): StructValue {
  if (value === null || value === undefined) return { nullValue: "NULL_VALUE" };
  switch (typeof value) {
    case "boolean":
      return { boolValue: value };
    case "number":
      return { numberValue: value };
    case "string":
      return { stringValue: value };
    default:
      break;
  }
  if (Array.isArray(value)) return { listValue: { values: value.map(toValue) } };
  if (typeof value === "object") return { structValue: toStruct(value as Record<string, unknown>) };
  return { stringValue: String(value) };
}

/** A plain object as a google.protobuf.Struct (undefined members are left out). */
export function toStruct(object: Record<string, unknown>): Struct {
  const fields: Record<string, StructValue> = {};
  for (const [key, value] of Object.entries(object)) {
    if (value !== undefined) fields[key] = toValue(value);
  }
  return { fields };
}

function fromValue(value: StructValue | undefined): StructJson {
  if (!value) return null;
  if (value.stringValue !== undefined) return value.stringValue;
  if (value.numberValue !== undefined) return value.numberValue;
  if (value.boolValue !== undefined) return value.boolValue;
  if (value.structValue !== undefined) return fromStruct(value.structValue);
  if (value.listValue !== undefined) return (value.listValue.values ?? []).map(fromValue);
  return null;
}

/** A google.protobuf.Struct as a plain object. */
export function fromStruct(struct: Struct | undefined): { [key: string]: StructJson } {
  const out: { [key: string]: StructJson } = {};
  for (const [key, value] of Object.entries(struct?.fields ?? {})) out[key] = fromValue(value);
  return out;
}
