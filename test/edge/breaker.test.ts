import { describe, expect, it } from "vitest";
import { CircuitBreaker, type BreakerState } from "../../ext-service/src/edge/breaker.js";

function breaker(threshold = 3, cooldown = 1000) {
  let now = 0;
  const changes: BreakerState[] = [];
  const b = new CircuitBreaker(
    threshold,
    cooldown,
    (s) => changes.push(s),
    () => now,
  );
  return { b, changes, advance: (ms: number) => (now += ms) };
}

describe("CircuitBreaker", () => {
  it("opens after the configured number of consecutive failures, not before", () => {
    const { b, changes } = breaker(3);
    for (let i = 0; i < 2; i++) b.failure(b.tryAcquire()!);
    expect(b.current).toBe("closed");
    b.failure(b.tryAcquire()!);
    expect(b.current).toBe("open");
    expect(b.tryAcquire()).toBeUndefined();
    expect(b.available()).toBe(false);
    expect(changes).toEqual(["open"]);
  });

  it("a success resets the count of consecutive failures", () => {
    const { b } = breaker(2);
    b.failure(b.tryAcquire()!);
    b.success(b.tryAcquire()!);
    b.failure(b.tryAcquire()!);
    expect(b.current).toBe("closed");
  });

  it("half-opens after the cool-down and lets exactly one probe through", () => {
    const { b, advance, changes } = breaker(1, 1000);
    b.failure(b.tryAcquire()!);
    advance(999);
    expect(b.tryAcquire()).toBeUndefined();
    advance(1);
    expect(b.current).toBe("half_open");
    const probe = b.tryAcquire();
    expect(probe?.probe).toBe(true);
    expect(b.tryAcquire()).toBeUndefined();
    expect(b.available()).toBe(false);
    b.success(probe!);
    expect(b.current).toBe("closed");
    expect(changes).toEqual(["open", "half_open", "closed"]);
  });

  it("a failed probe opens it again for a fresh cool-down", () => {
    const { b, advance } = breaker(1, 1000);
    b.failure(b.tryAcquire()!);
    advance(1000);
    b.failure(b.tryAcquire()!);
    expect(b.current).toBe("open");
    advance(500);
    expect(b.current).toBe("open");
    advance(500);
    expect(b.current).toBe("half_open");
  });

  it("a released probe (client went away) frees the slot without deciding", () => {
    const { b, advance } = breaker(1, 10);
    b.failure(b.tryAcquire()!);
    advance(10);
    b.release(b.tryAcquire()!);
    expect(b.current).toBe("half_open");
    expect(b.tryAcquire()?.probe).toBe(true);
  });

  it("late outcomes of requests sent before it opened change nothing", () => {
    const { b, advance } = breaker(1, 1000);
    const early = b.tryAcquire()!;
    b.failure(b.tryAcquire()!);
    b.success(early);
    expect(b.current).toBe("open");
    advance(500);
    b.failure(early);
    advance(500);
    expect(b.current).toBe("half_open");
  });

  it("counts only the first outcome of a ticket", () => {
    const { b, advance } = breaker(1, 10);
    const t = b.tryAcquire()!;
    b.success(t);
    b.failure(t);
    b.release(t);
    expect(b.current).toBe("closed");
    b.failure(b.tryAcquire()!);
    advance(10);
    const probe = b.tryAcquire()!;
    b.failure(probe);
    b.release(probe); // a cleanup path must not free the slot of a decided probe
    expect(b.current).toBe("open");
  });

  it("recordFailure counts a stream that broke after a good start", () => {
    const { b } = breaker(2);
    b.success(b.tryAcquire()!);
    b.recordFailure();
    b.recordFailure();
    expect(b.current).toBe("open");
  });
});
