/**
 * A gateway.yaml duration (seconds as a number, or "250ms", "30s", "5m", "2h") in milliseconds.
 * Plain model code below both config/ (which validates durations) and policy/ (which uses them),
 * so policy/ need not import config/.
 */
export function durationMs(value: number | string): number {
  if (typeof value === "number") return value * 1000;
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(value);
  if (!match) throw new Error(`invalid duration '${value}'`);
  const n = Number(match[1]);
  const unit = match[2];
  return unit === "ms" ? n : unit === "s" ? n * 1000 : unit === "m" ? n * 60_000 : n * 3_600_000;
}
