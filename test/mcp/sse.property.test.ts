import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { SseParser, type SseEvent } from "../../ext-service/src/mcp/sse.js";

/**
 * Property (b): any list of SSE events, serialised with any mix of line endings and split into
 * arbitrary chunks (bytes, so also inside UTF-8 sequences; or UTF-16 strings, so also inside
 * surrogate pairs), parses to the same events as the whole text, to the events a model of the
 * spec predicts, and the concatenated `raw` of the events plus the dropped tail is the input.
 */

type Line = { text: string; apply: (ev: Model) => void };
interface Model {
  event?: string;
  id?: string;
  retry?: string;
  data?: string[];
  comment?: boolean;
}

/** Field values: any code point except CR and LF (astral characters included). */
const value = fc.string({ unit: "binary", maxLength: 12 }).map((s) => s.replace(/[\r\n]/g, "."));
const special = fc.constantFrom("", " ", "  x", ":", "😀", "\u0000", "é", "\u2028", "\ufeff", '{"a":[1]}');
const anyValue = fc.oneof(value, special);

const fieldLine: fc.Arbitrary<Line> = fc
  .record({
    name: fc.constantFrom("data", "data", "event", "id", "retry", "foo", "Data"),
    colon: fc.boolean(),
    space: fc.boolean(),
    value: anyValue,
  })
  .map(({ name, colon, space, value }) => {
    // Without a colon the whole line is the name and the value is empty.
    const after = colon ? (space ? " " : "") + value : "";
    const parsed = after.startsWith(" ") ? after.slice(1) : after;
    return {
      text: colon ? `${name}:${after}` : name,
      apply: (ev: Model) => {
        if (name === "data") (ev.data ??= []).push(parsed);
        else if (name === "event") ev.event = parsed;
        else if (name === "id" && !parsed.includes("\u0000")) ev.id = parsed;
        else if (name === "retry") ev.retry = parsed;
      },
    };
  });

const commentLine: fc.Arbitrary<Line> = anyValue.map((v) => ({
  text: `:${v}`,
  apply: (ev: Model) => {
    ev.comment = true;
  },
}));
const line = fc.oneof({ weight: 4, arbitrary: fieldLine }, { weight: 1, arbitrary: commentLine });
const ending = fc.constantFrom("\n", "\r\n", "\r");

const stream = fc
  .record({
    events: fc.array(fc.array(fc.tuple(line, ending), { maxLength: 5 }), { maxLength: 6 }),
    blankEndings: fc.array(ending, { minLength: 6, maxLength: 6 }),
    tail: fc.array(fc.tuple(line, ending), { maxLength: 2 }),
    cutTail: fc.option(
      anyValue.filter((v) => v.length > 0 && !v.startsWith("\ufeff")),
      { nil: undefined },
    ),
  })
  .map(({ events, blankEndings, tail, cutTail }) => {
    let text = "";
    let prevEnding = "";
    const expected: Omit<SseEvent, "raw">[] = [];
    const add = (t: string, e: string) => {
      // A lone CR followed by an empty line ending in LF would read as one CRLF: avoid writing that.
      if (t === "" && prevEnding === "\r" && e === "\n") e = "\r\n";
      text += t + e;
      prevEnding = e;
    };
    events.forEach((lines, i) => {
      const model: Model = {};
      for (const [l, e] of lines) {
        add(l.text, e);
        l.apply(model);
      }
      add("", blankEndings[i]!);
      expected.push({
        event: model.event,
        id: model.id,
        retry: model.retry,
        data: model.data?.join("\n"),
        comment: model.comment === true,
      });
    });
    // An unterminated last event: complete lines, then maybe a partial line.
    for (const [l, e] of tail) add(l.text, e);
    if (cutTail !== undefined && !(prevEnding === "\r" && cutTail.startsWith("\n"))) text += cutTail;
    return { text, expected };
  });

function parseChunks(chunks: (string | Uint8Array)[]): { events: SseEvent[]; tail: string } {
  const parser = new SseParser();
  const events = chunks.flatMap((c) => parser.push(c));
  events.push(...parser.push(new Uint8Array(0), true));
  return { events, tail: parser.end() };
}

/** Splits `length` at up to `cuts` sorted positions (duplicates give empty chunks). */
const splits = (length: number) =>
  fc.array(fc.integer({ min: 0, max: length }), { maxLength: 12 }).map((c) => c.sort((a, b) => a - b));

function cut<T extends { slice(a: number, b?: number): T }>(whole: T, at: number[]): T[] {
  const out: T[] = [];
  let prev = 0;
  for (const p of at) {
    out.push(whole.slice(prev, p));
    prev = p;
  }
  out.push(whole.slice(prev));
  return out;
}

const withoutRaw = (events: SseEvent[]) => events.map(({ raw: _raw, ...rest }) => rest);

describe("SSE properties", () => {
  it("the whole text parses to the events the spec predicts, and raw re-emits it exactly", () => {
    fc.assert(
      fc.property(stream, ({ text, expected }) => {
        const { events, tail } = parseChunks([text]);
        expect(withoutRaw(events)).toEqual(expected);
        expect(events.map((e) => e.raw).join("") + tail).toBe(text);
      }),
      { numRuns: 400 },
    );
  });

  it("any split into byte chunks (also inside UTF-8 sequences) gives the same events", () => {
    fc.assert(
      fc.property(
        stream.chain((s) => {
          const bytes = new TextEncoder().encode(s.text);
          return fc.tuple(fc.constant(s), fc.constant(bytes), splits(bytes.length));
        }),
        ([{ text }, bytes, at]) => {
          const whole = parseChunks([text]);
          const split = parseChunks(cut(bytes, at));
          expect(split.events).toEqual(whole.events);
          expect(split.events.map((e) => e.raw).join("") + split.tail).toBe(text);
        },
      ),
      { numRuns: 400 },
    );
  });

  it("any split into string chunks (also inside surrogate pairs) gives the same events", () => {
    fc.assert(
      fc.property(
        stream.chain((s) => fc.tuple(fc.constant(s), splits(s.text.length))),
        ([{ text }, at]) => {
          const whole = parseChunks([text]);
          const split = parseChunks(cut(text, at));
          expect(split.events).toEqual(whole.events);
          expect(split.events.map((e) => e.raw).join("") + split.tail).toBe(text);
        },
      ),
      { numRuns: 300 },
    );
  });
});
