import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  hasDuplicateKeys,
  jsonTextMemberCount,
  parsedMemberCount,
} from "../../ext-service/src/mcp/duplicate-keys.js";

/**
 * Duplicate object keys (security review F7): the gateway refuses JSON whose readers could
 * disagree. No JSON.stringify output has a duplicate; adding one anywhere, however it is written
 * (escaped, spaced, nested, beside strings full of colons, quotes and backslashes), is found.
 */

const tricky = fc.oneof(
  fc.string(),
  fc.constantFrom(":", '":"', "\\", '\\"', '\\\\":', "a:b", "\u2028", "😀", '{"k":1}'),
);
const json = fc.letrec<{ value: unknown }>((tie) => ({
  value: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    tricky,
    fc.integer(),
    fc.boolean(),
    fc.constant(null),
    fc.array(tie("value"), { maxLength: 4 }),
    fc.dictionary(tricky, tie("value"), { maxKeys: 4 }),
  ),
})).value;

/** Writes `value` with optional whitespace, and, when asked, one object with its first key twice. */
function write(value: unknown, space: string, duplicate: { left: boolean }): string {
  if (Array.isArray(value)) return `[${value.map((v) => write(v, space, duplicate)).join(`,${space}`)}]`;
  if (typeof value === "object" && value !== null) {
    const entries = Object.entries(value).map(
      ([k, v]) => `${JSON.stringify(k)}${space}:${space}${write(v, space, duplicate)}`,
    );
    if (duplicate.left && entries.length > 0) {
      duplicate.left = false;
      const [k] = Object.keys(value);
      // The same name, written with every character escaped: a parser decodes it to the same key.
      const escaped = k!
        .split("")
        .map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`)
        .join("");
      entries.unshift(`"${k!.length > 0 ? escaped : ""}":${space}"first"`);
    }
    return `{${space}${entries.join(`,${space}`)}}`;
  }
  return JSON.stringify(value);
}

describe("duplicate JSON keys", () => {
  it("counts one member per name/value pair written, and finds none in what JSON.stringify writes", () => {
    fc.assert(
      fc.property(json, fc.constantFrom("", " ", "\n\t"), (value, space) => {
        const text = write(value, space, { left: false });
        const parsed = JSON.parse(text) as unknown;
        expect(jsonTextMemberCount(text)).toBe(parsedMemberCount(parsed));
        expect(hasDuplicateKeys(text, parsed)).toBe(false);
      }),
      { numRuns: 300 },
    );
  });

  it("finds a key written twice in any object, escaped or not", () => {
    fc.assert(
      fc.property(json, fc.constantFrom("", " ", "\n\t"), (value, space) => {
        const duplicate = { left: true };
        const text = write(value, space, duplicate);
        fc.pre(!duplicate.left); // the value had a non-empty object
        expect(hasDuplicateKeys(text, JSON.parse(text))).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it("reads colons and quotes inside strings as text", () => {
    const text = '{"a:b":"c\\":d","e":["f:g",{"h":"\\\\"}],"__proto__":1}';
    expect(jsonTextMemberCount(text)).toBe(4);
    expect(hasDuplicateKeys(text, JSON.parse(text))).toBe(false);
    const twice = '{"__proto__":1,"__proto__":2}';
    expect(hasDuplicateKeys(twice, JSON.parse(twice))).toBe(true);
  });

  it("stays linear on many strings with no colon after them", () => {
    // A colon search restarted at every string would be quadratic here.
    const text = `[${'"x",'.repeat(200_000)}{"k":1}]`;
    const started = performance.now();
    expect(jsonTextMemberCount(text)).toBe(1);
    expect(performance.now() - started).toBeLessThan(500);
  });
});
