/**
 * A circuit breaker per upstream endpoint: closed -> open after `threshold` consecutive failures
 * (errors, timeouts, 5xx); open -> half-open once `cooldownMs` has passed; in half-open exactly
 * one probe request goes through, and its outcome closes or re-opens the breaker.
 *
 * A small state machine rather than opossum: opossum wraps one promise-returning call and trips
 * on an error percentage over a rolling window, while the edge needs consecutive-failure
 * semantics, an outcome reported at response-header time of a stream that may live on for
 * minutes, and a side-effect-free "would you admit a request?" query for load balancing.
 */

export type BreakerState = "closed" | "open" | "half_open";

/**
 * Permission to send one request. Its first outcome (success, failure or release) counts; later
 * ones are ignored, so a cleanup path can always release a ticket without double counting.
 */
export interface BreakerTicket {
  readonly probe: boolean;
  settled: boolean;
}

export class CircuitBreaker {
  private state: BreakerState = "closed";
  private failures = 0;
  private openedAt = 0;
  private probing = false;

  constructor(
    private readonly threshold: number,
    private readonly cooldownMs: number,
    private readonly onChange: (state: BreakerState) => void = () => {},
    private readonly now: () => number = Date.now,
  ) {}

  /** The state now (an open breaker whose cool-down has passed reads as half-open). */
  get current(): BreakerState {
    if (this.state === "open" && this.now() - this.openedAt >= this.cooldownMs) {
      this.probing = false;
      this.set("half_open");
    }
    return this.state;
  }

  /** Whether `tryAcquire` would succeed now; changes nothing. */
  available(): boolean {
    const s = this.current;
    return s === "closed" || (s === "half_open" && !this.probing);
  }

  tryAcquire(): BreakerTicket | undefined {
    const s = this.current;
    if (s === "closed") return { probe: false, settled: false };
    if (s === "half_open" && !this.probing) {
      this.probing = true;
      return { probe: true, settled: false };
    }
    return undefined;
  }

  success(ticket: BreakerTicket): void {
    if (ticket.settled) return;
    ticket.settled = true;
    if (ticket.probe) {
      this.probing = false;
      if (this.state === "half_open") {
        this.failures = 0;
        this.set("closed");
      }
    } else if (this.state === "closed") {
      this.failures = 0;
    }
  }

  failure(ticket: BreakerTicket): void {
    if (ticket.settled) return;
    ticket.settled = true;
    if (ticket.probe) {
      this.probing = false;
      if (this.state === "half_open") this.trip();
    } else if (this.state === "closed") {
      this.failures++;
      if (this.failures >= this.threshold) this.trip();
    }
    // Failures of requests sent before the breaker opened do not extend the cool-down.
  }

  /** A failure found after the outcome was reported (a stream that broke mid-way). */
  recordFailure(): void {
    this.failure({ probe: false, settled: false });
  }

  /** The request was never answered for reasons of its own (client went away): no outcome. */
  release(ticket: BreakerTicket): void {
    if (ticket.settled) return;
    ticket.settled = true;
    if (ticket.probe) this.probing = false;
  }

  private trip(): void {
    this.openedAt = this.now();
    this.failures = 0;
    this.set("open");
  }

  private set(state: BreakerState): void {
    if (this.state === state) return;
    this.state = state;
    this.onChange(state);
  }
}
