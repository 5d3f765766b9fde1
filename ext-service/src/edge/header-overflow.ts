import { STATUS_CODES } from "node:http";
import type { Socket } from "node:net";

/** Sockets already answered for a header overflow: Node reports the overflow again per chunk. */
const ANSWERED = Symbol("header overflow answered");
type OverflowSocket = Socket & { [ANSWERED]?: true };

/**
 * How long a client still writing oversized headers may keep writing after its 431 (ms). Enough
 * for any header block a client would send; a client that keeps writing after that is cut off.
 */
export const OVERFLOW_DRAIN_MS = 2_000;

/**
 * Answers a request whose headers overflowed the HTTP parser (Node's HPE_HEADER_OVERFLOW, in a
 * server's `clientError` listener) with `status` and `body`, once per connection, and only then
 * closes it. The connection is not destroyed at once: closing a socket with bytes left unread
 * makes the kernel send a reset, and a client still writing its headers then reads ECONNRESET
 * instead of the answer. Node keeps feeding what arrives to the failed parser, which drops it
 * and reports the overflow again: those reports come back here and answer nothing. The socket
 * closes when the client has finished (its FIN after reading `connection: close`), or after
 * OVERFLOW_DRAIN_MS. Returns false when the socket had been answered already.
 */
export function answerHeaderOverflow(
  socket: Socket,
  status: number,
  headers: Readonly<Record<string, string>>,
  body: string,
): boolean {
  const s = socket as OverflowSocket;
  if (s[ANSWERED]) return false;
  s[ANSWERED] = true;
  const lines = [`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ""}`];
  for (const [name, value] of Object.entries(headers))
    if (name !== "content-length" && name !== "connection") lines.push(`${name}: ${value}`);
  lines.push(`content-length: ${Buffer.byteLength(body)}`, "connection: close", "", body);
  if (socket.writable) socket.end(lines.join("\r\n"));
  const timer = setTimeout(() => socket.destroy(), OVERFLOW_DRAIN_MS);
  timer.unref();
  socket.once("close", () => clearTimeout(timer));
  // The client closed its side: nothing is left to read.
  socket.once("end", () => socket.destroy());
  return true;
}
