import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  hasDuplicateKeys,
  hasDuplicateKeysAfter,
  jsonTextMemberCount,
  jsonTextShape,
} from "../../ext-service/src/mcp/duplicate-keys.js";

/**
 * The request path's depth and duplicate-key checks share one pass over the text
 * (jsonTextShape). The oracle is the two scans it replaced: the char-by-char depth scan (copied
 * here as it was) and jsonTextMemberCount, on any text, valid JSON or not.
 */

/** The depth scan parseJsonRpcText ran before jsonTextShape, unchanged. */
function oldJsonDepth(text: string, stopAbove = Infinity): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92 /* \ */) i++;
      else if (c === 34 /* " */) inString = false;
      continue;
    }
    if (c === 34) inString = true;
    else if (c === 123 /* { */ || c === 91 /* [ */) {
      depth++;
      if (depth > max) {
        max = depth;
        if (max > stopAbove) return max;
      }
    } else if (c === 125 /* } */ || c === 93 /* ] */) depth--;
  }
  return max;
}

/** Text made of what the scans look at: brackets, quotes, backslashes, colons, and filler. */
const structural = fc
  .array(fc.constantFrom("{", "}", "[", "]", '"', "\\", ":", ",", "a", " ", "\\\\", '\\"', "😀", "\u2028"), {
    maxLength: 60,
  })
  .map((parts) => parts.join(""));

/** Written JSON, sometimes with a key twice, sometimes cut short or with a stray byte. */
const jsonText = fc
  .tuple(
    fc.jsonValue({ maxDepth: 6 }),
    fc.constantFrom(undefined, 1, "\t"),
    fc.boolean(),
    fc.nat(),
    fc.constantFrom("", '"', "\\", "{", ":"),
  )
  .map(([value, indent, duplicate, cut, stray]) => {
    let text = JSON.stringify(value, null, indent) ?? "null";
    if (duplicate) text = text.replace(/\{(\s*)("(?:[^"\\]|\\.)*")(\s*):/, "{$1$2$3:0,$2:");
    const at = cut % (text.length + 1);
    return stray === "" ? text : text.slice(0, at) + stray + text.slice(at);
  });

const anyText = fc.oneof(structural, jsonText, fc.string(), fc.string({ unit: "binary" }));
const limit = fc.oneof(fc.constant(Infinity), fc.integer({ min: 0, max: 8 }));

describe("jsonTextShape against the two scans it replaced", () => {
  it("gives the old depth for any text and limit", () => {
    fc.assert(
      fc.property(anyText, limit, (text, stop) => {
        expect(jsonTextShape(text, stop).depth).toBe(oldJsonDepth(text, stop));
      }),
      { numRuns: 3000 },
    );
  });

  it("gives jsonTextMemberCount's count whenever the depth is within the limit", () => {
    fc.assert(
      fc.property(anyText, limit, (text, stop) => {
        const shape = jsonTextShape(text, stop);
        if (shape.depth <= stop) expect(shape.members).toBe(jsonTextMemberCount(text));
      }),
      { numRuns: 3000 },
    );
  });

  it("finds duplicate keys exactly when hasDuplicateKeys does, on text JSON.parse accepts", () => {
    fc.assert(
      fc.property(jsonText, (text) => {
        let value: unknown;
        try {
          value = JSON.parse(text);
        } catch {
          return;
        }
        expect(hasDuplicateKeysAfter(jsonTextShape(text).members, value)).toBe(hasDuplicateKeys(text, value));
      }),
      { numRuns: 3000 },
    );
  });

  it("reads adversarial megabyte texts in linear time, agreeing with the old scans", () => {
    const cases = [
      // every quote after a long run of backslashes (each run read back once)
      '["' + ("\\".repeat(999) + '"').repeat(1000) + '"]',
      '["' + ("\\".repeat(1000) + '"').repeat(1000) + "]",
      // many short strings, each with an escaped quote
      "[" + '"\\"",'.repeat(200_000) + "1]",
      // deep nesting and many members
      "[".repeat(500_000) + "]".repeat(500_000),
      "{" + '"a":1,'.repeat(150_000) + '"b":2}',
      // an unterminated string full of colons and brackets
      '{"a":"' + ":[{".repeat(300_000),
    ];
    for (const text of cases) {
      const started = performance.now();
      const shape = jsonTextShape(text);
      const ms = performance.now() - started;
      expect(shape.depth).toBe(oldJsonDepth(text));
      expect(shape.members).toBe(jsonTextMemberCount(text));
      // A quadratic scan of a megabyte takes minutes; a linear one milliseconds, even under load.
      expect(ms).toBeLessThan(5_000);
    }
  });
});
