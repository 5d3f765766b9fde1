import { performance } from "node:perf_hooks";
import { Worker } from "node:worker_threads";

/**
 * Sub-millisecond sleeps without spinning. Node timers have millisecond granularity, so a request
 * due at t leaves on average half a millisecond late; with latency counted from the scheduled
 * time, that lag would sit inside every sub-millisecond number. This helper thread blocks in
 * Atomics.wait (a futex, no CPU) until the exact time and then wakes the main thread, which
 * brings the median lag to about a tenth of a millisecond.
 *
 * One sleeper at a time (the open-loop scheduler); requests are served in order.
 */

const WORKER_SOURCE = `
const { parentPort } = require("node:worker_threads");
const { performance } = require("node:perf_hooks");
const cell = new Int32Array(new SharedArrayBuffer(4));
parentPort.on("message", (at) => {
  for (;;) {
    const left = at - (performance.timeOrigin + performance.now());
    if (left <= 0) break;
    Atomics.wait(cell, 0, 0, left);
  }
  parentPort.postMessage(0);
});
`;

let worker: Worker | undefined;
const waiters: (() => void)[] = [];

function ticker(): Worker {
  if (worker) return worker;
  const w = new Worker(WORKER_SOURCE, { eval: true });
  w.on("message", () => {
    waiters.shift()?.();
    // Keep the process alive only while someone sleeps.
    if (waiters.length === 0) w.unref();
  });
  w.on("error", () => {
    // Fall back to timers for whoever waits; a new helper is started on next use.
    worker = undefined;
    for (const wake of waiters.splice(0)) wake();
  });
  w.unref();
  worker = w;
  return w;
}

/** Resolves at `performance.now() === at` (within the thread wake-up time). */
export function sleepUntil(at: number): Promise<void> {
  return new Promise((resolve) => {
    waiters.push(resolve);
    const w = ticker();
    w.ref();
    w.postMessage(performance.timeOrigin + at);
  });
}
