import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { arrayItemSources } from "../../ext-service/src/mcp/json-source.js";

const PATH = ["result", "tools"] as const;

/** JSON text of `value` in one of several layouts, with odd strings and escapes kept as sent. */
function layout(value: unknown, style: number): string {
  if (style === 0) return JSON.stringify(value);
  if (style === 1) return JSON.stringify(value, null, 2);
  return JSON.stringify(value, null, "\t").replace(/\n/g, "\r\n ");
}

const json = fc.jsonValue({ maxDepth: 4 });
const awkward = fc.oneof(
  json,
  fc.string({ unit: "binary" }),
  fc.constantFrom('a"b', "back\\slash\\", '\\"', "]}", "[{", ',"tools":[1]'),
);

describe("arrayItemSources", () => {
  it("gives, for each item, the text JSON.parse read it from", () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(json, awkward, fc.dictionary(fc.string(), awkward)), { maxLength: 8 }),
        fc.dictionary(fc.string(), awkward, { maxKeys: 3 }),
        fc.integer({ min: 0, max: 2 }),
        (tools, extra, style) => {
          const text = layout({ jsonrpc: "2.0", id: 1, ...extra, result: { ...extra, tools } }, style);
          const parsed = JSON.parse(text) as { result: { tools: unknown[] } };
          const sources = arrayItemSources(text, PATH);
          expect(sources).toBeDefined();
          expect(sources!.map((s) => JSON.parse(s) as unknown)).toEqual(parsed.result.tools);
        },
      ),
    );
  });

  it("follows JSON.parse on duplicate and escaped member names", () => {
    const text =
      '{"result":{"tools":[1,2]},"id":1,"r\\u0065sult":{"tools":[{"a":"x"}],"tool\\u0073":[ 3 , "]" ]}}';
    expect(JSON.parse(text)).toEqual({ result: { tools: [3, "]"] }, id: 1 });
    expect(arrayItemSources(text, PATH)).toEqual(["3", '"]"']);
    // The last duplicate is not an array: there are no items, whatever came before.
    expect(arrayItemSources('{"result":{"tools":[1],"tools":{"0":1}}}', PATH)).toBeUndefined();
    expect(arrayItemSources('{"result":{"tools":[1]},"result":null}', PATH)).toBeUndefined();
  });

  it("finds nothing where the path leads nowhere", () => {
    expect(arrayItemSources("[]", PATH)).toBeUndefined();
    expect(arrayItemSources('{"result":{}}', PATH)).toBeUndefined();
    expect(arrayItemSources('{"result":[{"tools":[1]}]}', PATH)).toBeUndefined();
    expect(arrayItemSources('{"error":{"tools":[1]}}', PATH)).toBeUndefined();
    expect(arrayItemSources(' {"result":{"tools":[]}} ', PATH)).toEqual([]);
  });

  it("gives up on text that is not JSON rather than guess", () => {
    for (const text of [
      '{"result":{"tools":[1,2}}',
      '{"result":{"tools":[1]}',
      '{"result":{"tools":[1]}} x',
      '{"result" {"tools":[1]}}',
    ])
      expect(arrayItemSources(text, PATH)).toBeUndefined();
  });
});
