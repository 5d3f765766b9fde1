/**
 * Latency statistics: exact percentiles over all samples (no histogram buckets), so a reported
 * p99 is a latency that was actually observed.
 */

export interface LatencySummary {
  count: number;
  min: number | null;
  p50: number | null;
  p90: number | null;
  p99: number | null;
  p999: number | null;
  max: number | null;
  mean: number | null;
}

/** Percentiles drawn in the chart; 100 is the maximum. */
export const SPECTRUM_PERCENTILES = [0, 10, 25, 50, 75, 90, 95, 97.5, 99, 99.5, 99.9, 100] as const;

/** Growable list of samples (milliseconds), kept as a typed array to stay cheap at 100k samples. */
export class Samples {
  private data = new Float64Array(1024);
  private n = 0;

  get count(): number {
    return this.n;
  }

  add(value: number): void {
    if (this.n === this.data.length) {
      const bigger = new Float64Array(this.data.length * 2);
      bigger.set(this.data);
      this.data = bigger;
    }
    this.data[this.n++] = value;
  }

  addAll(other: Samples): void {
    for (const v of other.values()) this.add(v);
  }

  values(): Float64Array {
    return this.data.subarray(0, this.n);
  }

  /** A sorted copy. */
  sorted(): Float64Array {
    return Float64Array.from(this.values()).sort();
  }
}

/**
 * Nearest-rank percentile of an ascending array: the smallest sample such that at least p% of
 * samples are less than or equal to it. p=0 is the minimum, p=100 the maximum.
 */
export function percentile(sorted: ArrayLike<number>, p: number): number | null {
  const n = sorted.length;
  if (n === 0) return null;
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile ${p} is outside 0..100`);
  if (p === 0) return sorted[0]!;
  const rank = Math.ceil((p / 100) * n);
  return sorted[Math.min(n, Math.max(1, rank)) - 1]!;
}

/** Rounds to the microsecond, which is finer than anything these measurements resolve. */
export function roundMs(value: number | null): number | null {
  return value === null ? null : Math.round(value * 1000) / 1000;
}

export function summarize(sorted: ArrayLike<number>): LatencySummary {
  const n = sorted.length;
  let sum = 0;
  for (let i = 0; i < n; i++) sum += sorted[i]!;
  return {
    count: n,
    min: roundMs(percentile(sorted, 0)),
    p50: roundMs(percentile(sorted, 50)),
    p90: roundMs(percentile(sorted, 90)),
    p99: roundMs(percentile(sorted, 99)),
    p999: roundMs(percentile(sorted, 99.9)),
    max: roundMs(percentile(sorted, 100)),
    mean: n === 0 ? null : roundMs(sum / n),
  };
}

/** [percentile, latency ms] pairs for the chart. */
export function spectrum(sorted: ArrayLike<number>): [number, number][] {
  if (sorted.length === 0) return [];
  return SPECTRUM_PERCENTILES.map((p) => [p, roundMs(percentile(sorted, p))!]);
}

/** Median of a few numbers (throughput per round), averaging the middle pair. */
export function median(values: readonly number[]): number | null {
  if (values.length === 0) return null;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}
