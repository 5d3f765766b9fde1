import type { StandardSchemaV1 } from "@modelcontextprotocol/client";
import { isPlainObject } from "../mcp/jsonrpc.js";

/**
 * A `tools/call` result as the broker takes it from a hop: the server's result as the per-server
 * path passed it (its policy inspected it there: DLP, injection checks, output pins), relayed to the
 * agent as it is. The SDK client's schema of the method would parse it again (a deep walk of a
 * large result) and drop what it does not name (a content part's extra fields); a gateway passes
 * on what the server sent, `_meta` and `structuredContent` included, and the agent's own SDK
 * checks what it takes.
 *
 * Only the shape the broker itself relies on is checked, shallowly (linear in the number of
 * content parts): an object whose `content`, when present, is an array of objects, `isError` a
 * boolean and `structuredContent` an object. Anything else is refused as the SDK refused it
 * (upstream_invalid_response: the SDK client rejects with `Invalid result for tools/call`).
 */
export type CallResult = Record<string, unknown>;

export function callResultProblem(result: unknown): string | undefined {
  if (!isPlainObject(result)) return "the result must be an object";
  const { content, isError, structuredContent, _meta } = result;
  if (content !== undefined) {
    if (!Array.isArray(content)) return "content must be an array";
    const part = content.findIndex((c) => !isPlainObject(c) || typeof c.type !== "string");
    if (part >= 0) return `content[${part}] must be an object with a string type`;
  }
  if (isError !== undefined && typeof isError !== "boolean") return "isError must be a boolean";
  if (structuredContent !== undefined && !isPlainObject(structuredContent))
    return "structuredContent must be an object";
  if (_meta !== undefined && !isPlainObject(_meta)) return "_meta must be an object";
  return undefined;
}

/** The result schema the broker's hop `tools/call` gives the SDK client, in place of the method's own. */
export const CALL_RESULT: StandardSchemaV1<unknown, CallResult> = {
  "~standard": {
    version: 1,
    vendor: "mcp-gateway",
    validate(value) {
      const problem = callResultProblem(value);
      return problem === undefined ? { value: value as CallResult } : { issues: [{ message: problem }] };
    },
  },
};
