import { describe, expect, it } from "vitest";
import { Samples, median, percentile, spectrum, summarize } from "../../bench/stats.js";

const oneToHundred = Float64Array.from({ length: 100 }, (_, i) => i + 1);

describe("percentile (nearest rank)", () => {
  it("picks the smallest sample with at least p% of samples at or below it", () => {
    expect(percentile(oneToHundred, 50)).toBe(50);
    expect(percentile(oneToHundred, 90)).toBe(90);
    expect(percentile(oneToHundred, 99)).toBe(99);
    expect(percentile(oneToHundred, 99.9)).toBe(100);
    expect(percentile(oneToHundred, 100)).toBe(100);
    expect(percentile(oneToHundred, 0)).toBe(1);
    expect(percentile(oneToHundred, 0.5)).toBe(1);
    expect(percentile(oneToHundred, 1)).toBe(1);
    expect(percentile(oneToHundred, 1.01)).toBe(2);
  });

  it("never interpolates: every answer is an observed sample", () => {
    const sorted = [0.2, 0.4, 10];
    expect(percentile(sorted, 50)).toBe(0.4);
    expect(percentile(sorted, 66.6)).toBe(0.4);
    expect(percentile(sorted, 66.7)).toBe(10);
    expect(percentile([7], 0)).toBe(7);
    expect(percentile([7], 99.9)).toBe(7);
  });

  it("has no value without samples and rejects percentiles outside 0..100", () => {
    expect(percentile([], 50)).toBeNull();
    expect(() => percentile(oneToHundred, 101)).toThrow(RangeError);
    expect(() => percentile(oneToHundred, Number.NaN)).toThrow(RangeError);
  });
});

describe("summaries", () => {
  it("summarizes sorted samples, rounded to the microsecond", () => {
    expect(summarize(oneToHundred)).toEqual({
      count: 100,
      min: 1,
      p50: 50,
      p90: 90,
      p99: 99,
      p999: 100,
      max: 100,
      mean: 50.5,
    });
    expect(summarize([0.12345678]).p50).toBe(0.123);
    expect(summarize([])).toEqual({
      count: 0,
      min: null,
      p50: null,
      p90: null,
      p99: null,
      p999: null,
      max: null,
      mean: null,
    });
  });

  it("draws the percentile spectrum from min to max", () => {
    const s = spectrum(oneToHundred);
    expect(s[0]).toEqual([0, 1]);
    expect(s.find(([p]) => p === 50)).toEqual([50, 50]);
    expect(s.at(-1)).toEqual([100, 100]);
    expect(spectrum([])).toEqual([]);
  });

  it("takes the median of per-round throughputs", () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([])).toBeNull();
  });
});

describe("Samples", () => {
  it("grows past its initial capacity and sorts a copy", () => {
    const s = new Samples();
    for (let i = 5000; i > 0; i--) s.add(i);
    expect(s.count).toBe(5000);
    const sorted = s.sorted();
    expect(sorted[0]).toBe(1);
    expect(sorted[4999]).toBe(5000);
    expect(s.values()[0]).toBe(5000);
    const t = new Samples();
    t.add(0.5);
    t.addAll(s);
    expect(t.count).toBe(5001);
    expect(percentile(t.sorted(), 0)).toBe(0.5);
  });
});
