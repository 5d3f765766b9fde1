import type { IncomingHttpHeaders } from "node:http";
import { Readable } from "node:stream";
import type { ReadableStream } from "node:stream/web";
import { request, type Dispatcher } from "undici";

/**
 * The HTTP client of a broker hop (`/mcp/<server>` on the gateway itself), in the shape of `fetch`
 * that the SDK's client transport is given. Each hop request went through undici's `fetch`,
 * which builds a web Request, clones its body for a possible redirect, and wraps the answer in
 * web streams: about a sixth of what a small call through the aggregated endpoint allocated
 * (bench/broker-cost.ts). The hop needs none of it: it sends a string (or nothing) and reads the
 * answer once, whole (JSON) or as an event stream (SSE). So the request goes out with undici's
 * `request` on the same global dispatcher, and the answer is read straight from its body.
 *
 * The answer is the part of a fetch Response the transport reads (status, headers, text, json,
 * body) and nothing more. Redirects are never followed here: the transport asks for `manual`
 * and follows same-origin ones itself, as it does with fetch (where the gateway's own routes
 * answer none anyway: the per-server path refuses an upstream's 3xx).
 */
export function hopFetch(
  url: string | URL,
  init: RequestInit | undefined,
  authorization: string,
): Promise<Response> {
  const headers: Record<string, string> = {};
  const given = init?.headers;
  if (given instanceof Headers) given.forEach((value, name) => (headers[name] = value));
  else if (Array.isArray(given)) for (const [name, value] of given) headers[name!.toLowerCase()] = value!;
  else if (given)
    for (const [name, value] of Object.entries(given))
      headers[name.toLowerCase()] = typeof value === "string" ? value : value.join(", ");
  headers.authorization = authorization;
  const body = init?.body;
  if (body !== undefined && body !== null && typeof body !== "string")
    throw new TypeError("broker hop: only string bodies are sent");
  const href = String(url);
  return request(href, {
    method: (init?.method ?? "GET") as Dispatcher.HttpMethod,
    headers,
    body: body ?? undefined,
    signal: init?.signal ?? undefined,
  }).then(
    (answer) => new HopResponse(href, answer) as unknown as Response,
    (err: unknown) => {
      // As fetch rejects: with the abort's reason once aborted, else a TypeError whose cause is
      // the network error.
      const signal = init?.signal;
      if (signal?.aborted)
        throw signal.reason ?? new DOMException("This operation was aborted", "AbortError");
      throw new TypeError("fetch failed", { cause: err });
    },
  );
}

/** Statuses whose answer has no body (fetch's null body statuses). */
const NULL_BODY = new Set([101, 103, 204, 205, 304]);

/** A header list read the way fetch's Headers reads one (names in any case; repeats joined). */
class HopHeaders {
  constructor(private readonly raw: IncomingHttpHeaders) {}

  get(name: string): string | null {
    const value = this.raw[name.toLowerCase()];
    if (value === undefined) return null;
    return Array.isArray(value) ? value.join(", ") : value;
  }

  has(name: string): boolean {
    return this.raw[name.toLowerCase()] !== undefined;
  }

  forEach(each: (value: string, name: string) => void): void {
    for (const name of Object.keys(this.raw).sort()) each(this.get(name)!, name);
  }
}

/** One hop answer: what the SDK's client transport reads of a fetch Response. */
class HopResponse {
  readonly status: number;
  readonly statusText: string;
  readonly ok: boolean;
  readonly headers: HopHeaders;
  readonly type = "basic";
  readonly redirected = false;
  private readonly stream: Dispatcher.ResponseData["body"] | undefined;
  private webBody: ReadableStream<Uint8Array> | null | undefined;

  constructor(
    readonly url: string,
    answer: Dispatcher.ResponseData,
  ) {
    this.status = answer.statusCode;
    this.statusText = answer.statusText;
    this.ok = answer.statusCode >= 200 && answer.statusCode <= 299;
    this.headers = new HopHeaders(answer.headers);
    if (NULL_BODY.has(answer.statusCode)) {
      // Nothing to read; the connection goes back to the pool once the (empty) body is done.
      answer.body.resume();
      this.stream = undefined;
      this.webBody = null;
    } else this.stream = answer.body;
  }

  get bodyUsed(): boolean {
    return this.stream?.bodyUsed ?? false;
  }

  /** The body as a web stream (an event stream is read this way), made once. */
  get body(): ReadableStream<Uint8Array> | null {
    if (this.webBody === undefined)
      this.webBody = Readable.toWeb(this.stream!) as unknown as ReadableStream<Uint8Array>;
    return this.webBody;
  }

  text(): Promise<string> {
    if (this.stream === undefined) return Promise.resolve("");
    if (this.webBody) return new Response(this.webBody as never).text();
    return this.stream.text();
  }

  async json(): Promise<unknown> {
    return JSON.parse(await this.text());
  }
}
