import type { Exchange, PendingRequest } from "./exchange.js";
import { Sealer } from "./seal.js";

/**
 * SSE stream resumption (MCP 2025-11-25, SEP-1699) without reopening security review F4.
 *
 * A client whose POST stream closed mid-call resumes it with a GET carrying `Last-Event-ID`; the
 * answers to the POST's requests then arrive on the GET, an exchange that sent none of them. The
 * gateway only inspects a response under the settings of the request it answers, so every event id
 * it forwards is replaced by a sealed one (policy/seal.ts, under the `sessions.keys` secrets) that
 * carries the upstream's id and the requests still waiting at that point, bound to the agent, the
 * server and the session. A resuming GET opens it, sends the upstream its own id, and waits for
 * those requests again. Any replica with the same keys can open it, so nothing is kept between
 * requests.
 */

/** A sealed id longer than this was not minted here (a batch is bounded well below it). */
const MAX_SEALED_CHARS = 16_384;

interface SealedState {
  /** The upstream's event id. */
  e: string;
  /** The requests still waiting: [idKey, method, target]. */
  p: [string, string, string | null][];
}

export interface OpenedResumption {
  upstreamEventId: string;
  pending: [string, PendingRequest][];
}

/** Who may resume: the same agent of the same issuer, on the same server and session. */
function binding(exchange: Exchange): Buffer {
  const p = exchange.principal;
  return Buffer.from(
    JSON.stringify([
      p?.issuer ?? null,
      p?.agent ?? null,
      exchange.server ?? null,
      exchange.sessionId ?? null,
    ]),
  );
}

export class StreamResumption {
  private readonly sealer: Sealer;

  /** The session secrets: the first seals, all open (rotation, as for session ids). */
  constructor(secrets: readonly (string | Uint8Array)[]) {
    this.sealer = new Sealer(secrets, "resumption", MAX_SEALED_CHARS);
  }

  /** The event id the client sees for the upstream's `upstreamEventId` at this point of `exchange`. */
  seal(exchange: Exchange, upstreamEventId: string): string {
    const state: SealedState = {
      e: upstreamEventId,
      p: [...exchange.pending].map(([key, r]) => [key, r.method, r.target ?? null]),
    };
    return this.sealer.seal(binding(exchange), JSON.stringify(state));
  }

  /** Opens a `Last-Event-ID`; undefined when it was not sealed here for this agent, server and session. */
  open(exchange: Exchange, sealed: string): OpenedResumption | undefined {
    const text = this.sealer.open(sealed, binding(exchange));
    if (text === undefined) return undefined;
    const state = JSON.parse(text) as SealedState;
    return {
      upstreamEventId: state.e,
      pending: state.p.map(([key, method, target]) => [key, { method, target: target ?? undefined }]),
    };
  }
}
