import type { BenchResults } from "./results.js";

/**
 * A self-contained SVG: one panel per workload, latency by percentile (the x axis stretches the
 * tail: 0, 50, 90, 99, 99.9) at the first open-loop rate, one line per side.
 */

const COLORS: Record<string, string> = {
  direct: "#1f77b4",
  edge: "#d62728",
  "ext-service": "#2ca02c",
  noop: "#7f7f7f",
};
const FALLBACK_COLORS = ["#9467bd", "#8c564b", "#e377c2", "#bcbd22"];

const PANEL_W = 480;
const PANEL_H = 300;
const M = { left: 56, right: 30, top: 34, bottom: 40 };
const X_TICKS = [0, 50, 90, 99, 99.9];
const MAX_X = 3; // log10(1 / (1 - 0.999))

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

function xOf(p: number): number {
  return Math.log10(100 / (100 - p));
}

/** A round upper bound for the y axis: 1, 2 or 5 times a power of ten. */
export function niceCeil(v: number): number {
  if (!(v > 0)) return 1;
  const pow = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * pow >= v) return m * pow;
  return 10 * pow;
}

/** The power of ten at or below v. */
export function niceFloor(v: number): number {
  return 10 ** Math.floor(Math.log10(v));
}

/** 1, 2, 5 times each power of ten between lo and hi. */
export function logTicks(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let d = lo; d <= hi * 1.0001; d *= 10) {
    for (const m of [1, 2, 5]) if (d * m <= hi * 1.0001) out.push(+(d * m).toPrecision(3));
  }
  return out;
}

function color(side: string, i: number): string {
  return COLORS[side] ?? FALLBACK_COLORS[i % FALLBACK_COLORS.length]!;
}

export function renderChart(r: BenchResults): string {
  const rate = r.settings.rates[0]!;
  const workloads = r.workloads;
  const cols = 2;
  const rows = Math.ceil(workloads.length / cols);
  const sides = r.sides;
  const legendH = 26 + 18 * sides.length;
  const width = cols * PANEL_W;
  const top = 74;
  const height = top + rows * PANEL_H + legendH;
  const o: string[] = [];
  o.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="16" y="24" font-size="16" font-weight="bold">mcp-gateway: latency by percentile at ${rate} requests/s (open loop)</text>`,
    `<text x="16" y="44" fill="#555">${esc(
      `${r.finishedAt.slice(0, 19)}Z, ${r.machine.cpus} x ${r.machine.cpuModel}, Node ${r.machine.node}, ` +
        `${r.settings.rounds} round(s) of ${r.settings.latencySeconds} s per side${r.settings.quick ? " (QUICK smoke run)" : ""}.`,
    )}</text>`,
    `<text x="16" y="62" fill="#555">Absolute numbers vary by machine; compare the lines. Latency counts from the scheduled send time.</text>`,
  );

  workloads.forEach((w, wi) => {
    const ox = (wi % cols) * PANEL_W;
    const oy = top + Math.floor(wi / cols) * PANEL_H;
    const plotW = PANEL_W - M.left - M.right;
    const plotH = PANEL_H - M.top - M.bottom;
    const lines = r.latency.filter(
      (l) => l.workload === w.id && (l.load ?? `${l.rate}/s`) === `${rate}/s` && l.spectrum.length > 0,
    );
    // Log scale: the median region (tenths of a ms) and the tail (tens of ms) both stay readable.
    const shown = lines.flatMap((l) => l.spectrum.filter(([p]) => p <= 99.9).map(([, v]) => v));
    const ymin = niceFloor(Math.min(...shown.filter((v) => v > 0), 1));
    const ymax = Math.max(niceCeil(Math.max(...shown, 0)), ymin * 10);
    const span = Math.log10(ymax) - Math.log10(ymin);
    const px = (p: number) => ox + M.left + (xOf(p) / MAX_X) * plotW;
    const py = (v: number) =>
      oy + M.top + plotH - ((Math.log10(Math.max(v, ymin)) - Math.log10(ymin)) / span) * plotH;
    o.push(`<g>`);
    o.push(`<text x="${ox + M.left}" y="${oy + 20}" font-weight="bold">${esc(w.title)}</text>`);
    // Axes and grid.
    for (const v of logTicks(ymin, ymax)) {
      const y = py(v);
      o.push(
        `<line x1="${ox + M.left}" x2="${ox + M.left + plotW}" y1="${y}" y2="${y}" stroke="#e5e5e5"/>`,
        `<text x="${ox + M.left - 6}" y="${y + 4}" text-anchor="end" fill="#555">${+v.toPrecision(3)}</text>`,
      );
    }
    for (const p of X_TICKS) {
      const x = px(p);
      o.push(
        `<line x1="${x}" x2="${x}" y1="${oy + M.top}" y2="${oy + M.top + plotH}" stroke="#e5e5e5"/>`,
        `<text x="${x}" y="${oy + M.top + plotH + 16}" text-anchor="middle" fill="#555">p${p}</text>`,
      );
    }
    o.push(
      `<text x="${ox + 14}" y="${oy + M.top + plotH / 2}" transform="rotate(-90 ${ox + 14} ${oy + M.top + plotH / 2})" text-anchor="middle" fill="#555">ms (log)</text>`,
      `<rect x="${ox + M.left}" y="${oy + M.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#999"/>`,
    );
    // One line per side; the last visible point is p99.9.
    lines.forEach((l) => {
      const si = sides.findIndex((s) => s.name === l.side);
      const c = color(l.side, si);
      const pts = l.spectrum
        .filter(([p]) => p <= 99.9)
        .map(([p, v]) => `${px(p).toFixed(1)},${py(v).toFixed(1)}`);
      o.push(`<polyline points="${pts.join(" ")}" fill="none" stroke="${c}" stroke-width="2"/>`);
      for (const pt of pts) {
        const [x, y] = pt.split(",");
        o.push(`<circle cx="${x}" cy="${y}" r="2.5" fill="${c}"/>`);
      }
    });
    // Per-panel key: p50 and p99 of each side.
    lines.forEach((l, i) => {
      const si = sides.findIndex((s) => s.name === l.side);
      o.push(
        `<text x="${ox + M.left + 8}" y="${oy + M.top + 16 + i * 15}" fill="${color(l.side, si)}">${esc(
          `${l.side}: p50 ${l.latencyMs.p50} ms, p99 ${l.latencyMs.p99} ms`,
        )}</text>`,
      );
    });
    o.push(`</g>`);
  });

  const ly = top + rows * PANEL_H + 14;
  sides.forEach((s, i) => {
    const y = ly + i * 18;
    const c = s.status === "measured" ? color(s.name, i) : "#bbb";
    // Why a side was not measured is in results.json and on stdout; the legend stays short.
    const text =
      s.status === "measured"
        ? `${s.name}: ${s.description}`
        : `${s.name}: ${s.status === "skipped" ? "pending, not in this build yet" : "failed, see results.json"} (${s.description})`;
    o.push(
      `<line x1="16" x2="40" y1="${y}" y2="${y}" stroke="${c}" stroke-width="3"/>`,
      `<text x="48" y="${y + 4}" fill="${s.status === "measured" ? "#222" : "#888"}">${esc(text)}</text>`,
    );
  });
  o.push(`</svg>`);
  return o.join("\n") + "\n";
}
