import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { logTicks, niceCeil, niceFloor, renderChart } from "../../bench/chart.js";
import { ResultsSchema } from "../../bench/results.js";

describe("chart axes", () => {
  it("rounds the y range to 1-2-5 steps on a log scale", () => {
    expect(niceCeil(3.2)).toBe(5);
    expect(niceCeil(0.7)).toBe(1);
    expect(niceCeil(20)).toBe(20);
    expect(niceCeil(0)).toBe(1);
    expect(niceFloor(0.23)).toBe(0.1);
    expect(niceFloor(4)).toBe(1);
    expect(logTicks(0.1, 20)).toEqual([0.1, 0.2, 0.5, 1, 2, 5, 10, 20]);
  });
});

describe("results.svg", () => {
  const results = ResultsSchema.parse(
    JSON.parse(readFileSync(new URL("../../bench/results.json", import.meta.url), "utf8")),
  );
  const svg = renderChart(results);

  it("is one self-contained SVG document with no external references", () => {
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg.trimEnd().endsWith("</svg>")).toBe(true);
    expect(svg).not.toMatch(/href=|<script|@import|url\(/);
    // Every element opened is closed (no nesting beyond <g>).
    const opened = (svg.match(/<[a-z][^>]*>/g) ?? []).filter((tag) => !tag.endsWith("/>")).length;
    const closed = (svg.match(/<\/[a-z]+>/g) ?? []).length;
    expect(opened).toBe(closed);
  });

  it("draws one line per measured side and workload at the first rate, and lists every side", () => {
    const measured = results.latency.filter((l) => l.rate === results.settings.rates[0]);
    expect((svg.match(/<polyline /g) ?? []).length).toBe(measured.length);
    for (const s of results.sides) expect(svg).toContain(`${s.name}: `);
    for (const w of results.workloads) expect(svg).toContain(w.title);
  });

  it("is what the committed results.svg shows", () => {
    expect(readFileSync(new URL("../../bench/results.svg", import.meta.url), "utf8")).toBe(svg);
  });
});
