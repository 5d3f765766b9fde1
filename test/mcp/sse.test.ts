import { describe, expect, it } from "vitest";
import { SseEventTooLarge, SseParser, formatSseEvent, type SseEvent } from "../../ext-service/src/mcp/sse.js";

const enc = new TextEncoder();

/** Feeds chunks, ends the stream, and returns the events plus the dropped tail. */
function run(chunks: (string | Uint8Array)[], max?: number): { events: SseEvent[]; tail: string } {
  const parser = new SseParser(max);
  const events = chunks.flatMap((c) => parser.push(c));
  events.push(...parser.push(new Uint8Array(0), true));
  return { events, tail: parser.end() };
}

const only = (text: string) => {
  const { events, tail } = run([text]);
  expect(tail).toBe("");
  expect(events).toHaveLength(1);
  return events[0]!;
};

describe("SSE parsing", () => {
  it("reads one event with every field", () => {
    const raw = 'event: message\nid: 7\nretry: 1000\ndata: {"a":1}\n\n';
    expect(only(raw)).toEqual({
      raw,
      event: "message",
      id: "7",
      retry: "1000",
      data: '{"a":1}',
      comment: false,
    });
  });

  it("joins data lines with LF", () => {
    expect(only("data: a\ndata: b\ndata:\ndata: c\n\n").data).toBe("a\nb\n\nc");
  });

  it("accepts LF, CRLF and CR line endings, mixed", () => {
    for (const raw of [
      "data: x\r\n\r\n",
      "data: x\r\r",
      "data: x\ndata: y\r\ndata: z\r\n\n",
      "data: x\r\ndata: y\r\r\n",
    ]) {
      const ev = only(raw);
      expect(ev.raw).toBe(raw);
      expect(ev.data?.split("\n")[0]).toBe("x");
    }
  });

  it("strips exactly one space after the colon", () => {
    expect(only("data:x\n\n").data).toBe("x");
    expect(only("data: x\n\n").data).toBe("x");
    expect(only("data:  x\n\n").data).toBe(" x");
    expect(only("data:\tx\n\n").data).toBe("\tx");
  });

  it("reads a field without a colon as an empty value", () => {
    expect(only("data\n\n").data).toBe("");
    expect(only("event\ndata: x\n\n").event).toBe("");
  });

  it("keeps comments and unknown fields in raw but not in the event, and says a comment was there", () => {
    const raw = ": keep-alive\nfoo: bar\ndata: x\n\n";
    expect(only(raw)).toEqual({
      raw,
      event: undefined,
      id: undefined,
      retry: undefined,
      data: "x",
      comment: true,
    });
    expect(only(": ping\n\n")).toEqual({
      raw: ": ping\n\n",
      event: undefined,
      id: undefined,
      retry: undefined,
      data: undefined,
      comment: true,
    });
    expect(only("foo: bar\n\n").comment).toBe(false);
  });

  it("lets the last event/id win and ignores an id containing NUL", () => {
    const ev = only("event: a\nevent: b\nid: 1\nid: 2\u0000x\ndata: d\n\n");
    expect(ev.event).toBe("b");
    expect(ev.id).toBe("1");
  });

  it("resets fields between events", () => {
    const { events } = run(["event: a\nid: 1\ndata: x\n\ndata: y\n\n"]);
    expect(events.map((e) => [e.event, e.id, e.data])).toEqual([
      ["a", "1", "x"],
      [undefined, undefined, "y"],
    ]);
  });

  it("strips one leading BOM, from bytes and from strings alike", () => {
    const text = "\ufeff\ufeffdata: x\n\n";
    for (const chunk of [text, enc.encode(text)]) {
      const { events } = run([chunk]);
      // The first BOM is the stream's; the second is part of the first field name, which is then unknown.
      expect(events).toHaveLength(1);
      expect(events[0]!.raw).toBe("\ufeffdata: x\n\n");
      expect(events[0]!.data).toBeUndefined();
    }
    const split = run([enc.encode("\ufeff").subarray(0, 2), enc.encode("\ufeff").subarray(2), "data: y\n\n"]);
    expect(split.events[0]!.data).toBe("y");
  });

  it("reassembles events across chunk boundaries anywhere, including inside UTF-8 and CRLF", () => {
    const text = "event: m\r\ndata: héllo 😀\r\n\r\ndata: two\r\n\r\n";
    const bytes = enc.encode(text);
    const whole = run([bytes]).events;
    expect(whole.map((e) => e.data)).toEqual(["héllo 😀", "two"]);
    for (let a = 0; a <= bytes.length; a++) {
      for (let b = a; b <= bytes.length; b++) {
        const { events, tail } = run([bytes.subarray(0, a), bytes.subarray(a, b), bytes.subarray(b)]);
        expect(events).toEqual(whole);
        expect(tail).toBe("");
      }
    }
  });

  it("waits for a possible LF after a CR at the end of a chunk", () => {
    const parser = new SseParser();
    expect(parser.push("data: x\r\r")).toEqual([]);
    expect(parser.push("\n")).toEqual([
      { raw: "data: x\r\r\n", event: undefined, id: undefined, retry: undefined, data: "x", comment: false },
    ]);
    // An empty chunk changes nothing.
    expect(parser.push("data: y\r")).toEqual([]);
    expect(parser.push("")).toEqual([]);
    expect(parser.push("\n\n").map((e) => e.raw)).toEqual(["data: y\r\n\n"]);
  });

  it("completes an event ending in a lone CR when the stream ends", () => {
    const parser = new SseParser();
    expect(parser.push("data: x\r\r")).toEqual([]);
    expect(parser.push(new Uint8Array(0), true).map((e) => [e.raw, e.data])).toEqual([["data: x\r\r", "x"]]);
    expect(parser.end()).toBe("");
  });

  it("returns an event cut mid-way as the tail, never as an event", () => {
    expect(run(["data: complete\n\n", "data: cut"])).toMatchObject({
      tail: "data: cut",
      events: [{ data: "complete" }],
    });
    expect(run(["data: cut\n"]).tail).toBe("data: cut\n");
    expect(run(["data: cut\r"]).tail).toBe("data: cut\r");
    // A cut inside a UTF-8 sequence ends as U+FFFD in the tail.
    expect(run([enc.encode("data: é").subarray(0, 7)]).tail).toBe("data: \ufffd");
  });

  it("is reusable after end()", () => {
    const parser = new SseParser();
    parser.push("event: a\ndata: partial");
    expect(parser.end()).toBe("event: a\ndata: partial");
    expect(parser.push("data: b\n\n")).toEqual([
      { raw: "data: b\n\n", event: undefined, id: undefined, retry: undefined, data: "b", comment: false },
    ]);
  });

  it("refuses an event larger than the limit, counted while it is still incomplete", () => {
    const parser = new SseParser(16);
    expect(parser.push("data: 01234567\n\n")).toHaveLength(1);
    expect(parser.bufferedChars).toBe(0);
    parser.push("data: 01234");
    expect(parser.bufferedChars).toBe(11);
    parser.push("56789");
    expect(parser.bufferedChars).toBe(16);
    expect(() => parser.push("x")).toThrow(SseEventTooLarge);
    // A complete event that arrives in one chunk is held to the same limit.
    expect(new SseParser(16).push("data: 01234567\n\n")).toHaveLength(1);
    expect(() => new SseParser(16).push("data: 012345678\n\n")).toThrow(SseEventTooLarge);
  });
});

describe("formatSseEvent", () => {
  it("writes fields in order and splits data on any line ending", () => {
    expect(formatSseEvent({ event: "message", id: "1", retry: "5", data: "a\nb\r\nc\rd" })).toBe(
      "event: message\nid: 1\nretry: 5\ndata: a\ndata: b\ndata: c\ndata: d\n\n",
    );
    expect(formatSseEvent({})).toBe("\n");
  });

  it("round-trips through the parser", () => {
    const ev = { event: "message", id: "x", data: '{"jsonrpc":"2.0"}\n second' };
    expect(only(formatSseEvent(ev))).toMatchObject({ ...ev, retry: undefined });
  });
});
