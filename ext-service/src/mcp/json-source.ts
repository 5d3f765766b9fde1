/**
 * Source text of values inside a JSON text that JSON.parse already accepted. The policy core
 * caches verdicts by the exact text a value was parsed from: JSON.parse is a function of its
 * input, so equal text means an equal value, which no re-serialisation guarantees (1e400 and
 * null both stringify to "null").
 *
 * Only meant for valid JSON: anything unexpected returns undefined, and callers then work without
 * source text.
 */

const QUOTE = 34;
const BACKSLASH = 92;
const COMMA = 44;
const COLON = 58;
const OPEN_BRACE = 123;
const CLOSE_BRACE = 125;
const OPEN_BRACKET = 91;
const CLOSE_BRACKET = 93;

function skipSpace(text: string, i: number): number {
  for (;;) {
    const c = text.charCodeAt(i);
    if (c === 32 || c === 10 || c === 13 || c === 9) i++;
    else return i;
  }
}

/** `text[i]` is the opening quote; returns the index after the closing one, or -1. */
function skipString(text: string, i: number): number {
  let from = i + 1;
  for (;;) {
    const q = text.indexOf('"', from);
    if (q < 0) return -1;
    let b = q - 1;
    while (text.charCodeAt(b) === BACKSLASH) b--;
    // An even run of backslashes escapes itself, not the quote.
    if ((q - 1 - b) % 2 === 0) return q + 1;
    from = q + 1;
  }
}

/** Returns the index after the value starting at `text[i]`, or -1. */
function skipValue(text: string, i: number): number {
  const c = text.charCodeAt(i);
  if (c === QUOTE) return skipString(text, i);
  if (c === OPEN_BRACE || c === OPEN_BRACKET) {
    let depth = 0;
    for (let j = i; j < text.length; j++) {
      const d = text.charCodeAt(j);
      if (d === QUOTE) {
        const end = skipString(text, j);
        if (end < 0) return -1;
        j = end - 1;
      } else if (d === OPEN_BRACE || d === OPEN_BRACKET) depth++;
      else if (d === CLOSE_BRACE || d === CLOSE_BRACKET) {
        if (--depth === 0) return j + 1;
      }
    }
    return -1;
  }
  // number, true, false, null
  let j = i;
  for (; j < text.length; j++) {
    const d = text.charCodeAt(j);
    if (
      d === COMMA ||
      d === CLOSE_BRACE ||
      d === CLOSE_BRACKET ||
      d === 32 ||
      d === 10 ||
      d === 13 ||
      d === 9
    )
      break;
  }
  return j > i ? j : -1;
}

interface Found {
  /** Index after the value. */
  end: number;
  /** The items, when the value is the array the path leads to. */
  items: string[] | undefined;
}

/**
 * One pass over the value at `text[i]`: descends along `path` (object members, the last of
 * duplicates winning as in JSON.parse) and collects the source text of each item of the array
 * at its end. Everything else is skipped without being looked into twice.
 */
function walk(text: string, i: number, path: readonly string[], depth: number): Found | undefined {
  const c = text.charCodeAt(i);
  if (depth === path.length) {
    if (c !== OPEN_BRACKET) {
      const end = skipValue(text, i);
      return end < 0 ? undefined : { end, items: undefined };
    }
    const items: string[] = [];
    i = skipSpace(text, i + 1);
    if (text.charCodeAt(i) === CLOSE_BRACKET) return { end: i + 1, items };
    for (;;) {
      const itemEnd = skipValue(text, i);
      if (itemEnd < 0) return undefined;
      items.push(text.slice(i, itemEnd));
      i = skipSpace(text, itemEnd);
      const d = text.charCodeAt(i);
      if (d === CLOSE_BRACKET) return { end: i + 1, items };
      if (d !== COMMA) return undefined;
      i = skipSpace(text, i + 1);
    }
  }
  if (c !== OPEN_BRACE) {
    const end = skipValue(text, i);
    return end < 0 ? undefined : { end, items: undefined };
  }
  let items: string[] | undefined;
  i = skipSpace(text, i + 1);
  if (text.charCodeAt(i) === CLOSE_BRACE) return { end: i + 1, items };
  for (;;) {
    if (text.charCodeAt(i) !== QUOTE) return undefined;
    const keyEnd = skipString(text, i);
    if (keyEnd < 0) return undefined;
    const rawKey = text.slice(i + 1, keyEnd - 1);
    const key = rawKey.includes("\\") ? (JSON.parse(text.slice(i, keyEnd)) as string) : rawKey;
    i = skipSpace(text, keyEnd);
    if (text.charCodeAt(i) !== COLON) return undefined;
    const valueStart = skipSpace(text, i + 1);
    let valueEnd: number;
    if (key === path[depth]) {
      const inner = walk(text, valueStart, path, depth + 1);
      if (!inner) return undefined;
      items = inner.items;
      valueEnd = inner.end;
    } else {
      valueEnd = skipValue(text, valueStart);
      if (valueEnd < 0) return undefined;
    }
    i = skipSpace(text, valueEnd);
    const d = text.charCodeAt(i);
    if (d === CLOSE_BRACE) return { end: i + 1, items };
    if (d !== COMMA) return undefined;
    i = skipSpace(text, i + 1);
  }
}

/**
 * The source text of each item of the array at `path` (object members, from the top), e.g.
 * `["result", "tools"]` in a JSON-RPC response; undefined when there is no such array.
 */
export function arrayItemSources(text: string, path: readonly string[]): string[] | undefined {
  const found = walk(text, skipSpace(text, 0), path, 0);
  if (!found || skipSpace(text, found.end) !== text.length) return undefined;
  return found.items;
}
