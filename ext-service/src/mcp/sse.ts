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
  /** The block had a comment line (`:` first), such as a keep-alive. */
  comment: boolean;
}

export class SseEventTooLarge extends Error {
  constructor(readonly limit: number) {
    super(`SSE event larger than ${limit} bytes`);
    this.name = "SseEventTooLarge";
  }
}

export class SseParser {
  // ignoreBOM: the one leading BOM the spec allows is stripped below, for bytes and strings alike
  // (the decoder's own stripping would remove a second U+FEFF from bytes only).
  private readonly decoder = new TextDecoder("utf-8", { ignoreBOM: true });
  /**
   * Text of the event being assembled that came in earlier chunks. Pieces are kept in a list and
   * joined once per event, and each chunk is scanned once, so an event split into many small
   * chunks costs linear time, not quadratic.
   */
  private rawParts: string[] = [];
  private rawChars = 0;
  /** Start of the line being read, from earlier chunks (without a terminator). */
  private lineParts: string[] = [];
  /** The line being read ended with a CR at the end of the previous chunk: an LF may follow. */
  private crAtEnd = false;
  private event: string | undefined;
  private id: string | undefined;
  private retry: string | undefined;
  private dataLines: string[] | undefined;
  private comment = false;
  private sawFirstChunk = false;

  constructor(private readonly maxEventChars = Infinity) {}

  /**
   * Feeds one chunk; returns the events it completed. Pass `final` with the last chunk (it may be
   * empty): a CR at the very end of the stream then ends its line instead of waiting for an LF.
   */
  push(chunk: Uint8Array | string, final = false): SseEvent[] {
    let text = typeof chunk === "string" ? chunk : this.decoder.decode(chunk, { stream: true });
    if (final) text += this.decoder.decode();
    if (!this.sawFirstChunk && text.length > 0) {
      this.sawFirstChunk = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    const out: SseEvent[] = [];
    /** Start in `text` of what is not yet in rawParts / lineParts. */
    let rawStart = 0;
    let lineStart = 0;
    let i = 0;
    if (this.crAtEnd) {
      if (text.length === 0 && !final) return out;
      this.crAtEnd = false;
      if (text.charCodeAt(0) === 10) i = 1; // the LF of a CRLF split across chunks
      lineStart = i;
      if (this.endLine(this.takeLine(""))) {
        out.push(this.takeEvent(this.takeRaw(text.slice(0, i))));
        rawStart = i;
      }
    }
    // Jumps from terminator to terminator: a data line is often most of a 64 KiB event, and
    // indexOf scans it natively where a charCodeAt loop costs a JS step per character.
    let nextLf = -2;
    let nextCr = -2;
    for (; i < text.length; i++) {
      if (nextLf !== -1 && nextLf < i) nextLf = text.indexOf("\n", i);
      if (nextCr !== -1 && nextCr < i) nextCr = text.indexOf("\r", i);
      if (nextLf === -1 && nextCr === -1) break;
      i = nextLf === -1 ? nextCr : nextCr === -1 ? nextLf : Math.min(nextLf, nextCr);
      const c = text.charCodeAt(i);
      const lineEnd = i;
      if (c === 13) {
        if (i + 1 === text.length && !final) {
          // Maybe the first half of a CRLF: the line ends here, its terminator with the next chunk.
          this.lineParts.push(text.slice(lineStart, lineEnd));
          this.crAtEnd = true;
          lineStart = text.length;
          break;
        }
        if (text.charCodeAt(i + 1) === 10) i++;
      }
      const blank = this.endLine(this.takeLine(text.slice(lineStart, lineEnd)));
      lineStart = i + 1;
      if (blank) {
        out.push(this.takeEvent(this.takeRaw(text.slice(rawStart, i + 1))));
        rawStart = i + 1;
      }
    }
    if (lineStart < text.length) this.lineParts.push(text.slice(lineStart));
    if (rawStart < text.length) {
      this.rawParts.push(text.slice(rawStart));
      this.rawChars += text.length - rawStart;
    }
    if (this.rawChars > this.maxEventChars) throw new SseEventTooLarge(this.maxEventChars);
    return out;
  }

  /**
   * Ends the stream. Returns the unterminated tail, if any: per the SSE spec a client discards an
   * event that was never terminated, so callers normally drop it. Call `push(chunk, true)` first
   * (possibly with an empty chunk) to collect an event whose last line ends in a lone CR.
   */
  end(): string {
    const rest = this.rawParts.join("") + this.decoder.decode();
    this.rawParts = [];
    this.rawChars = 0;
    this.lineParts = [];
    this.crAtEnd = false;
    this.resetFields();
    return rest;
  }

  /** Characters buffered for the event in progress. */
  get bufferedChars(): number {
    return this.rawChars;
  }

  private takeLine(last: string): string {
    if (this.lineParts.length === 0) return last;
    const line = this.lineParts.join("") + last;
    this.lineParts = [];
    return line;
  }

  private takeRaw(last: string): string {
    // Also a complete event that arrived in one chunk must respect the limit.
    if (this.rawChars + last.length > this.maxEventChars) throw new SseEventTooLarge(this.maxEventChars);
    const raw = this.rawParts.length === 0 ? last : this.rawParts.join("") + last;
    this.rawParts = [];
    this.rawChars = 0;
    return raw;
  }

  /** Reads one complete line; true when it is the blank line that ends an event. */
  private endLine(line: string): boolean {
    if (line.length === 0) return true;
    this.readField(line);
    return false;
  }

  private readField(line: string): void {
    if (line.charCodeAt(0) === 58 /* : */) {
      this.comment = true;
      return;
    }
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
      comment: this.comment,
    };
    this.resetFields();
    return ev;
  }

  private resetFields(): void {
    this.event = undefined;
    this.id = undefined;
    this.retry = undefined;
    this.dataLines = undefined;
    this.comment = false;
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
