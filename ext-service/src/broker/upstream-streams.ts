import { Counter, Gauge } from "prom-client";
import type { Principal } from "../policy/identity.js";
import type { Metrics } from "../telemetry/metrics.js";

/**
 * One set of servers' streams the broker holds behind one client stream of the aggregated
 * endpoint: the servers' GET streams behind a 2025 session's GET stream, or the listens behind
 * one 2026-07-28 `subscriptions/listen`.
 */
export interface StreamHold {
  /**
   * The client's stream closed: the servers' streams stay `lingerMs` for the client to resume,
   * and may be closed sooner to make room for a newer stream of the same agent.
   */
  linger(lingerMs: number): void;
  /** The client's stream is open again (it resumed): nothing closes the servers' streams for it. */
  attach(): void;
  /** Closes the servers' streams (once) and frees the agent's room. */
  close(): void;
}

type HoldState = "attached" | "lingering";

interface Held extends StreamHold {
  state: HoldState;
  /** When it started lingering (ms since the epoch). */
  since: number;
  /** Servers' streams in the set. */
  readonly streams: number;
}

interface StreamMetrics {
  open: Gauge<"state">;
  limited: Counter<"action">;
}

const byRegistry = new WeakMap<Metrics, StreamMetrics>();

function streamMetrics(metrics: Metrics): StreamMetrics {
  let found = byRegistry.get(metrics);
  if (!found) {
    found = {
      open: new Gauge({
        name: "mcp_gateway_broker_upstream_streams",
        help: "Servers' streams the aggregated endpoint (/mcp) holds behind its clients' streams: attached (the client's stream is open) or lingering (it closed; kept for the client to resume)",
        labelNames: ["state"],
        registers: [metrics.registry],
      }),
      limited: new Counter({
        name: "mcp_gateway_broker_stream_limit_total",
        help: "Client streams of /mcp over the agent's limit (broker.streams.maxPerAgent): closed_lingering (the agent's oldest lingering set of servers' streams closed to make room), refused (429 upstream_streams_limited)",
        labelNames: ["action"],
        registers: [metrics.registry],
      }),
    };
    // Both states present from the start, so a scrape shows 0 rather than nothing.
    found.open.set({ state: "attached" }, 0);
    found.open.set({ state: "lingering" }, 0);
    byRegistry.set(metrics, found);
  }
  return found;
}

/** Agents are namespaced by issuer, as the edge's own per-agent limits count them. */
function agentKey(principal: Principal): string {
  return `${principal.issuer ?? ""}\u0000${principal.agent}`;
}

/**
 * The servers' streams the broker holds, per agent, bounded per agent: a client stream of
 * `/mcp` makes the broker open one stream on each server of the view, and (2025) keeps them a
 * while after the client's stream closed, so neither the edge's per-agent stream limit (it counts
 * the client's open stream) nor Envoy (it sees each hop as a stream of its own, from the broker)
 * bounds what one agent can make the gateway hold. Here every set counts, open or lingering,
 * against one per-agent number; over it the agent's oldest lingering set is closed first, and
 * only when none lingers is the new stream refused.
 */
export class UpstreamStreams {
  private readonly byAgent = new Map<string, Set<Held>>();
  private readonly metrics: StreamMetrics;

  constructor(metrics: Metrics) {
    this.metrics = streamMetrics(metrics);
  }

  /**
   * Room for a new set of `streams` servers' streams for `principal`, at most `limit` sets: made
   * by closing the agent's oldest lingering set when it has `limit` already. Undefined (nothing
   * opened, nothing closed) when every set it holds is attached to an open client stream.
   * `onClose` runs once when the set is closed (by its holder, its linger, or for room).
   */
  open(principal: Principal, limit: number, streams: number, onClose: () => void): StreamHold | undefined {
    const key = agentKey(principal);
    let sets = this.byAgent.get(key);
    if (sets !== undefined && sets.size >= limit) {
      let oldest: Held | undefined;
      for (const held of sets)
        if (held.state === "lingering" && (oldest === undefined || held.since < oldest.since)) oldest = held;
      if (oldest === undefined) {
        this.metrics.limited.inc({ action: "refused" });
        return undefined;
      }
      this.metrics.limited.inc({ action: "closed_lingering" });
      oldest.close();
      sets = this.byAgent.get(key);
    }
    if (sets === undefined) this.byAgent.set(key, (sets = new Set()));
    const agentSets = sets;
    const gauge = this.metrics.open;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let closed = false;
    const held: Held = {
      state: "attached",
      since: 0,
      streams,
      linger: (lingerMs) => {
        if (closed || held.state === "lingering") return;
        gauge.dec({ state: "attached" }, streams);
        gauge.inc({ state: "lingering" }, streams);
        held.state = "lingering";
        held.since = Date.now();
        timer = setTimeout(() => held.close(), lingerMs);
        timer.unref();
      },
      attach: () => {
        if (closed || held.state === "attached") return;
        clearTimeout(timer);
        timer = undefined;
        gauge.dec({ state: "lingering" }, streams);
        gauge.inc({ state: "attached" }, streams);
        held.state = "attached";
      },
      close: () => {
        if (closed) return;
        closed = true;
        clearTimeout(timer);
        gauge.dec({ state: held.state }, streams);
        agentSets.delete(held);
        if (agentSets.size === 0 && this.byAgent.get(key) === agentSets) this.byAgent.delete(key);
        onClose();
      },
    };
    agentSets.add(held);
    gauge.inc({ state: "attached" }, streams);
    return held;
  }

  /** Sets held for `principal` now (tests, diagnostics). */
  heldFor(principal: Principal): number {
    return this.byAgent.get(agentKey(principal))?.size ?? 0;
  }

  /** Closes every set (the broker is closing). */
  closeAll(): void {
    for (const sets of [...this.byAgent.values()]) for (const held of [...sets]) held.close();
  }
}
