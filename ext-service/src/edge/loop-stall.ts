import { performance } from "node:perf_hooks";

/**
 * Notices when this process's event loop was blocked (security review F2). While it is blocked,
 * no timer fires and no socket is read: an upstream answer waits unread, the edge's own upstream
 * timeout fires late, and a pooled connection the upstream closed meanwhile fails the next
 * request. Such failures are the gateway's, not the upstream's, and must not count against the
 * upstream's circuit breaker.
 *
 * A ticker runs every `intervalMs`; a gap between two ticks longer than `intervalMs +
 * thresholdMs` is a stall. A failure is the gateway's when a stall ended less than `windowMs`
 * before it, or when one is under way (the ticker has not run for that long). Keep `windowMs`
 * above upstream servers' keep-alive timeouts (Node's default is 5 s).
 */
export class LoopStallWatch {
  private lastTick = performance.now();
  private lastStallEnd = -Infinity;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly thresholdMs = 1_000,
    private readonly windowMs = 6_000,
    private readonly intervalMs = 100,
  ) {
    this.timer = setInterval(() => this.tick(), intervalMs);
    this.timer.unref();
  }

  private tick(): void {
    const now = performance.now();
    if (now - this.lastTick > this.intervalMs + this.thresholdMs) this.lastStallEnd = now;
    this.lastTick = now;
  }

  /** Whether the event loop stalled recently (or is only now running again). */
  recentlyStalled(): boolean {
    const now = performance.now();
    return (
      now - this.lastTick > this.intervalMs + this.thresholdMs || now - this.lastStallEnd < this.windowMs
    );
  }

  close(): void {
    clearInterval(this.timer);
  }
}
