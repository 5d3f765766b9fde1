import { afterEach, describe, expect, it } from "vitest";
import { startHosted, type Hosted } from "../../bench/hosted.js";

const STALL = new URL("./fixtures/stall.ts", import.meta.url);
let hosted: Hosted | undefined;

afterEach(async () => {
  await hosted?.close();
  hosted = undefined;
  delete process.env.BENCH_LOOP_DELAY_MS;
});

/** Asks until the child has done its work (it starts 20 ms after it listens). */
async function settled(h: Hosted) {
  for (;;) {
    const gc = await h.gc();
    if ((gc.byKind?.major.count ?? 0) > 0 && (gc.byKind?.minor.count ?? 0) > 0) return gc;
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("bench host: pauses a hosted process reports", () => {
  it("splits garbage-collection pauses by kind: scavenges and mark-compacts", async () => {
    hosted = await startHosted(STALL, "serveStall", { blockMs: 0 }, "stall", ["--expose-gc"]);
    const gc = await settled(hosted);
    const kinds = gc.byKind!;
    expect(kinds.minor.count).toBeGreaterThan(0);
    expect(kinds.major.count).toBeGreaterThanOrEqual(1);
    const byKind = Object.values(kinds).reduce((n, p) => n + p.count, 0);
    expect(byKind).toBe(gc.count);
    expect(kinds.major.maxMs).toBeGreaterThan(0);
    expect(gc.loop).toBeUndefined(); // the loop's delay is opt-in
  });

  it("with BENCH_LOOP_DELAY_MS, reports the event loop's longest delay since the last ask", async () => {
    process.env.BENCH_LOOP_DELAY_MS = "1";
    hosted = await startHosted(STALL, "serveStall", { blockMs: 120 }, "stall", ["--expose-gc"]);
    // One ask, once the child's work is done (asking while it is blocked would read the histogram
    // before the late sample lands).
    await new Promise((r) => setTimeout(r, 1000));
    const gc = await settled(hosted);
    // The loop was blocked for 120 ms: the sampling timer due meanwhile ran at least that late.
    expect(gc.loop!.maxMs).toBeGreaterThanOrEqual(100);
    // Read and reset: a later interval without a stall reads no such delay.
    await new Promise((r) => setTimeout(r, 50));
    const next = await hosted.gc();
    expect(next.loop!.maxMs).toBeLessThan(100);
    expect(next.byKind!.major.maxMs).toBe(0);
  });
});
