import { performance } from "node:perf_hooks";
import { Samples } from "./stats.js";
import { sleepUntil } from "./ticker.js";

/**
 * The two load shapes. Both take the clock as a parameter so their accounting can be tested
 * without real time.
 *
 * - openLoop: requests leave on a fixed schedule whatever the answers do (as independent agents
 *   would send them). Latency is counted from the *scheduled* send time, so a stall delays every
 *   request queued behind it and shows up in the percentiles (no coordinated omission).
 * - closedLoop: N workers each send the next request when the previous answer arrived: the
 *   throughput at saturation.
 */

export interface Clock {
  /** Milliseconds, monotonic. */
  now(): number;
  /** Resolves after `ms`, or at once when `signal` aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** Sleeps shorter than this use the precise helper thread; longer ones (drains) use a timer. */
const PRECISE_BELOW_MS = 50;

export const realClock: Clock = {
  now: () => performance.now(),
  sleep: (ms, signal) =>
    ms < PRECISE_BELOW_MS && !signal
      ? sleepUntil(performance.now() + Math.max(0, ms))
      : new Promise((resolve) => {
          const timer = setTimeout(resolve, Math.max(0, ms));
          signal?.addEventListener(
            "abort",
            () => {
              clearTimeout(timer);
              resolve();
            },
            { once: true },
          );
        }),
};

/** Waits for `work` or for `ms`, whichever comes first, without leaving a timer behind. */
async function raceDeadline(clock: Clock, work: Promise<unknown>, ms: number): Promise<void> {
  const stop = new AbortController();
  try {
    await Promise.race([work, clock.sleep(ms, stop.signal)]);
  } finally {
    stop.abort();
  }
}

/** One request/response (or one Envoy decision); rejects when the answer is wrong or missing. */
export type Operation = () => Promise<void>;

export interface OpenLoopOptions {
  ratePerSecond: number;
  durationMs: number;
  /** How long to wait for answers still in flight after the last send. */
  drainMs: number;
  clock?: Clock;
}

export interface OpenLoopResult {
  /** Requests the schedule called for: floor(rate x duration). */
  scheduled: number;
  sent: number;
  ok: number;
  errors: number;
  /** Still unanswered when the drain deadline passed. */
  timedOut: number;
  /** Scheduled send time to complete answer, successful requests only. */
  latency: Samples;
  /** Actual send time to complete answer (what a naive load generator would report). */
  service: Samples;
  /**
   * Delay between each request's scheduled and actual send: the load generator's own timer
   * lateness and event-loop lag, included in `latency` and equal for every side.
   */
  sendLag: Samples;
  maxInflight: number;
  firstError: string | undefined;
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export async function openLoop(op: Operation, opts: OpenLoopOptions): Promise<OpenLoopResult> {
  const clock = opts.clock ?? realClock;
  const interval = 1000 / opts.ratePerSecond;
  const total = Math.floor((opts.ratePerSecond * opts.durationMs) / 1000);
  const result: OpenLoopResult = {
    scheduled: total,
    sent: 0,
    ok: 0,
    errors: 0,
    timedOut: 0,
    latency: new Samples(),
    service: new Samples(),
    sendLag: new Samples(),
    maxInflight: 0,
    firstError: undefined,
  };
  let inflight = 0;
  let closed = false;
  let idle: (() => void) | undefined;

  const settle = () => {
    inflight--;
    if (inflight === 0 && idle) idle();
  };
  const fire = (scheduledAt: number, sentAt: number) => {
    result.sent++;
    inflight++;
    if (inflight > result.maxInflight) result.maxInflight = inflight;
    result.sendLag.add(sentAt - scheduledAt);
    let pending: Promise<void>;
    try {
      pending = op();
    } catch (err) {
      pending = Promise.reject(err);
    }
    pending.then(
      () => {
        if (closed) return;
        const done = clock.now();
        result.ok++;
        result.latency.add(done - scheduledAt);
        result.service.add(done - sentAt);
        settle();
      },
      (err: unknown) => {
        if (closed) return;
        result.errors++;
        result.firstError ??= describe(err);
        settle();
      },
    );
  };

  const start = clock.now();
  let next = 0;
  while (next < total) {
    const now = clock.now();
    // Everything due is sent now; if the loop fell behind, late requests keep their schedule.
    while (next < total && start + next * interval <= now) {
      fire(start + next * interval, now);
      next++;
    }
    if (next < total) await clock.sleep(start + next * interval - clock.now());
  }

  if (inflight > 0) {
    const drained = new Promise<void>((resolve) => (idle = resolve));
    await raceDeadline(clock, drained, opts.drainMs);
  }
  closed = true;
  result.timedOut = inflight;
  return result;
}

export interface ClosedLoopOptions {
  concurrency: number;
  durationMs: number;
  /** Extra time allowed for the requests in flight at the deadline. */
  drainMs: number;
  clock?: Clock;
}

export interface ClosedLoopResult {
  ok: number;
  errors: number;
  /** Workers still waiting for an answer when the drain deadline passed. */
  stuck: number;
  /** From start until the last worker stopped. */
  elapsedMs: number;
  /** Successful requests per second over elapsedMs. */
  perSecond: number;
  latency: Samples;
  firstError: string | undefined;
}

export async function closedLoop(op: Operation, opts: ClosedLoopOptions): Promise<ClosedLoopResult> {
  const clock = opts.clock ?? realClock;
  const latency = new Samples();
  let ok = 0;
  let errors = 0;
  let firstError: string | undefined;
  let closed = false;
  let running = 0;
  const start = clock.now();
  const deadline = start + opts.durationMs;
  let end = start;

  const worker = async () => {
    running++;
    while (!closed && clock.now() < deadline) {
      const t0 = clock.now();
      try {
        await op();
        if (closed) break;
        ok++;
        latency.add(clock.now() - t0);
      } catch (err) {
        if (closed) break;
        errors++;
        firstError ??= describe(err);
      }
    }
    running--;
    if (!closed) end = Math.max(end, clock.now());
  };

  const workers = Promise.all(Array.from({ length: opts.concurrency }, worker));
  await raceDeadline(clock, workers, opts.durationMs + opts.drainMs);
  const stuck = running;
  if (stuck > 0) end = clock.now();
  closed = true;
  const elapsedMs = end - start;
  return {
    ok,
    errors,
    stuck,
    elapsedMs,
    perSecond: elapsedMs > 0 ? (ok * 1000) / elapsedMs : 0,
    latency,
    firstError,
  };
}
