import { SseParser } from "../../ext-service/src/mcp/sse.js";

/**
 * What an SSE client takes from a stream, per the HTML spec's processing model: for each event
 * block, its type (no `event` field or an empty one is `message`), the id and retry it records
 * and the data it dispatches. Comment lines, unknown fields and line endings read as nothing, and
 * JSON data compares as a value, so tests of a stream the gateway re-emits (security review F13)
 * compare what a client reads rather than the bytes.
 */
export interface ClientEvent {
  type: string;
  id?: string;
  retry?: string;
  data?: unknown;
}

export function sseClientView(stream: string | Uint8Array): ClientEvent[] {
  const parser = new SseParser();
  const events = [...parser.push(stream), ...parser.push(new Uint8Array(0), true)];
  const out: ClientEvent[] = [];
  for (const ev of events) {
    // A block of comments or unknown fields changes nothing a client holds.
    if (ev.data === undefined && ev.id === undefined && ev.retry === undefined) continue;
    const view: ClientEvent = { type: ev.event || "message" };
    if (ev.id !== undefined) view.id = ev.id;
    if (ev.retry !== undefined) view.retry = ev.retry;
    if (ev.data !== undefined) view.data = readData(ev.data);
    out.push(view);
  }
  return out;
}

function readData(data: string): unknown {
  try {
    return JSON.parse(data) as unknown;
  } catch {
    return data;
  }
}
