import type { ChargeResult, CounterCharge, StateStore } from "./store.js";

interface Entry {
  value: string;
  /** Epoch ms; Infinity never expires. */
  expiresAt: number;
}

/**
 * The embedded store: one process, nothing to run. Expired entries are dropped when read and
 * swept once the table has grown by `sweepEvery` keys, so memory follows the live keys.
 */
export class MemoryStore implements StateStore {
  readonly kind = "memory";
  private readonly entries = new Map<string, Entry>();
  private readonly channels = new Map<string, Set<(message: string) => void>>();
  private nextSweep: number;

  constructor(
    private readonly now: () => number = Date.now,
    private readonly sweepEvery = 10_000,
  ) {
    this.nextSweep = sweepEvery;
  }

  chargeAll(charges: readonly CounterCharge[]): Promise<ChargeResult> {
    const now = this.now();
    const n = charges.length;
    const entries = new Array<Entry | undefined>(n);
    const values = new Array<number>(n);
    let applied = true;
    for (let i = 0; i < n; i++) {
      const c = charges[i]!;
      const entry = this.live(c.key, now);
      const value = entry === undefined ? 0 : Number(entry.value);
      entries[i] = entry;
      values[i] = value;
      if (value + c.amount > c.limit) applied = false;
    }
    if (!applied) return Promise.resolve({ applied, values });
    for (let i = 0; i < n; i++) {
      const c = charges[i]!;
      const entry = entries[i];
      const value = values[i]! + c.amount;
      values[i] = value;
      if (entry) entry.value = String(value);
      else this.put(c.key, String(value), now + c.ttlMs);
    }
    return Promise.resolve({ applied, values });
  }

  takeToken(key: string, ratePerSecond: number, burst: number, hits = 1): Promise<number> {
    const now = this.now();
    const interval = 1000 / ratePerSecond;
    const entry = this.live(key, now);
    const tat = Math.max(now, entry ? Number(entry.value) : now);
    const next = tat + hits * interval;
    const allowedAt = next - burst * interval;
    if (allowedAt > now) return Promise.resolve(Math.ceil(allowedAt - now));
    if (hits === 0) return Promise.resolve(0);
    if (entry) {
      entry.value = String(next);
      entry.expiresAt = next;
    } else this.put(key, String(next), next);
    return Promise.resolve(0);
  }

  get(key: string): Promise<string | undefined> {
    return Promise.resolve(this.live(key, this.now())?.value);
  }

  set(key: string, value: string, ttlMs: number): Promise<void> {
    this.put(key, value, this.now() + ttlMs);
    return Promise.resolve();
  }

  compareAndSet(key: string, expected: string | undefined, value: string, ttlMs: number): Promise<boolean> {
    const now = this.now();
    if (this.live(key, now)?.value !== expected) return Promise.resolve(false);
    this.put(key, value, now + ttlMs);
    return Promise.resolve(true);
  }

  delete(key: string): Promise<void> {
    this.entries.delete(key);
    return Promise.resolve();
  }

  publish(channel: string, message: string): Promise<number> {
    const listeners = [...(this.channels.get(channel) ?? [])];
    for (const listener of listeners) listener(message);
    return Promise.resolve(listeners.length);
  }

  subscribe(channel: string, listener: (message: string) => void): () => void {
    let listeners = this.channels.get(channel);
    if (!listeners) this.channels.set(channel, (listeners = new Set()));
    listeners.add(listener);
    return () => listeners.delete(listener);
  }

  /** In one process nothing is missed: confirmed at once, never lost. */
  subscribeConfirmed(channel: string, listener: (message: string) => void): Promise<() => void> {
    return Promise.resolve(this.subscribe(channel, listener));
  }

  available(): boolean {
    return true;
  }

  onAvailability(): () => void {
    return () => {};
  }

  close(): Promise<void> {
    this.entries.clear();
    this.channels.clear();
    return Promise.resolve();
  }

  get size(): number {
    return this.entries.size;
  }

  private live(key: string, now: number): Entry | undefined {
    const entry = this.entries.get(key);
    if (entry && entry.expiresAt <= now) {
      this.entries.delete(key);
      return undefined;
    }
    return entry;
  }

  private put(key: string, value: string, expiresAt: number): void {
    this.entries.set(key, { value, expiresAt });
    if (this.entries.size >= this.nextSweep) {
      const now = this.now();
      for (const [k, e] of this.entries) if (e.expiresAt <= now) this.entries.delete(k);
      this.nextSweep = this.entries.size + this.sweepEvery;
    }
  }
}
