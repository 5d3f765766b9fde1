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
let lastSecond = NaN;
let secondPrefix = "";

/**
 * pino's isoTime field for the time `ms` (`,"time":"<Date#toISOString>"`), formatted once per
 * millisecond; a Date is built once per second: at a few hundred lines a second, most
 * milliseconds are new, their second is not.
 */
export function isoTimeAt(ms: number): string {
  if (ms !== lastMs) {
    lastMs = ms;
    const second = Math.floor(ms / 1000);
    if (second !== lastSecond) {
      lastSecond = second;
      // Everything up to the milliseconds: "YYYY-MM-DDTHH:mm:ss." (or a six-digit year).
      secondPrefix = `,"time":"${new Date(second * 1000).toISOString().slice(0, -4)}`;
    }
    const milli = ms - second * 1000;
    lastTime = `${secondPrefix}${milli < 10 ? "00" : milli < 100 ? "0" : ""}${milli}Z"`;
  }
  return lastTime;
}

function isoTime(): string {
  return isoTimeAt(Date.now());
}

/** Bytes of log lines queued for stdout before new lines are dropped (counted, warned on stderr). */
export const LOG_QUEUE_MAX_BYTES = 64 * 1024 * 1024;
const DROP_WARNING_INTERVAL_MS = 10_000;

let droppedLines = 0;

/** Log lines dropped since start because stdout's reader fell behind (a metric reads it). */
export function droppedLogLines(): number {
  return droppedLines;
}

/**
 * The gateway's log (audit records included) on stdout, written asynchronously: a line is queued
 * and written by a write the event loop does not wait for, several lines at a time under load.
 * A synchronous write blocks the request path on every line, and a pipe that is full (a log
 * collector that lags) blocks it for 100 ms per retry. Lines still queued are written before the
 * process exits: on a graceful stop (SIGTERM, SIGINT) as the event loop empties, on process.exit
 * synchronously. Only a hard kill (SIGKILL, a crash of the runtime) loses the lines still queued.
 * The queue is bounded (`maxQueuedBytes`): a reader that stops reading would otherwise grow the
 * gateway's memory until it dies, losing every queued line at once. Past the bound a line is
 * dropped, counted (`mcp_gateway_log_lines_dropped_total`) and, at most every ten seconds,
 * reported on stderr.
 */
export function stdoutDestination(maxQueuedBytes = LOG_QUEUE_MAX_BYTES): pino.DestinationStream {
  const destination = pino.destination({ dest: 1, sync: false, maxLength: maxQueuedBytes });
  let warnedAt = -Infinity;
  let droppedSinceWarning = 0;
  destination.on("drop", () => {
    droppedLines++;
    droppedSinceWarning++;
    const now = Date.now();
    if (now - warnedAt >= DROP_WARNING_INTERVAL_MS) {
      warnedAt = now;
      process.stderr.write(
        `mcp-gateway: ${droppedSinceWarning} log line(s) dropped: stdout's reader is not keeping up ` +
          `(more than ${maxQueuedBytes} bytes queued)\n`,
      );
      droppedSinceWarning = 0;
    }
  });
  return destination;
}

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: "mcp-gateway" },
      redact: { paths: REDACT_PATHS, censor: "[redacted]" },
      timestamp: isoTime,
    },
    destination ?? stdoutDestination(),
  );
}
