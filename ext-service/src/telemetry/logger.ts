import { pino, type Logger } from "pino";

export type { Logger };

/** Fields that must never reach a log line, whatever a caller passes. */
const REDACT_PATHS = [
  "authorization",
  "headers.authorization",
  "req.headers.authorization",
  "*.authorization",
  "token",
  "*.token",
  "secret",
  "*.secret",
];

let lastMs = NaN;
let lastTime = "";

/** pino's isoTime, formatted once per millisecond: at thousands of audit lines a second, most share one. */
function isoTime(): string {
  const now = Date.now();
  if (now !== lastMs) {
    lastMs = now;
    lastTime = `,"time":"${new Date(now).toISOString()}"`;
  }
  return lastTime;
}

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: "mcp-gateway" },
      redact: { paths: REDACT_PATHS, censor: "[redacted]" },
      timestamp: isoTime,
    },
    destination,
  );
}
