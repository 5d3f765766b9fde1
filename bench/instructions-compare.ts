/**
 * The comparison of a run of `npm run bench:instructions` (bench/instructions.ts) with the
 * committed baseline, bench/instructions-baseline.json.
 */

export interface InstructionResults {
  schema: "mcp-gateway-instructions/1";
  node: string;
  valgrind: string;
  nodeFlags: string[];
  commit: string | null;
  /** Instructions per run of each path: the mean over repeats, and max minus min over repeats. */
  paths: Record<
    string,
    {
      iterations: number;
      warmup: number;
      instructions: number;
      spread: number;
      title: string;
      /**
       * Of `instructions`, those TurboFan spent compiling during the counted runs (per run, mean
       * over repeats; callgrind_annotate's inclusive count of Runtime_CompileOptimized). Work the
       * JIT does once, not the path's per-run cost; absent in counts made before it was read.
       */
      turbofan?: number;
      /** Bytes allocated per run (heap and Buffers), when no collection ran while it was counted. */
      allocatedBytes?: number;
    }
  >;
}

/**
 * V8's optimizing compilers, entered from the runtime: with `--predictable` TurboFan compiles on
 * the main thread, so a function that becomes hot during a path's counted runs is compiled inside
 * its count (on the gRPC and edge paths, a third or more of the count). Not recursive.
 */
const COMPILE_FUNCTIONS = /^v8::internal::Runtime_CompileOptimized(?:OSR)?(?:_[A-Za-z]+)?\(/;

/** The sum of COMPILE_FUNCTIONS' inclusive counts in callgrind_annotate's output. */
export function turbofanFromAnnotation(annotation: string): number {
  let total = 0;
  for (const line of annotation.split("\n")) {
    const m = /^\s*([\d,]+)\s+\([^)]*\)\s+[^:]*:(.*)$/.exec(line);
    if (m && COMPILE_FUNCTIONS.test(m[2]!)) total += Number(m[1]!.replace(/,/g, ""));
  }
  return total;
}

export function formatCount(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join("  ")
      .trimEnd();
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}

/** A change this small (percent) is "same" even when the repeats agreed more closely. */
const SAME_BELOW_PERCENT = 0.5;

/**
 * The comparison table; `failed` lists the paths that cost more than the baseline by more than
 * `thresholdPercent` (and more than the spread of either run). Counts from another Node version
 * or other flags are not comparable: then nothing fails and the table says why.
 */
export function compareInstructions(
  current: InstructionResults,
  baseline: InstructionResults | undefined,
  thresholdPercent: number,
): { text: string; failed: string[] } {
  const failed: string[] = [];
  const comparable =
    baseline !== undefined &&
    baseline.node === current.node &&
    baseline.nodeFlags.join(" ") === current.nodeFlags.join(" ");
  const rows = Object.entries(current.paths).map(([id, p]) => {
    const base = baseline?.paths[id];
    const change = base ? ((p.instructions - base.instructions) / base.instructions) * 100 : undefined;
    // A change inside what repeats of the same run differ by is no change.
    const noise = base ? (Math.max(p.spread, base.spread) / base.instructions) * 100 : 0;
    let status = "new";
    if (change !== undefined) {
      if (Math.abs(change) <= Math.max(noise, SAME_BELOW_PERCENT)) status = "same";
      else if (change > thresholdPercent) {
        status = comparable ? "REGRESSED" : "worse (not comparable)";
        if (comparable) failed.push(id);
      } else status = change < 0 ? "better" : "worse (under threshold)";
    }
    return [
      id,
      formatCount(p.instructions),
      formatCount(p.spread),
      base ? formatCount(base.instructions) : "-",
      change === undefined ? "-" : `${change >= 0 ? "+" : ""}${change.toFixed(2)}%`,
      status,
      p.allocatedBytes === undefined ? "-" : (p.allocatedBytes / 1024).toFixed(1),
    ];
  });
  let text = table(
    ["path", "instructions/run", "spread", "baseline", "change", "status", "KB alloc/run"],
    rows,
  );
  const ratios = twinRatios(current, NOOP_SUFFIX, [
    "gRPC path",
    "ext-service",
    "do-nothing",
    "added",
    "x do-nothing",
  ]);
  if (ratios) text += `\n\n${ratios}`;
  const bare = twinRatios(current, BARE_SUFFIX, ["HTTP path", "edge", "bare proxy", "added", "x bare proxy"]);
  if (bare) text += `\n\n${bare}`;
  const compiled = compileTable(current);
  if (compiled) text += `\n\n${compiled}`;
  if (baseline && !comparable) {
    text +=
      `\nthe baseline was counted on node ${baseline.node} (${baseline.nodeFlags.join(" ")}), this run on ` +
      `node ${current.node} (${current.nodeFlags.join(" ")}): not comparable, nothing fails`;
  }
  return { text, failed };
}

/** The do-nothing server's twin of a gRPC path is named `<path>_noop`. */
const NOOP_SUFFIX = "_noop";
/** The bare proxy's twin of an HTTP path through the edge is named `<path>_bare`. */
const BARE_SUFFIX = "_bare";

/**
 * Each path against its floor, the twin named `<path><suffix>`: instructions per exchange as a
 * ratio (issue 16's targets: the ext-service at most 1.3 times the do-nothing gRPC server, the
 * edge at most 1.5 times the bare proxy), what the path adds, and the same for the allocation.
 */
function twinRatios(current: InstructionResults, suffix: string, header: string[]): string | undefined {
  const rows: string[][] = [];
  for (const [id, p] of Object.entries(current.paths)) {
    const twin = current.paths[id + suffix];
    if (!twin) continue;
    const kb = (n: number | undefined) => (n === undefined ? "-" : (n / 1024).toFixed(1));
    rows.push([
      id,
      formatCount(p.instructions),
      formatCount(twin.instructions),
      formatCount(p.instructions - twin.instructions),
      (p.instructions / twin.instructions).toFixed(2),
      kb(p.allocatedBytes),
      kb(twin.allocatedBytes),
      p.allocatedBytes !== undefined && twin.allocatedBytes !== undefined
        ? (p.allocatedBytes / twin.allocatedBytes).toFixed(2)
        : "-",
    ]);
  }
  if (rows.length === 0) return undefined;
  return table([...header, "KB alloc", "KB alloc twin", "x alloc"], rows);
}

/**
 * The counts without TurboFan's compiles in the counted runs (instructions - turbofan), and each
 * path against its twin on that basis: nearer the steady state, where the JIT has compiled what
 * it compiles. Still a count with baseline (Sparkplug) code and inline-cache misses in it; and
 * what TurboFan compiles, and when, moves between builds by more than small changes do, which is
 * why this is printed beside the count, not instead of it.
 */
export function compileTable(current: InstructionResults): string | undefined {
  const rows: string[][] = [];
  const without = (p: { instructions: number; turbofan?: number }) => p.instructions - (p.turbofan ?? 0);
  for (const [id, p] of Object.entries(current.paths)) {
    if (p.turbofan === undefined) continue;
    const twin = current.paths[id + NOOP_SUFFIX] ?? current.paths[id + BARE_SUFFIX];
    rows.push([
      id,
      formatCount(p.instructions),
      formatCount(p.turbofan),
      `${((p.turbofan / p.instructions) * 100).toFixed(1)}%`,
      formatCount(without(p)),
      twin?.turbofan !== undefined ? (without(p) / without(twin)).toFixed(2) : "-",
    ]);
  }
  if (rows.length === 0) return undefined;
  return table(
    ["path", "instructions/run", "TurboFan/run", "share", "without TurboFan", "x twin without"],
    rows,
  );
}
