import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";
import { Ajv2020 } from "ajv/dist/2020.js";
import * as formatsModule from "ajv-formats";

/**
 * tools/call arguments checked against the tool's pinned inputSchema. Validators are compiled
 * once per pin (the pin hashes the schema, so equal pins mean equal schemas) and shared by every
 * engine in the process, so a hot reload does not recompile unchanged tools.
 */

type FormatsPlugin = (ajv: Ajv) => Ajv;
const addFormats = ((formatsModule as unknown as { default?: FormatsPlugin }).default ??
  (formatsModule as unknown as FormatsPlugin)) as FormatsPlugin;

const OPTIONS = {
  strict: false,
  allErrors: false,
  coerceTypes: false,
  useDefaults: false,
  removeAdditional: false,
  addUsedSchema: false,
  validateFormats: true,
} as const;

let draft7: Ajv | undefined;
let draft2020: Ajv | undefined;

function ajvFor(schema: Record<string, unknown>): Ajv {
  const dialect = typeof schema.$schema === "string" ? schema.$schema : "";
  if (dialect.includes("2020-12") || dialect.includes("2019-09")) {
    return (draft2020 ??= addFormats(new Ajv2020(OPTIONS) as unknown as Ajv));
  }
  return (draft7 ??= addFormats(new Ajv(OPTIONS)));
}

export type CompiledSchema = { ok: true; validate: ValidateFunction } | { ok: false; error: string };

/** Compiles a JSON Schema (draft-07 by default, 2019-09/2020-12 when `$schema` says so). */
export function compileSchema(schema: Record<string, unknown>): CompiledSchema {
  const ajv = ajvFor(schema);
  // The dialect was used to pick the validator; `$id` must not register globally across tools.
  const { $schema: _dialect, $id: _id, ...rest } = schema;
  try {
    return { ok: true, validate: ajv.compile(rest) };
  } catch (err) {
    return { ok: false, error: (err as Error).message };
  }
}

const MAX_CACHED = 10_000;
const byPin = new Map<string, CompiledSchema>();

/** The compiled validator for a pin, compiling on first use. */
export function validatorFor(pin: string, schema: Record<string, unknown>): CompiledSchema {
  let compiled = byPin.get(pin);
  if (compiled === undefined) {
    if (byPin.size >= MAX_CACHED) byPin.clear();
    compiled = compileSchema(schema);
    byPin.set(pin, compiled);
  }
  return compiled;
}

export type ArgumentCheck = { ok: true } | { ok: false; message: string };

/**
 * Validates `arguments` of a tools/call. The message names the field and what was expected
 * ("arguments.limit must be <= 20"); it never repeats the value the agent sent.
 */
export function validateArguments(
  pin: string,
  schema: Record<string, unknown>,
  args: unknown,
): ArgumentCheck {
  const compiled = validatorFor(pin, schema);
  if (!compiled.ok) return { ok: false, message: "the registered inputSchema of this tool is invalid" };
  const value = args === undefined ? {} : args;
  if (compiled.validate(value)) return { ok: true };
  const error = compiled.validate.errors?.[0];
  return { ok: false, message: error ? describeError(error) : "arguments do not match the inputSchema" };
}

function safeKey(key: string): string {
  // eslint-disable-next-line no-control-regex
  const clean = key.replace(/[\u0000-\u001f\u007f]/g, "?").slice(0, 64);
  return /^[A-Za-z_$][\w$]*$/.test(clean) ? `.${clean}` : `[${JSON.stringify(clean)}]`;
}

/** JSON Pointer `/a/0/b` as `arguments.a[0].b`. */
export function argumentPath(pointer: string): string {
  if (pointer === "") return "arguments";
  let out = "arguments";
  for (const raw of pointer.slice(1).split("/")) {
    const key = raw.replace(/~1/g, "/").replace(/~0/g, "~");
    out += /^(?:0|[1-9][0-9]*)$/.test(key) ? `[${key}]` : safeKey(key);
  }
  return out;
}

function describeError(e: ErrorObject): string {
  const path = argumentPath(e.instancePath);
  const params = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case "required":
      return `${path}${safeKey(String(params.missingProperty))} is required`;
    case "additionalProperties":
      return `${path}${safeKey(String(params.additionalProperty))} is not allowed`;
    case "enum": {
      const allowed = (params.allowedValues as unknown[] | undefined) ?? [];
      const list = allowed
        .slice(0, 10)
        .map((v) => JSON.stringify(v))
        .join(", ");
      return `${path} must be one of ${list}${allowed.length > 10 ? ", ..." : ""}`;
    }
    default:
      return `${path} ${e.message ?? "is invalid"}`;
  }
}
