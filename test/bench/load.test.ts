import { describe, expect, it } from "vitest";
import { closedLoop, openLoop, type Clock } from "../../bench/load.js";
import { percentile } from "../../bench/stats.js";

/**
 * Virtual time: `after(ms)` is an answer that arrives `ms` later; `sleep` advances the clock,
 * delivering answers in time order. `lateness` makes every sleep overshoot, like a coarse timer.
 */
class SimClock implements Clock {
  t = 0;
  private timers: { at: number; fire: () => void }[] = [];
  constructor(private readonly lateness = 0) {}

  now(): number {
    return this.t;
  }

  after(ms: number): Promise<void> {
    return this.until(this.t + ms);
  }

  until(at: number): Promise<void> {
    return new Promise((resolve) => this.timers.push({ at, fire: resolve }));
  }

  async sleep(ms: number, signal?: AbortSignal): Promise<void> {
    const target = this.t + Math.max(0, ms) + this.lateness;
    while (!signal?.aborted) {
      this.timers.sort((a, b) => a.at - b.at);
      const next = this.timers[0];
      if (!next || next.at > target) break;
      this.timers.shift();
      this.t = Math.max(this.t, next.at);
      next.fire();
      // Let the answered request's callbacks (and the next send) run at this virtual time.
      await new Promise((resolve) => setImmediate(resolve));
    }
    if (!signal?.aborted) this.t = Math.max(this.t, target);
  }
}

const values = (s: { values(): Float64Array }) => [...s.values()];

describe("open loop", () => {
  it("sends exactly rate x duration requests on schedule and times each answer", async () => {
    const clock = new SimClock();
    const r = await openLoop(() => clock.after(2), {
      ratePerSecond: 100,
      durationMs: 1000,
      drainMs: 50,
      clock,
    });
    expect(r).toMatchObject({ scheduled: 100, sent: 100, ok: 100, errors: 0, timedOut: 0, maxInflight: 1 });
    expect(values(r.latency)).toEqual(Array(100).fill(2));
    expect(values(r.sendLag)).toEqual(Array(100).fill(0));
  });

  it("counts from the scheduled send time, so the load generator's lateness is included", async () => {
    const clock = new SimClock(3);
    const r = await openLoop(() => clock.after(1), {
      ratePerSecond: 100,
      durationMs: 200,
      drainMs: 50,
      clock,
    });
    expect(r.sent).toBe(20);
    // The first request leaves on time; every later one leaves 3 ms late.
    expect(values(r.sendLag)).toEqual([0, ...Array(19).fill(3)]);
    expect(values(r.service)).toEqual(Array(20).fill(1));
    expect(values(r.latency)).toEqual([1, ...Array(19).fill(4)]);
  });

  it("keeps sending through a stall, so the stall shows in the percentiles", async () => {
    const clock = new SimClock();
    // The server freezes from t=200 to t=300: everything sent meanwhile is answered at 301.
    const op = () => (clock.t >= 200 && clock.t < 300 ? clock.until(301) : clock.after(1));
    const r = await openLoop(op, { ratePerSecond: 100, durationMs: 1000, drainMs: 50, clock });
    expect(r).toMatchObject({ scheduled: 100, sent: 100, ok: 100, maxInflight: 11 });
    const sorted = r.latency.sorted();
    expect(percentile(sorted, 50)).toBe(1);
    expect(percentile(sorted, 90)).toBe(1);
    expect(percentile(sorted, 95)).toBe(51);
    expect(percentile(sorted, 99)).toBe(91);
    expect(percentile(sorted, 100)).toBe(101);
  });

  it("counts failures and answers that never come, without timing them", async () => {
    const clock = new SimClock();
    let n = 0;
    const op = () => {
      n++;
      if (n === 3) return new Promise<void>(() => undefined); // never answered
      if (n % 5 === 0) return Promise.reject(new Error(`bad answer ${n}`));
      return clock.after(1);
    };
    const r = await openLoop(op, { ratePerSecond: 100, durationMs: 500, drainMs: 20, clock });
    expect(r).toMatchObject({ scheduled: 50, sent: 50, ok: 39, errors: 10, timedOut: 1 });
    expect(r.firstError).toBe("bad answer 5");
    expect(r.latency.count).toBe(39);
  });

  it("treats an operation that throws synchronously as a failed request", async () => {
    const clock = new SimClock();
    const r = await openLoop(
      () => {
        throw new Error("cannot send");
      },
      { ratePerSecond: 10, durationMs: 1000, drainMs: 10, clock },
    );
    expect(r).toMatchObject({ sent: 10, ok: 0, errors: 10, timedOut: 0, firstError: "cannot send" });
  });
});

describe("closed loop", () => {
  it("keeps N requests in flight for the duration and reports requests per second", async () => {
    const clock = new SimClock();
    const r = await closedLoop(() => clock.after(10), {
      concurrency: 2,
      durationMs: 100,
      drainMs: 50,
      clock,
    });
    expect(r).toMatchObject({ ok: 20, errors: 0, stuck: 0, elapsedMs: 100, perSecond: 200 });
    expect(values(r.latency)).toEqual(Array(20).fill(10));
  });

  it("hides a stall in its latency percentiles (why latency is measured in the open loop)", async () => {
    const clock = new SimClock();
    const op = () => (clock.t >= 200 && clock.t < 300 ? clock.until(301) : clock.after(1));
    const r = await closedLoop(op, { concurrency: 1, durationMs: 1000, drainMs: 50, clock });
    expect(r.ok).toBe(900);
    expect(percentile(r.latency.sorted(), 99)).toBe(1);
    expect(percentile(r.latency.sorted(), 100)).toBe(101);
  });

  it("stops at the drain deadline when answers never come, and counts the stuck workers", async () => {
    const clock = new SimClock();
    let n = 0;
    const op = () => (++n === 4 ? new Promise<void>(() => undefined) : clock.after(5));
    const r = await closedLoop(op, { concurrency: 2, durationMs: 50, drainMs: 100, clock });
    expect(r.stuck).toBe(1);
    expect(r.elapsedMs).toBe(150);
    expect(r.ok).toBe(11);
  });

  it("counts failed requests apart", async () => {
    const clock = new SimClock();
    let n = 0;
    const op = () => (++n % 2 ? clock.after(1) : clock.after(1).then(() => Promise.reject(new Error("no"))));
    const r = await closedLoop(op, { concurrency: 1, durationMs: 10, drainMs: 5, clock });
    expect(r).toMatchObject({ ok: 5, errors: 5, firstError: "no" });
  });
});
