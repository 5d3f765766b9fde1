import type { IncomingMessage } from "node:http";

export type BodyResult =
  | { ok: true; body: Buffer }
  | { ok: false; problem: "too_large" }
  /** The client went away, or stopped sending and the request timeout closed the connection. */
  | { ok: false; problem: "aborted" };

/**
 * The whole body when Node has already read all of it (a small request arrives with its headers,
 * and the edge awaited admission before asking): taken from the request's buffer at once, without
 * the listeners, promise and flowing mode of readBody(). Undefined when the body is still
 * arriving or over `limit`: use readBody().
 */
export function bufferedBody(req: IncomingMessage, limit: number): BodyResult | undefined {
  const buffered = req.readableLength;
  if (req.readableFlowing !== null || req.destroyed || buffered > limit) return undefined;
  // Node sets `complete` a little after the last bytes are buffered: a Content-Length the buffer
  // already holds is as good (the parser never buffers more than it).
  if (!req.complete && !(buffered > 0 && Number(req.headers["content-length"]) === buffered))
    return undefined;
  const body = req.read() as Buffer | null;
  return { ok: true, body: body ?? EMPTY };
}
const EMPTY = Buffer.alloc(0);

/**
 * Reads a request body up to `limit` bytes. Crossing the limit stops reading at once, so no more
 * than `limit` bytes (plus one chunk) are ever held.
 */
export function readBody(req: IncomingMessage, limit: number): Promise<BodyResult> {
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > limit) {
    return Promise.resolve({ ok: false, problem: "too_large" });
  }
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (result: BodyResult) => {
      if (done) return;
      done = true;
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onError);
      req.off("close", onClose);
      resolve(result);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.pause();
        finish({ ok: false, problem: "too_large" });
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () =>
      finish({ ok: true, body: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size) });
    const onError = () => finish({ ok: false, problem: "aborted" });
    const onClose = () => finish({ ok: false, problem: "aborted" });
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onError);
    req.on("close", onClose);
  });
}
