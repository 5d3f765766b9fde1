import { WebStandardStreamableHTTPServerTransport, type JSONRPCMessage } from "@modelcontextprotocol/server";
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  BrokerReplay,
  writeSharingSerialisation,
  type SessionEvents,
} from "../../ext-service/src/broker/replay.js";
import { Metrics } from "../../ext-service/src/telemetry/metrics.js";

/**
 * The broker's replay buffers (broker/replay.ts): bounded per session by events, bytes and age
 * and across sessions by total bytes, always a contiguous run of the newest events, so a replay
 * is complete or the id is unknown.
 */
const note = (n: number, pad = 0): JSONRPCMessage => ({
  jsonrpc: "2.0",
  method: "notifications/message",
  params: { level: "info", data: `${n}${"x".repeat(pad)}` },
});
const limits = { maxEvents: 100, maxBytes: 100_000, ttlMs: 60_000 };

async function replayed(events: SessionEvents, after: string): Promise<unknown[]> {
  const out: unknown[] = [];
  await events.replayEventsAfter(after, {
    send: (_id, message) => {
      out.push((message as unknown as { params: { data: string } }).params.data.replace(/x+$/, ""));
      return Promise.resolve();
    },
  });
  return out;
}

afterEach(() => {
  vi.useRealTimers();
});

describe("broker replay buffers", () => {
  it("replays what followed on the same stream only, skipping priming events", async () => {
    const events = new BrokerReplay(1_000_000, new Metrics(false)).session(limits);
    const a0 = await events.storeEvent("a", {} as JSONRPCMessage);
    await events.storeEvent("a", note(1));
    await events.storeEvent("b", note(2));
    await events.storeEvent("a", note(3));
    expect(await events.getStreamIdForEventId(a0)).toBe("a");
    expect(await replayed(events, a0)).toEqual(["1", "3"]);
    expect(events.holds("nope.1")).toBe(false);
    expect(events.holds(`${a0.split(".")[0]}.99`)).toBe(false);
  });

  it("ids of another buffer (another session, or the same one restored) are unknown", async () => {
    const replay = new BrokerReplay(1_000_000, new Metrics(false));
    const one = replay.session(limits);
    const two = replay.session(limits);
    const id = await one.storeEvent("a", note(1));
    await two.storeEvent("a", note(1));
    expect(one.holds(id)).toBe(true);
    expect(two.holds(id)).toBe(false);
  });

  it("keeps at most maxEvents and maxBytes: the oldest go, so their ids are unknown", async () => {
    const events = new BrokerReplay(1_000_000, new Metrics(false)).session({ ...limits, maxEvents: 3 });
    const ids: string[] = [];
    for (let n = 0; n < 5; n++) ids.push(await events.storeEvent("a", note(n)));
    expect(ids.map((id) => events.holds(id))).toEqual([false, false, true, true, true]);
    expect(await replayed(events, ids[2]!)).toEqual(["3", "4"]);

    const small = new BrokerReplay(1_000_000, new Metrics(false)).session({ ...limits, maxBytes: 250 });
    const sized: string[] = [];
    for (let n = 0; n < 4; n++) sized.push(await small.storeEvent("a", note(n, 20)));
    // Each event is 107 bytes of JSON: two fit.
    expect(sized.map((id) => small.holds(id))).toEqual([false, false, true, true]);
  });

  it("an event too large to keep drops everything before it: no replay skips it", async () => {
    const events = new BrokerReplay(1_000_000, new Metrics(false)).session({ ...limits, maxBytes: 200 });
    const before = await events.storeEvent("a", note(1));
    const big = await events.storeEvent("a", note(2, 500));
    const after = await events.storeEvent("a", note(3));
    expect([events.holds(before), events.holds(big), events.holds(after)]).toEqual([false, false, true]);
  });

  it("events expire after ttl", async () => {
    vi.useFakeTimers({ now: 1_000_000 });
    const events = new BrokerReplay(1_000_000, new Metrics(false)).session({ ...limits, ttlMs: 1_000 });
    const old = await events.storeEvent("a", note(1));
    vi.setSystemTime(1_000_600);
    const newer = await events.storeEvent("a", note(2));
    vi.setSystemTime(1_001_200);
    expect([events.holds(old), events.holds(newer)]).toEqual([false, true]);
    vi.setSystemTime(1_001_700);
    expect(events.holds(newer)).toBe(false);
  });

  it("the process-wide bound evicts the oldest events of any session", async () => {
    const replay = new BrokerReplay(400, new Metrics(false));
    const one = replay.session(limits);
    const two = replay.session(limits);
    const first = await one.storeEvent("a", note(1, 40));
    const second = await one.storeEvent("a", note(2, 40));
    const third = await two.storeEvent("a", note(3, 40));
    const fourth = await two.storeEvent("a", note(4, 40));
    // Four events of 127 bytes against 400: the oldest (session one's first) went.
    expect([one.holds(first), one.holds(second), two.holds(third), two.holds(fourth)]).toEqual([
      false,
      true,
      true,
      true,
    ]);
    one.clear();
    expect(one.holds(second)).toBe(false);
    const fifth = await two.storeEvent("a", note(5, 40));
    // Session one's events no longer count: session two keeps its three.
    expect([two.holds(third), two.holds(fourth), two.holds(fifth)]).toEqual([true, true, true]);
  });
});

describe("the session transport's SSE events, written from the replay buffer's JSON", () => {
  type Writer = (
    controller: { enqueue(chunk: Uint8Array): void },
    encoder: { encode(text: string): Uint8Array },
    message: JSONRPCMessage,
    eventId?: string,
  ) => boolean;
  const written = (write: Writer, message: JSONRPCMessage, eventId?: string): string => {
    const chunks: Uint8Array[] = [];
    expect(write({ enqueue: (chunk) => chunks.push(chunk) }, new TextEncoder(), message, eventId)).toBe(true);
    return Buffer.concat(chunks).toString("utf8");
  };

  it("writes the SDK's bytes with one serialisation per stored event, not two", async () => {
    const events = new BrokerReplay(1_000_000, new Metrics(false)).session(limits);
    const transport = new WebStandardStreamableHTTPServerTransport({
      sessionIdGenerator: () => "s",
      eventStore: events,
    });
    const sdk = (transport as unknown as { writeSSEEvent: Writer }).writeSSEEvent.bind(transport);
    writeSharingSerialisation(transport, events);
    const shared = (transport as unknown as { writeSSEEvent: Writer }).writeSSEEvent;
    const result: JSONRPCMessage = {
      jsonrpc: "2.0",
      id: 7,
      result: { content: [{ type: "text", text: 'caf\u00e9 \u2603 "quoted"\n' }] },
    };
    const stringify = vi.spyOn(JSON, "stringify");
    try {
      const id = await events.storeEvent("a", result);
      expect(written(shared, result, id)).toBe(written(sdk, result, id));
      // storeEvent's one, sdk's own, and none for the shared writer.
      expect(stringify).toHaveBeenCalledTimes(2);
    } finally {
      stringify.mockRestore();
    }
    // A message written again (a replay) or never stored: serialised then, the same bytes.
    expect(written(shared, result, "e.1")).toBe(written(sdk, result, "e.1"));
    expect(written(shared, note(3))).toBe(written(sdk, note(3)));
  });
});
