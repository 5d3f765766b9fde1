import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { jsonDepth, parseJsonRpcText, type JsonRpcMessage } from "../../ext-service/src/mcp/jsonrpc.js";

const limits = { maxJsonDepth: 64, maxBatchSize: 32 };

const id = fc.oneof(fc.string({ maxLength: 8 }), fc.integer(), fc.integer({ min: 0, max: 5 }));
const method = fc.oneof(
  fc.constantFrom(
    "tools/call",
    "tools/list",
    "initialize",
    "notifications/progress",
    "sampling/createMessage",
  ),
  fc.string({ minLength: 1, maxLength: 12 }),
);
const json = fc.jsonValue({ maxDepth: 4 });
const object = fc.dictionary(fc.string({ maxLength: 6 }), json, { maxKeys: 4 });
const params = fc.option(fc.oneof(object, fc.array(json, { maxLength: 3 })), { nil: undefined });

/** Every shape of JSON-RPC 2.0 message, as a plain value. */
const message: fc.Arbitrary<Record<string, unknown>> = fc
  .oneof(
    fc.record({ id, method, params }, { requiredKeys: ["id", "method"] }),
    fc.record({ method, params }, { requiredKeys: ["method"] }),
    fc.record({ id, result: json }),
    fc.record({
      id: fc.oneof(id, fc.constant(null)),
      error: fc.record(
        { code: fc.integer({ min: -32768, max: 32767 }), message: fc.string(), data: json },
        { requiredKeys: ["code", "message"] },
      ),
    }),
  )
  .map((m) => ({ jsonrpc: "2.0", ...m }));

function expectMatches(parsed: JsonRpcMessage, sent: Record<string, unknown>): void {
  expect(parsed.raw).toEqual(sent);
  if ("method" in sent) {
    expect(parsed.kind).toBe("id" in sent ? "request" : "notification");
    expect(parsed).toMatchObject({ method: sent.method });
    const p = sent.params;
    expect((parsed as { params: unknown }).params).toEqual(
      typeof p === "object" && p !== null && !Array.isArray(p) ? p : undefined,
    );
  } else {
    expect(parsed.kind).toBe("response");
    expect(parsed).toMatchObject({ id: sent.id });
  }
  if (parsed.kind === "request") expect(parsed.id).toBe(sent.id);
  if (parsed.kind === "response" && "result" in sent) expect(parsed.result).toEqual(sent.result);
  if (parsed.kind === "response" && "error" in sent)
    expect({ data: undefined, ...parsed.error }).toEqual({ data: undefined, ...(sent.error as object) });
}

describe("JSON-RPC properties", () => {
  it("(a) any message survives parsing unchanged", () => {
    fc.assert(
      fc.property(message, fc.constantFrom(0, 2, "\t"), (m, indent) => {
        // Compare against the JSON round trip of the value (it folds -0 into 0, as the wire does).
        const sent = JSON.parse(JSON.stringify(m)) as Record<string, unknown>;
        const parsed = parseJsonRpcText(JSON.stringify(m, null, indent), limits);
        expect(parsed.ok).toBe(true);
        if (!parsed.ok) return;
        expect(parsed.batch).toBe(false);
        expect(parsed.messages).toHaveLength(1);
        expectMatches(parsed.messages[0]!, sent);
      }),
      { numRuns: 500 },
    );
  });

  it("(a) any batch survives parsing unchanged, in order", () => {
    fc.assert(
      fc.property(fc.array(message, { minLength: 1, maxLength: 32 }), (batch) => {
        const sent = JSON.parse(JSON.stringify(batch)) as Record<string, unknown>[];
        const parsed = parseJsonRpcText(JSON.stringify(batch), limits);
        expect(parsed.ok).toBe(true);
        if (!parsed.ok) return;
        expect(parsed.batch).toBe(true);
        expect(parsed.messages).toHaveLength(sent.length);
        parsed.messages.forEach((m, i) => expectMatches(m, sent[i]!));
      }),
      { numRuns: 200 },
    );
  });
});

/** Reference depth from the parsed value: scalars 0, a container 1 + its deepest child. */
function referenceDepth(v: unknown): number {
  if (Array.isArray(v)) return 1 + Math.max(0, ...v.map(referenceDepth));
  if (typeof v === "object" && v !== null) return 1 + Math.max(0, ...Object.values(v).map(referenceDepth));
  return 0;
}

/** Strings full of brackets, quotes and backslashes: what a naive counter gets wrong. */
const trickyString = fc.string({
  unit: fc.constantFrom("[", "]", "{", "}", '"', "\\", "a", " ", "\\u005b", "😀", "\n"),
  maxLength: 10,
});
const { tree } = fc.letrec((tie) => ({
  tree: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.oneof(
      trickyString,
      fc.integer(),
      fc.boolean(),
      fc.constant(null),
      fc.double({ noNaN: true, noDefaultInfinity: true }),
    ),
    fc.array(tie("tree"), { maxLength: 4 }),
    fc.dictionary(trickyString, tie("tree"), { maxKeys: 3 }),
  ),
}));

describe("jsonDepth property", () => {
  it("(c) equals the depth of the value JSON.parse builds", () => {
    fc.assert(
      fc.property(fc.oneof(tree, fc.jsonValue()), fc.constantFrom(undefined, 1, "\t"), (v, indent) => {
        const text = JSON.stringify(v, null, indent);
        expect(jsonDepth(text)).toBe(referenceDepth(JSON.parse(text)));
      }),
      { numRuns: 1000 },
    );
  });

  it("(c) with a limit, reports over-limit exactly when the reference depth is over it", () => {
    fc.assert(
      fc.property(tree, fc.integer({ min: 0, max: 6 }), (v, limit) => {
        const text = JSON.stringify(v);
        expect(jsonDepth(text, limit) > limit).toBe(referenceDepth(v) > limit);
      }),
      { numRuns: 500 },
    );
  });
});
