import type { StandardSchemaV1 } from "@modelcontextprotocol/client";
import { isPlainObject } from "../mcp/jsonrpc.js";
import type { ListKind } from "./list-cache.js";

/**
 * One page of a server's list as the broker takes it from a hop (`tools/list`, `prompts/list`,
 * `resources/list`, `resources/templates/list`), checked by hand instead of by the SDK client's
 * schema for the method.
 *
 * Why: the SDK client validated each page with its zod schema, whose tool `inputSchema` and
 * `outputSchema` properties are records of recursive JSON values: a deep walk of every definition,
 * on an answer that came out of `JSON.parse` (so every value is JSON already). That walk was about
 * half of an uncached `tools/list` through `/mcp` (docs/BENCHMARKS.md). This check keeps every
 * constraint of the 2025-11-25 list schemas but that one: each field the schemas name has the type
 * they require, enumerations and bounds included, and it is linear in the size of the page.
 *
 * What it does not do that the SDK's schema did: strip fields the schema does not name. The
 * broker passes them on as the per-server path passed them (a client of `/mcp/<server>` gets them
 * too); the agent's own SDK drops what it does not know.
 *
 * A page that fails is refused as a whole (fail closed), as the SDK refused it: the SDK client
 * rejects the request with `Invalid result for <method>: <the first problem, with its path>`, and
 * the broker leaves that server out of the list, logged and counted (BrokerHops.dropped).
 */

/** A page as checked: the list's items are plain objects; nothing is copied. */
export type ListPage = Record<string, unknown> & { nextCursor?: string };

type Check = (value: unknown, path: string) => string | undefined;

const string: Check = (v, path) => (typeof v === "string" ? undefined : `${path} must be a string`);
const boolean: Check = (v, path) => (typeof v === "boolean" ? undefined : `${path} must be a boolean`);
const number: Check = (v, path) =>
  typeof v === "number" && Number.isFinite(v) ? undefined : `${path} must be a number`;
const object: Check = (v, path) => (isPlainObject(v) ? undefined : `${path} must be an object`);

function oneOf(values: readonly string[]): Check {
  return (v, path) =>
    typeof v === "string" && values.includes(v)
      ? undefined
      : `${path} must be one of ${values.map((x) => JSON.stringify(x)).join(", ")}`;
}

function arrayOf(item: Check): Check {
  return (v, path) => {
    if (!Array.isArray(v)) return `${path} must be an array`;
    for (let i = 0; i < v.length; i++) {
      const problem = item(v[i], `${path}[${i}]`);
      if (problem !== undefined) return problem;
    }
    return undefined;
  };
}

/** An object whose named fields, when present, pass their checks; `required` must be present. */
function fields(checks: Readonly<Record<string, Check>>, required: readonly string[] = []): Check {
  const named = Object.entries(checks);
  return (v, path) => {
    if (!isPlainObject(v)) return `${path} must be an object`;
    for (const key of required) if (!(key in v)) return `${path}.${key} is missing`;
    for (const [key, check] of named) {
      const value = v[key];
      if (value === undefined) continue;
      const problem = check(value, `${path}.${key}`);
      if (problem !== undefined) return problem;
    }
    return undefined;
  };
}

/**
 * RFC 3339 date-time with seconds and a time zone (`Z` or `+hh:mm`), as the SDK requires of
 * `annotations.lastModified` (zod's `z.iso.datetime({ offset: true })`): the parts by a regular
 * expression without nested repetition (linear on any input), the ranges by arithmetic.
 */
const DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:Z|[+-](\d{2}):(\d{2}))$/;
const MONTH_DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function isDateTime(text: string): boolean {
  const m = DATE_TIME.exec(text);
  if (!m) return false;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as number[];
  const leap = year! % 4 === 0 && (year! % 100 !== 0 || year! % 400 === 0);
  const days = month === 2 && leap ? 29 : MONTH_DAYS[month! - 1];
  return (
    days !== undefined &&
    day! >= 1 &&
    day! <= days &&
    hour! <= 23 &&
    minute! <= 59 &&
    second! <= 59 &&
    (m[7] === undefined || (Number(m[7]) <= 23 && Number(m[8]) <= 59))
  );
}

const dateTime: Check = (v, path) =>
  typeof v === "string" && isDateTime(v) ? undefined : `${path} must be an RFC 3339 date-time`;

const icon = fields(
  { src: string, mimeType: string, sizes: arrayOf(string), theme: oneOf(["light", "dark"]) },
  ["src"],
);

/** name, title, icons: what every listed kind has (BaseMetadata and Icons). */
const base = { name: string, title: string, icons: arrayOf(icon), description: string, _meta: object };

const annotations = fields({
  audience: arrayOf(oneOf(["user", "assistant"])),
  priority: (v, path) =>
    typeof v === "number" && v >= 0 && v <= 1 ? undefined : `${path} must be a number from 0 to 1`,
  lastModified: dateTime,
});

/** A tool's input or output schema: a JSON Schema object whose root is an object type. */
const objectSchema: Check = (v, path) => {
  if (!isPlainObject(v)) return `${path} must be an object`;
  if (v.type !== "object") return `${path}.type must be "object"`;
  if (v.properties !== undefined && !isPlainObject(v.properties))
    return `${path}.properties must be an object`;
  if (v.required !== undefined) return arrayOf(string)(v.required, `${path}.required`);
  return undefined;
};

const ITEMS: Readonly<Record<ListKind, Check>> = {
  tools: fields(
    {
      ...base,
      inputSchema: objectSchema,
      outputSchema: objectSchema,
      annotations: fields({
        title: string,
        readOnlyHint: boolean,
        destructiveHint: boolean,
        idempotentHint: boolean,
        openWorldHint: boolean,
      }),
      execution: fields({ taskSupport: oneOf(["required", "optional", "forbidden"]) }),
    },
    ["name", "inputSchema"],
  ),
  prompts: fields(
    {
      ...base,
      arguments: arrayOf(fields({ name: string, description: string, required: boolean }, ["name"])),
    },
    ["name"],
  ),
  resources: fields({ ...base, uri: string, mimeType: string, size: number, annotations }, ["name", "uri"]),
  resourceTemplates: fields({ ...base, uriTemplate: string, mimeType: string, annotations }, [
    "name",
    "uriTemplate",
  ]),
};

/** The first problem of a page of `kind`, with its path (`tools[3].inputSchema.type`); else undefined. */
export function listPageProblem(kind: ListKind, page: unknown): string | undefined {
  if (!isPlainObject(page)) return "the result must be an object";
  if (page.nextCursor !== undefined && typeof page.nextCursor !== "string")
    return "nextCursor must be a string";
  if (page._meta !== undefined && !isPlainObject(page._meta)) return "_meta must be an object";
  if (!(kind in page)) return `${kind} is missing`;
  return arrayOf(ITEMS[kind])(page[kind], kind);
}

function pageSchema(kind: ListKind): StandardSchemaV1<unknown, ListPage> {
  return {
    "~standard": {
      version: 1,
      vendor: "mcp-gateway",
      validate(value) {
        const problem = listPageProblem(kind, value);
        return problem === undefined ? { value: value as ListPage } : { issues: [{ message: problem }] };
      },
    },
  };
}

/**
 * The result schemas the broker's hop requests of lists give the SDK client (`client.request(req,
 * LIST_PAGES[kind])`): listPageProblem, as a Standard Schema, in place of the method's own.
 */
export const LIST_PAGES: Readonly<Record<ListKind, StandardSchemaV1<unknown, ListPage>>> = {
  tools: pageSchema("tools"),
  prompts: pageSchema("prompts"),
  resources: pageSchema("resources"),
  resourceTemplates: pageSchema("resourceTemplates"),
};
