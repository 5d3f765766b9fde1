import type { StreamId } from "@modelcontextprotocol/server";

interface Parked {
  /** The hop's own resumption: a GET with the server's Last-Event-ID (the SDK client's). */
  reconnect: () => void;
  /** Not before this (epoch ms): the server's retry interval, counted from its stream's end. */
  notBefore: number;
  timer: ReturnType<typeof setTimeout> | undefined;
}

/**
 * One 2025 session's hop streams that a server closed before answering (SEP-1699 polling), each
 * waiting for the agent's client to resume the stream the broker closed in turn (Broker
 * `scheduleHopResume`). The agent's `Last-Event-ID` names the broker's stream (its events are the
 * broker's, replay.ts); parked under that stream is the hop's resumption, which carries the
 * server's own last event id. So the server is asked again when the agent asks again, as it
 * would be without the broker, and never sooner than its retry interval.
 */
export class ParkedHopStreams {
  private readonly byStream = new Map<StreamId, Set<Parked>>();

  /** Parks `reconnect` until the client resumes `stream`; returns what cancels it. */
  park(stream: StreamId, reconnect: () => void, serverRetryMs: number): () => void {
    const parked: Parked = { reconnect, notBefore: Date.now() + serverRetryMs, timer: undefined };
    let waiting = this.byStream.get(stream);
    if (waiting === undefined) this.byStream.set(stream, (waiting = new Set()));
    waiting.add(parked);
    return () => {
      clearTimeout(parked.timer);
      const set = this.byStream.get(stream);
      set?.delete(parked);
      if (set?.size === 0) this.byStream.delete(stream);
    };
  }

  /** The client resumed `stream`: the hops parked on it resume their servers' streams. */
  resume(stream: StreamId): number {
    const waiting = this.byStream.get(stream);
    if (waiting === undefined) return 0;
    this.byStream.delete(stream);
    for (const parked of waiting) {
      parked.timer = setTimeout(parked.reconnect, Math.max(0, parked.notBefore - Date.now()));
    }
    return waiting.size;
  }

  /** Hop resumptions waiting for their client (every stream). */
  get size(): number {
    let n = 0;
    for (const waiting of this.byStream.values()) n += waiting.size;
    return n;
  }
}
