import { describe, expect, it } from "vitest";
import { RateLimiter } from "../../ext-service/src/state/token-bucket.js";

describe("RateLimiter (token bucket per agent)", () => {
  it("allows a burst, then refuses with the seconds until the next token", () => {
    let now = 0;
    const rl = new RateLimiter(2, 3, () => now);
    expect([rl.take("a"), rl.take("a"), rl.take("a")]).toEqual([0, 0, 0]);
    expect(rl.take("a")).toBe(1);
    now += 500; // one token back at 2/s
    expect(rl.take("a")).toBe(0);
    expect(rl.take("a")).toBe(1);
  });

  it("keeps agents apart", () => {
    const rl = new RateLimiter(1, 1, () => 0);
    expect(rl.take("a")).toBe(0);
    expect(rl.take("a")).toBe(1);
    expect(rl.take("b")).toBe(0);
  });

  it("rounds a slow refill up to whole seconds for Retry-After", () => {
    const rl = new RateLimiter(0.1, 1, () => 0);
    rl.take("a");
    expect(rl.take("a")).toBe(10);
  });

  it("stays bounded: idle buckets are swept, then the oldest is dropped", () => {
    let now = 0;
    const rl = new RateLimiter(1, 1, () => now, 3);
    for (const k of ["a", "b", "c"]) rl.take(k);
    now += 5_000; // all full again
    rl.take("d");
    expect(rl.size).toBe(1);
    for (const k of ["e", "f"]) rl.take(k);
    rl.take("g"); // none idle: the oldest goes
    expect(rl.size).toBe(3);
  });
});
