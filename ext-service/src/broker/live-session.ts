import type { Client } from "@modelcontextprotocol/client";
import type { Server, WebStandardStreamableHTTPServerTransport } from "@modelcontextprotocol/server";
import type { ParkedHopStreams } from "./hop-resume.js";
import type { SessionEvents } from "./replay.js";
import type { Scope } from "./scope.js";
import type { BrokerSession } from "./session.js";
import type { StreamHold } from "./upstream-streams.js";

/** A 2025-era session this process serves: the SDK's session transport and server. */
export interface LiveSession {
  transport: WebStandardStreamableHTTPServerTransport;
  server: Server;
  session: BrokerSession;
  /** The events its streams sent, for a client that resumes one (`Last-Event-ID`). */
  events: SessionEvents;
  /** The scope its server's handlers run in (the agent token is the latest request's). */
  scope: Scope;
  /**
   * Reopenings of the servers' GET streams held back while the session's agent token has expired
   * (Broker.reopenStream): they run when a request brings a newer token (Broker.touch).
   */
  awaitingToken: Set<() => void>;
  /**
   * Hop clients holding each server's GET stream, once the client opened its own, by server,
   * with the server's ServerPresence.generation when it was opened.
   */
  listeners: Map<string, { client: Client; generation: number }> | undefined;
  /** The scope the listeners were opened in (listen): a server that joins later gets one too. */
  listenScope: Scope | undefined;
  /** Stops telling this session of servers leaving or rejoining its view (ServerPresence). */
  unwatch: (() => void) | undefined;
  /**
   * `listeners` as the agent's per-agent stream limit counts them (upstream-streams.ts): they
   * linger once the client's GET stream closed, and are closed after broker.streams.linger.
   */
  hold: StreamHold | undefined;
  /** The client's GET streams open now (one, but a resuming client may overlap its old one). */
  streams: number;
  /** Server-to-client requests relayed to the client in this process, not answered yet. */
  relaying: number;
  /**
   * With an answer relay (BrokerOptions.answers): the requests this process sent the client that
   * wait for an answer, by answerKey of the id the client sees (Broker.wireIdPrefix), each with
   * the id the session's server gave it and the function that stops taking it from another
   * replica.
   */
  awaiting: Map<string, { serverId: string | number; stop: () => void }>;
  /** Hop streams a server closed mid-call, waiting for the client to resume its own (hop-resume.ts). */
  parkedHops: ParkedHopStreams;
  /** Ends the session when its sealed id expires (Broker.liveSession). */
  expiry: NodeJS.Timeout | undefined;
}

/** Runs one relay of a server-to-client request, counted as pending in its session meanwhile. */
export async function relayed(live: LiveSession, send: () => Promise<unknown>): Promise<never> {
  live.relaying += 1;
  try {
    return (await send()) as never;
  } finally {
    live.relaying -= 1;
  }
}
