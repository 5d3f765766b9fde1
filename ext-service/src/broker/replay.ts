import { AsyncLocalStorage } from "node:async_hooks";
import { randomBytes } from "node:crypto";
import type { EventId, EventStore, JSONRPCMessage, StreamId } from "@modelcontextprotocol/server";
import { LRUCache } from "lru-cache";
import { Counter } from "prom-client";
import type { Metrics } from "../telemetry/metrics.js";

/** Bounds of one session's replay buffer. */
export interface SessionReplayLimits {
  /** Events kept per session (the oldest go first). */
  maxEvents: number;
  /** Bytes (JSON size) kept per session. */
  maxBytes: number;
  /** How long an event is kept, ms. */
  ttlMs: number;
}

interface Held {
  streamId: StreamId;
  message: JSONRPCMessage;
  bytes: number;
  at: number;
}

/** Where the process-wide bound finds an event: its session's buffer and its place there. */
interface Ref {
  events: SessionEvents;
  seq: number;
  bytes: number;
}

/** The stream the SDK transport answers one client POST on (its id is the transport's own). */
export interface PostStream {
  id: StreamId | undefined;
}

/**
 * Set around a client POST's handling (Broker.handle): the transport stores the POST's priming
 * event (2025-11-25 clients) before it hands the POST's requests to their handlers, so they read
 * here which stream answers them (a hop parks its resumption on it: hop-resume.ts).
 */
export const postStreams = new AsyncLocalStorage<PostStream>();

/** Digits of an event's sequence number in its id, zero-padded. */
const SEQ_DIGITS = 12;

const byRegistry = new WeakMap<Metrics, Counter<"result">>();

function resumptionCounter(metrics: Metrics): Counter<"result"> {
  let counter = byRegistry.get(metrics);
  if (!counter) {
    counter = new Counter({
      name: "mcp_gateway_broker_stream_resumptions_total",
      help: "GET requests with Last-Event-ID on the aggregated endpoint (2025 sessions), by result: replayed (the stream resumed after that event), unknown (not held here: evicted, expired, another replica's or never sent; a fresh stream instead)",
      labelNames: ["result"],
      registers: [metrics.registry],
    });
    byRegistry.set(metrics, counter);
  }
  return counter;
}

/**
 * The replay buffers of the aggregated endpoint's 2025 sessions (Streamable HTTP resumability):
 * one per session, each bounded by events, bytes and age, and all of them together by
 * `maxTotalBytes` (the oldest events of any session go first).
 */
export class BrokerReplay {
  private readonly refs: LRUCache<string, Ref>;
  private sessions = 0;
  readonly resumptions: Counter<"result">;

  constructor(maxTotalBytes: number, metrics: Metrics) {
    this.resumptions = resumptionCounter(metrics);
    this.refs = new LRUCache<string, Ref>({
      maxSize: maxTotalBytes,
      sizeCalculation: (ref) => Math.max(1, ref.bytes),
      // Entries are only ever added and deleted, never read for use (peek), so the least recently
      // used is the oldest: per session too, which keeps each buffer a contiguous run of events.
      // After the eviction is done, so the buffer's own deletes find the entry already gone.
      disposeAfter: (ref, _key, reason) => {
        if (reason === "evict") ref.events.dropThrough(ref.seq);
      },
    });
  }

  /** A new buffer for one session. */
  session(limits: SessionReplayLimits): SessionEvents {
    return new SessionEvents(this, ++this.sessions, limits);
  }

  /** @internal */
  hold(session: number, seq: number, ref: Ref): void {
    this.refs.set(`${session}:${seq}`, ref);
  }

  /** @internal */
  release(session: number, seq: number): void {
    this.refs.delete(`${session}:${seq}`);
  }
}

/**
 * One session's replay buffer, the SDK transport's EventStore. Event ids are
 * `<random per buffer>.<sequence>`: unique within the session, never reused by a buffer a later
 * restore of the same session makes, and read only within the session they were sent on (the
 * session id is opened for its agent on every request), so nothing in them needs sealing.
 *
 * The buffer always holds a contiguous run of the session's newest events: eviction (count,
 * bytes, the process-wide bound) and expiry take the oldest, and an event too large to keep drops
 * everything before it. An id is known only while its event is held, so a replay after it is
 * complete: never a stream with a silent hole in it.
 */
export class SessionEvents implements EventStore {
  private readonly prefix = randomBytes(6).toString("base64url");
  private readonly held = new Map<number, Held>();
  /** Sequence number of the oldest held event; `next` when none is held. */
  private first = 0;
  private next = 0;
  private bytes = 0;
  /**
   * Each stored message's JSON, made once to measure it, until the session's stream writes it
   * (writeSharingSerialisation): the SDK transport would serialise it again right after.
   */
  private readonly serialised = new WeakMap<JSONRPCMessage, string>();

  constructor(
    private readonly replay: BrokerReplay,
    private readonly session: number,
    private readonly limits: SessionReplayLimits,
  ) {}

  storeEvent(streamId: StreamId, message: JSONRPCMessage): Promise<EventId> {
    if (!("jsonrpc" in message)) {
      // A priming event ({}): the first event of a POST's stream.
      const post = postStreams.getStore();
      if (post !== undefined && post.id === undefined) post.id = streamId;
    }
    const seq = this.next++;
    const json = JSON.stringify(message);
    const bytes = json.length;
    this.serialised.set(message, json);
    if (bytes > this.limits.maxBytes) {
      // Not kept: every earlier event is dropped with it, so no replay can skip over it.
      this.dropThrough(seq - 1);
      this.first = this.next;
    } else {
      this.held.set(seq, { streamId, message, bytes, at: Date.now() });
      this.bytes += bytes;
      this.replay.hold(this.session, seq, { events: this, seq, bytes });
      this.prune();
    }
    // Fixed width: an event's id, and so the size of the answer carrying it, does not grow with
    // the session's age (the bench checks every answer's size against the first one's).
    return Promise.resolve(`${this.prefix}.${String(seq).padStart(SEQ_DIGITS, "0")}`);
  }

  /** The JSON of `message`: the one storeEvent made (handed out once), or made now. */
  takeSerialised(message: JSONRPCMessage): string {
    const json = this.serialised.get(message);
    if (json === undefined) return JSON.stringify(message);
    this.serialised.delete(message);
    return json;
  }

  /** The held event an id names, if any (after dropping what expired). */
  private lookup(eventId: EventId): { seq: number; held: Held } | undefined {
    this.prune();
    const dot = eventId.lastIndexOf(".");
    if (dot < 0 || eventId.slice(0, dot) !== this.prefix) return undefined;
    const digits = eventId.slice(dot + 1);
    if (!/^\d{1,15}$/.test(digits)) return undefined;
    const seq = Number(digits);
    const held = this.held.get(seq);
    return held ? { seq, held } : undefined;
  }

  /** Whether a replay after `eventId` can be complete: its event is still held. */
  holds(eventId: EventId): boolean {
    return this.lookup(eventId) !== undefined;
  }

  getStreamIdForEventId(eventId: EventId): Promise<StreamId | undefined> {
    return Promise.resolve(this.lookup(eventId)?.held.streamId);
  }

  async replayEventsAfter(
    lastEventId: EventId,
    { send }: { send: (eventId: EventId, message: JSONRPCMessage) => Promise<void> },
  ): Promise<StreamId> {
    const found = this.lookup(lastEventId);
    if (!found) throw new Error("broker: replay after an event that is not held");
    const streamId = found.held.streamId;
    // `next` is read on every turn: events stored while a send waits are replayed too (the SDK
    // skips them on the live path by id).
    for (let seq = found.seq + 1; seq < this.next; seq++) {
      const held = this.held.get(seq);
      // Priming events ({}) carry no message; events of other streams are never replayed here.
      if (!held || held.streamId !== streamId || !("jsonrpc" in held.message)) continue;
      await send(`${this.prefix}.${seq}`, held.message);
    }
    return streamId;
  }

  /** Drops every held event up to and including `seq` (the process-wide bound evicted `seq`). */
  dropThrough(seq: number): void {
    for (; this.first <= seq && this.first < this.next; this.first++) {
      const held = this.held.get(this.first);
      if (!held) continue;
      this.held.delete(this.first);
      this.bytes -= held.bytes;
      this.replay.release(this.session, this.first);
    }
  }

  /** Keeps the buffer within its bounds: the oldest go first. */
  private prune(): void {
    const expired = Date.now() - this.limits.ttlMs;
    for (;;) {
      const oldest = this.held.get(this.first);
      if (!oldest) break;
      if (
        this.held.size <= this.limits.maxEvents &&
        this.bytes <= this.limits.maxBytes &&
        oldest.at > expired
      )
        break;
      this.dropThrough(this.first);
    }
  }

  /** The session ended: everything goes. */
  clear(): void {
    this.dropThrough(this.next - 1);
  }
}

/** The SDK session transport's SSE event writer (a private method of its class). */
type SseEventWriter = (
  controller: { enqueue(chunk: Uint8Array): void },
  encoder: { encode(text: string): Uint8Array },
  message: JSONRPCMessage,
  eventId?: EventId,
) => boolean;

/**
 * Makes the SDK session transport write each SSE event from the JSON its event store (`events`)
 * already made to measure the event, instead of serialising the message a second time. The
 * event is written exactly as the SDK's own writer does (WebStandardStreamableHTTPServerTransport
 * `writeSSEEvent`, @modelcontextprotocol/server 2.x). Should a later SDK no longer have that
 * writer, nothing is replaced and the SDK serialises again: slower, the same bytes.
 */
export function writeSharingSerialisation(
  transport: { onerror?: (error: Error) => void },
  events: SessionEvents,
): void {
  const writer = transport as { writeSSEEvent?: SseEventWriter };
  if (typeof writer.writeSSEEvent !== "function" || writer.writeSSEEvent.length !== 4) return;
  writer.writeSSEEvent = (controller, encoder, message, eventId) => {
    try {
      let event = "event: message\n";
      if (eventId) event += `id: ${eventId}\n`;
      event += `data: ${events.takeSerialised(message)}\n\n`;
      controller.enqueue(encoder.encode(event));
      return true;
    } catch (error) {
      transport.onerror?.(error as Error);
      return false;
    }
  };
}
