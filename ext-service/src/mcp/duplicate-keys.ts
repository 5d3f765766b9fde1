/**
 * Duplicate object keys in a JSON text (security review F7). RFC 8259 only says names SHOULD be
 * unique, and parsers disagree on duplicates: JSON.parse keeps the last value, others the first
 * or refuse. When the gateway forwards bytes it has inspected, a reader that picks another value
 * than JSON.parse did would read text no check saw, so messages with duplicate keys are refused.
 *
 * The test needs no second parser: every member in the text is one `:` outside strings, and
 * JSON.parse keeps one own property per distinct name, so the text has a duplicate exactly when it
 * has more members than the parsed value. Both counts are linear; strings are skipped natively.
 */

const BACKSLASH = 92;

/**
 * Members (name/value pairs) written in a JSON text: the `:` outside strings. Only meaningful
 * for text JSON.parse accepted.
 */
export function jsonTextMemberCount(text: string): number {
  let count = 0;
  let colon = text.indexOf(":");
  let from = 0;
  while (colon !== -1) {
    const quote = text.indexOf('"', from);
    const outsideEnd = quote === -1 ? text.length : quote;
    while (colon !== -1 && colon < outsideEnd) {
      count++;
      colon = text.indexOf(":", colon + 1);
    }
    if (quote === -1) break;
    from = afterString(text, quote);
    if (from === -1) break;
    // A colon inside the string just skipped is not a member.
    if (colon !== -1 && colon < from) colon = text.indexOf(":", from);
  }
  return count;
}

/** Nesting depth and members of a JSON text, from one pass (jsonTextShape). */
export interface JsonTextShape {
  /** Deepest nesting of `{`/`[` outside strings; once it passes the scan's limit, that depth. */
  depth: number;
  /** Members (`:` outside strings), as jsonTextMemberCount; partial when the depth passed the limit. */
  members: number;
}

const LEFT_BRACE = 123;
const LEFT_BRACKET = 91;
const RIGHT_BRACE = 125;
const RIGHT_BRACKET = 93;
const QUOTE = 34;
const COLON = 58;

/**
 * The request path's two checks of a body's text, in one linear pass before JSON.parse: the
 * nesting depth (refused over a limit before the parser builds anything) and the member count
 * for the duplicate-key test (hasDuplicateKeysAfter). Strings are skipped natively (indexOf);
 * brackets and colons inside them do not count. Stops as soon as the depth passes `stopAbove`.
 * For any text, `depth` is what the earlier char-by-char depth scan returned and, when the depth
 * did not pass the limit, `members` is jsonTextMemberCount(text).
 */
export function jsonTextShape(text: string, stopAbove = Infinity): JsonTextShape {
  let depth = 0;
  let max = 0;
  let members = 0;
  const length = text.length;
  for (let i = 0; i < length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      const end = afterString(text, i);
      // An unterminated string runs to the end of the text.
      if (end === -1) break;
      i = end - 1;
    } else if (c === COLON) members++;
    else if (c === LEFT_BRACE || c === LEFT_BRACKET) {
      depth++;
      if (depth > max) {
        max = depth;
        if (max > stopAbove) return { depth: max, members };
      }
    } else if (c === RIGHT_BRACE || c === RIGHT_BRACKET) depth--;
  }
  return { depth: max, members };
}

/** `text[open]` is an opening quote; the index after its closing quote, or -1. */
function afterString(text: string, open: number): number {
  let from = open + 1;
  for (;;) {
    const q = text.indexOf('"', from);
    if (q === -1) return -1;
    let b = q - 1;
    while (text.charCodeAt(b) === BACKSLASH) b--;
    // An even run of backslashes escapes itself, not the quote.
    if ((q - 1 - b) % 2 === 0) return q + 1;
    from = q + 1;
  }
}

/** Own properties of every object in a parsed JSON value, nested ones included. */
export function parsedMemberCount(value: unknown): number {
  let count = 0;
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v !== "object" || v === null) continue;
    if (Array.isArray(v)) {
      for (const item of v) if (typeof item === "object" && item !== null) stack.push(item);
      continue;
    }
    const record = v as Record<string, unknown>;
    for (const key of Object.keys(record)) {
      count++;
      const item = record[key];
      if (typeof item === "object" && item !== null) stack.push(item);
    }
  }
  return count;
}

/**
 * True when a text with `members` members (jsonTextShape) that JSON.parse read as `value` names
 * some key twice in one object.
 */
export function hasDuplicateKeysAfter(members: number, value: unknown): boolean {
  if (typeof value !== "object" || value === null) return false;
  return members !== parsedMemberCount(value);
}

/** True when `text` (which JSON.parse read as `value`) names some key twice in one object. */
export function hasDuplicateKeys(text: string, value: unknown): boolean {
  if (typeof value !== "object" || value === null) return false;
  return jsonTextMemberCount(text) !== parsedMemberCount(value);
}
