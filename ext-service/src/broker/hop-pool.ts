import type { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import type { Result, ServerContext } from "@modelcontextprotocol/server";
import { LRUCache } from "lru-cache";
import type { Principal } from "../policy/identity.js";

/**
 * The agent's bearer token a hop presents (sealed, for a token-exchange server only): one holder
 * per 2025 session, shared by every scope, hop and GET stream of it and holding the token of the
 * request that last touched the session; one per 2026-07-28 request.
 */
export interface AgentBearer {
  token: string | undefined;
}

/**
 * An SDK client of one server's `/mcp/<server>` route, kept between the agent's requests
 * (HopPool). Its handlers are installed once and act for whichever request uses it now (`ctx`),
 * and its transport signs each HTTP request with a hop identity for that request's agent
 * (`speaker`).
 */
export interface PooledHop {
  readonly client: Client;
  readonly transport: StreamableHTTPClientTransport;
  /**
   * Who the hop speaks for in its current use (the agent, and the holder of its current token:
   * the 2025 session's, or the 2026-07-28 request's), read by its transport for each HTTP
   * request's hop identity.
   */
  readonly speaker: { principal: Principal; bearer: AgentBearer };
  /** The agent's request this hop serves now: server-to-client requests and logs go to it. */
  ctx: ServerContext | undefined;
  /**
   * The SDK transport's stream that answers that request (2025-11-25 sessions; replay.ts
   * `postStreams`): where the hop parks a resumption its server asked for (hop-resume.ts).
   */
  clientStream: string | undefined;
  /**
   * A 2026-07-28 request's hop to a server that speaks only 2025: where the server's requests to
   * the client go during the current use (bridge.ts, the call that asked them).
   */
  asker: ((method: string, params: unknown) => Promise<Result>) | undefined;
  /** Ids of the requests sent in the current use (2025: what a cancellation names). */
  readonly sent: (string | number)[];
  /**
   * The hop opened a session of its own (a 2026-07-28 request whose server speaks only 2025):
   * ended with a DELETE when the hop is closed. A hop attached to the client's 2025 session
   * leaves that session to the client's DELETE.
   */
  ownSession: boolean;
}

export interface HopPoolOptions {
  /** Keys (agent session or agent, server, capabilities) kept at most. */
  maxKeys: number;
  /** Idle hops kept per key: concurrent requests beyond it build hops that are closed after. */
  perKey: number;
  /** A key unused this long (ms) is dropped and its hops closed. */
  idleMs: number;
}

/** Closes a hop: its own session first (DELETE on /mcp/<server>), then its transport. */
export async function closeHop(hop: PooledHop): Promise<void> {
  hop.ctx = undefined;
  hop.asker = undefined;
  hop.clientStream = undefined;
  if (hop.ownSession) await hop.transport.terminateSession().catch(() => undefined);
  await hop.client.close().catch(() => undefined);
}

/**
 * Hop clients kept between requests, so a request through the aggregated endpoint does not build,
 * connect and close an SDK client (and, for a 2026-07-28 request, negotiate with the server) for
 * each hop. A hop is used by one request at a time: `take` removes it from the pool, `give` puts
 * it back once the request is done with it; a hop that failed, was cancelled or timed out is
 * closed instead. The key says who may use a hop again (broker.ts `hopKey`): never another agent,
 * another session, other client capabilities or another hop origin.
 */
export class HopPool {
  private readonly idle: LRUCache<string, PooledHop[]>;

  constructor(private readonly options: HopPoolOptions) {
    this.idle = new LRUCache<string, PooledHop[]>({
      max: options.maxKeys,
      ttl: options.idleMs,
      // Idle hops are closed when their time is up, not only when the key is next looked up.
      ttlAutopurge: true,
      updateAgeOnGet: true,
      dispose: (hops) => {
        for (const hop of hops) void closeHop(hop);
      },
    });
  }

  /** An idle hop of `key` that is still connected, now in use; undefined when there is none. */
  take(key: string): PooledHop | undefined {
    const hops = this.idle.get(key);
    if (!hops) return undefined;
    for (let hop = hops.pop(); hop !== undefined; hop = hops.pop()) {
      if (hops.length === 0) this.idle.delete(key);
      if (hop.client.transport !== undefined) return hop;
      void closeHop(hop);
    }
    return undefined;
  }

  /** Puts a hop the request is done with back, or closes it when its key holds enough. */
  give(key: string, hop: PooledHop): void {
    hop.ctx = undefined;
    hop.asker = undefined;
    hop.clientStream = undefined;
    hop.sent.length = 0;
    if (hop.client.transport === undefined) return void closeHop(hop);
    const hops = this.idle.get(key);
    if (hops === undefined) this.idle.set(key, [hop]);
    else if (hops.length < this.options.perKey) hops.push(hop);
    else void closeHop(hop);
  }

  /** Closes the idle hops of every key `matches` accepts (a session ended, a server failed). */
  drop(matches: (key: string) => boolean): void {
    for (const key of [...this.idle.keys()]) if (matches(key)) this.idle.delete(key);
  }

  /** Idle hops kept (every key). */
  get size(): number {
    let n = 0;
    for (const hops of this.idle.values()) n += hops.length;
    return n;
  }

  clear(): void {
    this.idle.clear();
  }
}
