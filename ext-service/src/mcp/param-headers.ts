import { decodeHeaderValue } from "./eras.js";
import { isPlainObject } from "./jsonrpc.js";

/** The header a tool argument is mirrored into: `Mcp-Param-<x-mcp-header>` (2026-07-28, SEP-2243). */
export const PARAM_HEADER_PREFIX = "mcp-param-";

export interface ParamHeaderDeclaration {
  /** The `x-mcp-header` value, as declared. */
  header: string;
  /** Property names from the argument object down to the value. */
  path: string[];
  type: string | undefined;
}

/**
 * The `x-mcp-header` declarations of a tool's input schema. Only properties reachable through a
 * chain of `properties` count (the spec forbids the annotation anywhere else); the walk visits
 * each schema node once, so it is linear in the schema's size.
 */
export function paramHeaderDeclarations(inputSchema: unknown): ParamHeaderDeclaration[] {
  const out: ParamHeaderDeclaration[] = [];
  const visit = (node: unknown, path: string[]) => {
    if (!isPlainObject(node)) return;
    const header = node["x-mcp-header"];
    if (path.length > 0 && typeof header === "string" && header.length > 0)
      out.push({ header, path, type: typeof node.type === "string" ? node.type : undefined });
    if (!isPlainObject(node.properties)) return;
    for (const [key, child] of Object.entries(node.properties)) visit(child, [...path, key]);
  };
  visit(inputSchema, []);
  return out;
}

function valueAt(args: unknown, path: string[]): unknown {
  let value = args;
  for (const key of path) {
    if (!isPlainObject(value) || !Object.hasOwn(value, key)) return undefined;
    value = value[key];
  }
  return value;
}

const CANONICAL_DECIMAL = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$/;

/**
 * Whether the `Mcp-Param-*` headers of a `tools/call` agree with its arguments: every declared
 * argument present in the body (as a string, number or boolean) must come with its header, and
 * the header's (decoded) value must equal it. The reason when they do not, as the server would
 * refuse it (HTTP 400, HeaderMismatch); undefined when they agree.
 */
export function paramHeaderMismatch(
  declarations: readonly ParamHeaderDeclaration[],
  args: unknown,
  header: (lowerCaseName: string) => string | undefined,
): string | undefined {
  for (const declaration of declarations) {
    const value = valueAt(args, declaration.path);
    if (typeof value !== "string" && typeof value !== "number" && typeof value !== "boolean") continue;
    const name = `Mcp-Param-${declaration.header}`;
    const sent = header(name.toLowerCase())?.trim();
    if (sent === undefined) return `the ${name} header is missing`;
    const decoded = decodeHeaderValue(sent);
    if (decoded === undefined) return `the ${name} header has an invalid Base64 value`;
    const agrees =
      typeof value === "number" && CANONICAL_DECIMAL.test(decoded)
        ? Number(decoded) === value
        : decoded === String(value);
    if (!agrees) return `${name} does not match the argument ${declaration.path.join(".")}`;
  }
  return undefined;
}
