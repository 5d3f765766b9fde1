import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { isoTimeAt } from "../../ext-service/src/telemetry/logger.js";

/** The log line's time field is pino's isoTime, whatever the cache of the last second holds. */
const reference = (ms: number) => `,"time":"${new Date(ms).toISOString()}"`;

describe("log time (isoTimeAt)", () => {
  // Date's range: +-8.64e15 ms.
  const anyTime = fc.integer({ min: -8.64e15, max: 8.64e15 });
  const nearby = fc.integer({ min: 1_700_000_000_000, max: 1_700_000_005_000 });

  it("matches Date#toISOString for any sequence of times", () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(anyTime, nearby), { minLength: 1, maxLength: 20 }), (times) => {
        for (const ms of times) expect(isoTimeAt(ms)).toBe(reference(ms));
      }),
      { numRuns: 300 },
    );
  });

  it("the milliseconds of one second, and the edges of seconds", () => {
    const base = Date.UTC(2026, 10, 25, 0, 0, 59);
    for (const ms of [
      base - 1,
      base,
      base + 1,
      base + 9,
      base + 10,
      base + 99,
      base + 100,
      base + 999,
      base + 1000,
    ]) {
      expect(isoTimeAt(ms)).toBe(reference(ms));
    }
    for (const ms of [-1, 0, -1000, -1001, 253402300799999, 253402300800000]) {
      expect(isoTimeAt(ms)).toBe(reference(ms));
    }
  });
});
