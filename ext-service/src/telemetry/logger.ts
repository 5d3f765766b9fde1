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
 * How long a log line may wait for the next ones, so that they share one write. Each write of the
 * asynchronous destination is handed to a libuv worker thread and its completion back to the
 * event loop: at a few hundred requests a second, one audit line per request, that hand-off per
 * line cost the edge about three context switches and three futex calls per request, more than
 * the line itself (docs/BENCHMARKS.md, "The edge's CPU against the bare proxy's").
 */
export const LOG_FLUSH_DELAY_MS = 10;
/** Lines queued up to this many bytes wait for the delay; past it they are written at once. */
const LOG_BATCH_BYTES = 8 * 1024;

/**
 * Lines written by exit hooks (the audit trail's waiting records) come after pino's own flush on
 * exit, when no timer runs any more: the destinations write them at once.
 */
let exiting = false;
process.once("exit", () => (exiting = true));

/**
 * The gateway's log (audit records included) on stdout, written asynchronously: a line is queued
 * and written by a write the event loop does not wait for, at most LOG_FLUSH_DELAY_MS later,
 * together with the lines queued meanwhile. A synchronous write blocks the request path on every
 * line, and a pipe that is full (a log collector that lags) blocks it for 100 ms per retry. Lines
 * still queued are written before the process exits: on a graceful stop (SIGTERM, SIGINT) as the
 * event loop empties, on process.exit synchronously. Only a hard kill (SIGKILL, a crash of the
 * runtime) loses the lines still queued (at most the last LOG_FLUSH_DELAY_MS of them, unless the
 * reader lags). The queue is bounded (`maxQueuedBytes`): a reader that stops reading would
 * otherwise grow the gateway's memory until it dies, losing every queued line at once. Past the
 * bound a line is dropped, counted (`mcp_gateway_log_lines_dropped_total`) and, at most every ten
 * seconds, reported on stderr.
 */
export function stdoutDestination(maxQueuedBytes = LOG_QUEUE_MAX_BYTES): pino.DestinationStream {
  return logDestination(1, maxQueuedBytes);
}

/** As stdoutDestination, to a file descriptor or path (the bench writes to /dev/null). */
export function logDestination(
  dest: number | string,
  maxQueuedBytes = LOG_QUEUE_MAX_BYTES,
): pino.DestinationStream {
  const destination = pino.destination({
    dest,
    sync: false,
    maxLength: maxQueuedBytes,
    minLength: Math.min(LOG_BATCH_BYTES, Math.floor(maxQueuedBytes / 2)),
  });
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
  // One timer, armed by the first line after each flush; unref'd, so a quiet gateway is not
  // woken and an exiting one is not held (pino writes what is queued on exit). sonic-boom (the
  // version package-lock.json pins) keeps what it has queued in `_len` and whether a write is in
  // flight in `_writing`: a flush while a write is in flight does nothing, and lines queued
  // meanwhile wait for the next write, so the end of that write ('drain') re-arms the timer.
  const queueState = destination as unknown as { _len?: number; _writing?: boolean; destroyed?: boolean };
  let flushTimer: NodeJS.Timeout | undefined;
  let armed = false;
  const arm = () => {
    armed = true;
    if (flushTimer) flushTimer.refresh();
    else flushTimer = setTimeout(flushQueued, LOG_FLUSH_DELAY_MS).unref();
  };
  const flushQueued = () => {
    armed = false;
    // Ended (pino's exit hook, or EPIPE): flush() would throw from a timer.
    if (queueState.destroyed || queueState._writing || queueState._len === 0) return;
    destination.flush();
  };
  destination.on("drain", () => {
    if (!armed && queueState._len !== 0) arm();
  });
  return {
    write(line: string): boolean {
      // Looked up at each line: pino replaces it with a no-op once stdout's reader is gone (EPIPE).
      const accepted = destination.write(line);
      if (exiting) {
        try {
          destination.flushSync();
        } catch {
          // ended or not open: nothing more can be written
        }
      } else if (!armed) arm();
      return accepted;
    },
    flush: (cb?: (err?: Error) => void) => destination.flush(cb),
    flushSync: () => destination.flushSync(),
  } as pino.DestinationStream;
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
