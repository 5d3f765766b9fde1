import type { GatewayEngine } from "../config/compile.js";
import { durationMs } from "../config/schema.js";

// The deadline of a fan-out: what the broker asks every server of a view at once for one answer
// (initialize, the lists, the capabilities of a 2026-07-28 request, a listen's setup,
// logging/setLevel). A server that has not answered by then is left out of that answer; the
// others' answers do not wait for it. A call to one server is no fan-out: it waits for its server.

/** One server's part of a fan-out: settled in time, or still running at the deadline. */
export type InTime<T> = PromiseSettledResult<T> | { status: "late" };

/** How long a fan-out waits (broker.fanoutTimeout); Infinity when it is 0 (no deadline of its own). */
export function fanoutMs(engine: GatewayEngine): number {
  const ms = durationMs(engine.config.broker.fanoutTimeout);
  return ms > 0 ? ms : Infinity;
}

/**
 * Waits for `work` until every part settled or `deadlineMs` passed, whichever comes first. A part
 * still running then is `late`: it goes on (the caller handles its outcome with `onLate`, which
 * also keeps a late rejection from going unhandled), and the answer is given without it.
 */
export async function fanOut<T>(
  work: readonly Promise<T>[],
  deadlineMs: number,
  onLate: (index: number, late: Promise<T>) => void,
): Promise<InTime<T>[]> {
  const settled: (PromiseSettledResult<T> | undefined)[] = work.map(() => undefined);
  const all = Promise.all(
    work.map((p, i) =>
      p.then(
        (value) => void (settled[i] = { status: "fulfilled", value }),
        (reason: unknown) => void (settled[i] = { status: "rejected", reason }),
      ),
    ),
  );
  let timer: NodeJS.Timeout | undefined;
  if (Number.isFinite(deadlineMs)) {
    await Promise.race([
      all,
      new Promise((resolve) => (timer = setTimeout(resolve, Math.max(0, deadlineMs)))),
    ]);
    clearTimeout(timer);
  } else await all;
  return settled.map((result, i) => {
    if (result !== undefined) return result;
    onLate(i, work[i]!);
    return { status: "late" as const };
  });
}
