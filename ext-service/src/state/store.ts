/**
 * The state store: what must be shared and mutable across replicas (budget counters, shared rate
 * limits, cached results). Two implementations: memory (one process, the default) and Redis
 * (every replica sees the same values). The policy core never sees this module: adapters do the
 * store I/O and hand the core plain results.
 */

/** One counter to add to, as part of an all-or-nothing charge. */
export interface CounterCharge {
  key: string;
  /** Added when every counter of the charge stays within its limit. Non-negative integer. */
  amount: number;
  /** The counter may reach this value, never pass it. */
  limit: number;
  /** Lifetime of a counter this charge creates; an existing counter keeps its expiry. */
  ttlMs: number;
}

export interface ChargeResult {
  /** True when every counter was increased; false when none was. */
  applied: boolean;
  /** Per charge, in order: the value after the charge when applied, else the current value. */
  values: number[];
}

/** A store operation failed because the store cannot be reached (or did not answer in time). */
export class StoreUnavailable extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "StoreUnavailable";
  }
}

export interface StateStore {
  readonly kind: "memory" | "redis";

  /**
   * Atomically: if every counter plus its amount stays within its limit, adds every amount;
   * otherwise changes nothing. Exact across replicas sharing the store.
   */
  chargeAll(charges: readonly CounterCharge[]): Promise<ChargeResult>;

  /**
   * A rate limit as a token bucket (GCRA): `burst` calls at once, then `ratePerSecond`. Takes
   * `hits` tokens at once (default 1; 0 only asks). Returns 0 when the call may go, else the
   * milliseconds until it could; a refused call takes nothing.
   */
  takeToken(key: string, ratePerSecond: number, burst: number, hits?: number): Promise<number>;

  get(key: string): Promise<string | undefined>;
  set(key: string, value: string, ttlMs: number): Promise<void>;
  /**
   * Sets `key` to `value` only if it currently holds `expected` (undefined: only if absent).
   * Returns whether it was set.
   */
  compareAndSet(key: string, expected: string | undefined, value: string, ttlMs: number): Promise<boolean>;
  delete(key: string): Promise<void>;

  /**
   * The change feed: `message` reaches every subscriber of `channel`, in every replica. Resolves
   * to how many received it (Redis: subscribed replicas; memory: listeners).
   */
  publish(channel: string, message: string): Promise<number>;
  /** Returns the function that unsubscribes. */
  subscribe(channel: string, listener: (message: string) => void): () => void;
  /**
   * A subscription the store confirms: resolves (to the function that unsubscribes) once every
   * message published to `channel` from then on reaches `listener`; rejects with StoreUnavailable
   * when the store cannot confirm it in time. `lost` is called once, with the subscription ended,
   * if it may have missed a message since (its connection to the store dropped).
   */
  subscribeConfirmed(
    channel: string,
    listener: (message: string) => void,
    lost: () => void,
  ): Promise<() => void>;

  /** False while the store cannot be reached (Redis down); always true in memory. */
  available(): boolean;
  /** Called on every change of available(). Returns the function that stops it. */
  onAvailability(listener: (available: boolean) => void): () => void;

  close(): Promise<void>;
}
