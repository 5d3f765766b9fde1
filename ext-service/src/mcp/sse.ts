/**
 * Incremental Server-Sent Events parsing that survives arbitrary chunk boundaries (inside a
 * field, inside a UTF-8 sequence, between CR and LF) and keeps each event's raw text so an
 * unmodified event is re-emitted byte for byte.
 */

export interface SseEvent {
  /** The exact text of the event block, including its terminating blank line. */
  raw: string;
  event: string | undefined;
  id: string | undefined;
  retry: string | undefined;
  /** Data lines joined with "\n"; undefined when the block had no data field (e.g. only comments). */
  data: string | undefined;
}

export class SseEventTooLarge extends Error {
  constructor(readonly limit: number) {
    super(`SSE event larger than ${limit} bytes`);
    this.name = "SseEventTooLarge";
  }
}

export class SseParser {
  private readonly decoder = new TextDecoder("utf-8");
  /** Text of the event being assembled (from its first byte). */
  private pending = "";
  /** Offset in `pending` up to which complete lines were already read into the fields below. */
  private scanned = 0;
  private event: string | undefined;
  private id: string | undefined;
  private retry: string | undefined;
  private dataLines: string[] | undefined;
  private sawFirstChunk = false;

  constructor(private readonly maxEventChars = Infinity) {}

  /** Feeds one chunk; returns the events it completed. */
  push(chunk: Uint8Array | string): SseEvent[] {
    let text = typeof chunk === "string" ? chunk : this.decoder.decode(chunk, { stream: true });
    if (!this.sawFirstChunk && text.length > 0) {
      this.sawFirstChunk = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    this.pending += text;
    const out: SseEvent[] = [];
    for (;;) {
      const lineStart = this.scanned;
      let lineEnd = -1;
      let next = -1;
      for (let i = lineStart; i < this.pending.length; i++) {
        const c = this.pending.charCodeAt(i);
        if (c === 10) {
          lineEnd = i;
          next = i + 1;
          break;
        }
        if (c === 13) {
          // A CR at the very end may be the first half of CRLF: wait for the next chunk.
          if (i + 1 >= this.pending.length) break;
          lineEnd = i;
          next = this.pending.charCodeAt(i + 1) === 10 ? i + 2 : i + 1;
          break;
        }
      }
      if (lineEnd < 0) break;
      const line = this.pending.slice(lineStart, lineEnd);
      this.scanned = next;
      if (line.length === 0) {
        const raw = this.pending.slice(0, next);
        this.pending = this.pending.slice(next);
        this.scanned = 0;
        out.push(this.takeEvent(raw));
        continue;
      }
      this.readField(line);
    }
    if (this.pending.length > this.maxEventChars) throw new SseEventTooLarge(this.maxEventChars);
    return out;
  }

  /**
   * Ends the stream. Returns the unterminated tail, if any: per the SSE spec a client discards an
   * event that was never terminated, so callers normally drop it.
   */
  end(): string {
    this.pending += this.decoder.decode();
    const rest = this.pending;
    this.pending = "";
    this.scanned = 0;
    this.resetFields();
    return rest;
  }

  /** Characters buffered for the event in progress. */
  get bufferedChars(): number {
    return this.pending.length;
  }

  private readField(line: string): void {
    if (line.charCodeAt(0) === 58 /* : */) return; // comment
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    switch (name) {
      case "data":
        (this.dataLines ??= []).push(value);
        break;
      case "event":
        this.event = value;
        break;
      case "id":
        if (!value.includes("\0")) this.id = value;
        break;
      case "retry":
        this.retry = value;
        break;
      default:
        break; // unknown fields are ignored, as the spec says, but kept in `raw`
    }
  }

  private takeEvent(raw: string): SseEvent {
    const ev: SseEvent = {
      raw,
      event: this.event,
      id: this.id,
      retry: this.retry,
      data: this.dataLines?.join("\n"),
    };
    this.resetFields();
    return ev;
  }

  private resetFields(): void {
    this.event = undefined;
    this.id = undefined;
    this.retry = undefined;
    this.dataLines = undefined;
  }
}

/** Serialises an event with LF line endings; `data` containing newlines becomes several data lines. */
export function formatSseEvent(ev: { event?: string; id?: string; retry?: string; data?: string }): string {
  let out = "";
  if (ev.event !== undefined) out += `event: ${ev.event}\n`;
  if (ev.id !== undefined) out += `id: ${ev.id}\n`;
  if (ev.retry !== undefined) out += `retry: ${ev.retry}\n`;
  if (ev.data !== undefined) {
    for (const line of ev.data.split(/\r\n|\r|\n/)) out += `data: ${line}\n`;
  }
  return out + "\n";
}
