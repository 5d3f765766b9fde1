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
  /**
   * Hop sessions only this process knows, by server: opened after initialize (the server was
   * down then) or in place of a sealed one the server lost (404). They live as long as the live
   * session: when it leaves the process (evicted, idle, expired, ended) they are ended on their
   * servers, since nothing else could ever use or end them (BrokerHops.closeHops).
   */
  lateHops: Map<string, string>;
  /** Requests of the session being served now, streams included (Broker.handle). */
  active: number;
  /** Drops the session from memory once it has had nothing in progress for broker.liveSessions.idle. */
  idle: NodeJS.Timeout | undefined;
  /** The client's POSTs being answered now (Broker.handle): the session's expiry waits for them. */
  posts: number;
  /** Its sealed id expired while a POST was being answered: it leaves when the last one is done. */
  expired: boolean;
  /** Why the broker itself removes it from its sessions (Broker.leave; dispose reads it). */
  leaving: "deleted" | "idle" | "expired" | undefined;
  /** Why it left the process; a hop session opened for it since is no one's (BrokerHops.remember). */
  left: SessionEnd | undefined;
}

/**
 * Why a 2025 session ended, or left the process while its id still opens: `deleted` (the client's
 * DELETE), `expired` (its sealed id), `evicted` (over broker.liveSessions.max, the least recently
 * used), `idle` (nothing in progress for broker.liveSessions.idle).
 */
export type SessionEnd = "deleted" | "expired" | "evicted" | "idle";

/** Runs one relay of a server-to-client request, counted as pending in its session meanwhile. */
export async function relayed(live: LiveSession, send: () => Promise<unknown>): Promise<never> {
  live.relaying += 1;
  try {
    return (await send()) as never;
  } finally {
    live.relaying -= 1;
  }
}
