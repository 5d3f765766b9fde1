import { credentials, type Client, type ClientDuplexStream, type ServiceError } from "@grpc/grpc-js";
import { EXT_AUTHZ_NAMESPACE } from "./context.js";
import { envoyProtos } from "./protos.js";
import { fromStruct, type StructJson } from "./struct.js";
import type {
  BodySendMode,
  CheckRequest,
  CheckResponse,
  CommonResponse,
  HeaderMap,
  HeaderMutation,
  HeaderValueOption,
  ImmediateResponse,
  ProcessingMode,
  ProcessingRequest,
  ProcessingResponse,
  ProcessingResponseKind,
} from "./types.js";

/**
 * A gRPC client that plays Envoy against an ext-service, exactly as ARCHITECTURE.md section 5
 * describes: ext_authz Check with the request's attributes, then one ext_proc Process stream per
 * HTTP request (request headers in raw_value, the request body BUFFERED, response headers, the
 * response body BUFFERED or STREAMED as the mode override says, streamed chunks pipelined
 * without waiting for replies), applying every reply the way Envoy does to produce the HTTP
 * response the agent would see. Used by the conformance tests and the benchmark.
 */

export interface EnvoyRoleOptions {
  /** The filter's static response_body_mode, used when no override is honoured. */
  responseBodyMode?: BodySendMode;
  /** ext_proc `allow_mode_override`. */
  allowModeOverride?: boolean;
  /** ext_proc `metadata_options.forwarding_namespaces.untyped` includes ext_authz's namespace. */
  forwardAuthzMetadata?: boolean;
  /** ext_proc `metadata_options.receiving_namespaces.untyped`. */
  receivingNamespaces?: string[];
  /**
   * Envoy's message_timeout is 200 ms. The default here is generous so a busy test machine does
   * not turn into failures; a reply that never comes still fails the request (504) as in Envoy.
   */
  messageTimeoutMs?: number;
}

export interface HttpRequestSpec {
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: string | Uint8Array;
  authority?: string;
}

/** The request as it would reach the MCP server. */
export interface UpstreamRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: Buffer;
}

export interface UpstreamResponseSpec {
  status: number;
  headers?: Record<string, string>;
  /**
   * The body. One string or byte array is one chunk and gets a content-length unless headers
   * name one; an array is a chunked body split exactly there (no content-length added).
   */
  body?: string | Uint8Array | (string | Uint8Array)[];
  /** Send end_of_stream on an extra empty chunk instead of on the last one. */
  finalEmptyChunk?: boolean;
}

export type Upstream = (request: UpstreamRequest) => UpstreamResponseSpec | Promise<UpstreamResponseSpec>;

export interface AgentResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

export interface EnvoyExchange {
  /** What the agent receives. */
  response: AgentResponse;
  /** Who produced the response. `envoy` means Envoy failed the request itself (see envoyError). */
  answeredBy: "ext_authz" | "ext_proc" | "upstream" | "envoy";
  envoyError?: string;
  /** Set when Envoy would reset the downstream stream after sending part of a response. */
  reset?: boolean;
  check: CheckResponse;
  authzMetadata?: Record<string, StructJson>;
  upstreamRequest?: UpstreamRequest;
  sent: ProcessingRequest[];
  received: ProcessingResponse[];
  modeOverride?: ProcessingMode;
  responseBodyMode?: BodySendMode;
  /** Dynamic metadata Envoy kept from ext_proc replies, by namespace (later replies win per field). */
  extProcMetadata: Record<string, Record<string, StructJson>>;
}

export type StreamEvent =
  { kind: "reply"; reply: ProcessingResponse } | { kind: "end"; error?: ServiceError } | { kind: "timeout" };

/** One Process stream with a reply queue, for tests that need to drive the protocol by hand. */
export class ProcessCall {
  private readonly replies: ProcessingResponse[] = [];
  private readonly waiters: ((e: StreamEvent) => void)[] = [];
  private ended: StreamEvent | undefined;
  readonly closed: Promise<void>;

  constructor(private readonly call: ClientDuplexStream<ProcessingRequest, ProcessingResponse>) {
    call.on("data", (reply: ProcessingResponse) => {
      const waiter = this.waiters.shift();
      if (waiter) waiter({ kind: "reply", reply });
      else this.replies.push(reply);
    });
    const finish = (error?: ServiceError) => {
      if (this.ended) return;
      this.ended = { kind: "end", error };
      for (const w of this.waiters.splice(0)) w(this.ended);
    };
    call.on("error", (err: ServiceError) => finish(err));
    call.on("end", () => finish());
    this.closed = new Promise((resolve) => call.on("status", () => resolve()));
  }

  send(request: ProcessingRequest): void {
    this.call.write(request);
  }

  /** The next reply, the end of the stream, or a timeout. */
  next(timeoutMs = 5000): Promise<StreamEvent> {
    const reply = this.replies.shift();
    if (reply) return Promise.resolve({ kind: "reply", reply });
    if (this.ended) return Promise.resolve(this.ended);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        resolve({ kind: "timeout" });
      }, timeoutMs);
      const waiter = (e: StreamEvent) => {
        clearTimeout(timer);
        resolve(e);
      };
      this.waiters.push(waiter);
    });
  }

  /** Half-close, as Envoy does when the HTTP exchange is over. */
  end(): void {
    this.call.end();
  }

  /** Reset the stream, as Envoy does when the downstream goes away mid-request. */
  cancel(): void {
    this.call.cancel();
  }
}

type Kind = ProcessingResponseKind;

/** Envoy's default HTTP/2 flow-control window, per stream and per connection: 256 MiB. */
export const ENVOY_DEFAULT_WINDOW_BYTES = 256 * 1024 * 1024;

class EnvoyFailure extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function toBuffer(data: string | Uint8Array | undefined): Buffer {
  if (data === undefined) return Buffer.alloc(0);
  return typeof data === "string" ? Buffer.from(data, "utf8") : Buffer.from(data);
}

function lower(headers: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers ?? {})) out[k.toLowerCase()] = v;
  return out;
}

/** Headers as ext_proc sends them: bytes in raw_value. */
function toHeaderMap(headers: Record<string, string>): HeaderMap {
  return {
    headers: Object.entries(headers).map(([key, value]) => ({
      key,
      raw_value: Buffer.from(value, "latin1"),
    })),
  };
}

/** Envoy's ext_proc reads only raw_value (a mutation with only `value` sets an empty header). */
function rawValueOf(option: HeaderValueOption): string {
  const raw = option.header.raw_value;
  return raw ? Buffer.from(raw).toString("latin1") : "";
}

function appends(option: HeaderValueOption): boolean {
  if (option.append !== undefined) return option.append.value;
  return (option.append_action ?? "APPEND_IF_EXISTS_OR_ADD") === "APPEND_IF_EXISTS_OR_ADD";
}

function applyHeaderMutation(headers: Record<string, string>, mutation: HeaderMutation | undefined): void {
  if (!mutation) return;
  for (const name of mutation.remove_headers ?? []) delete headers[name.toLowerCase()];
  for (const option of mutation.set_headers ?? []) {
    const key = option.header.key.toLowerCase();
    const value = rawValueOf(option);
    // ext_proc's default for `append` is false: set, replacing what is there.
    const append =
      option.append !== undefined ? option.append.value : option.append_action === "APPEND_IF_EXISTS_OR_ADD";
    headers[key] = append && key in headers ? `${headers[key]},${value}` : value;
  }
}

export class EnvoyRoleClient {
  private readonly authz: Client & {
    Check(req: CheckRequest, cb: (err: ServiceError | null, res?: CheckResponse) => void): unknown;
  };
  private readonly extProc: Client & {
    Process(): ClientDuplexStream<ProcessingRequest, ProcessingResponse>;
  };
  private readonly options: Required<EnvoyRoleOptions>;

  constructor(address: string, options: EnvoyRoleOptions = {}) {
    const protos = envoyProtos();
    const creds = credentials.createInsecure();
    const channelOptions = {
      "grpc.max_receive_message_length": 64 * 1024 * 1024,
      // Envoy's default HTTP/2 windows (initial_stream_window_size and
      // initial_connection_window_size), which the ext_service cluster in envoy/ keeps. With
      // grpc-js's 64 KiB instead, a reply carrying a 64 KiB body would wait for this client's
      // WINDOW_UPDATE, a stall Envoy never has.
      "grpc-node.flow_control_window": ENVOY_DEFAULT_WINDOW_BYTES,
    };
    this.authz = new protos.Authorization(address, creds, channelOptions) as unknown as typeof this.authz;
    this.extProc = new protos.ExternalProcessor(
      address,
      creds,
      channelOptions,
    ) as unknown as typeof this.extProc;
    this.options = {
      responseBodyMode: options.responseBodyMode ?? "STREAMED",
      allowModeOverride: options.allowModeOverride ?? true,
      forwardAuthzMetadata: options.forwardAuthzMetadata ?? true,
      receivingNamespaces: options.receivingNamespaces ?? ["mcp_gateway"],
      messageTimeoutMs: options.messageTimeoutMs ?? 5000,
    };
  }

  close(): void {
    this.authz.close();
    this.extProc.close();
  }

  check(request: CheckRequest): Promise<CheckResponse> {
    return new Promise((resolve, reject) => {
      this.authz.Check(request, (err, res) => (err ? reject(err) : resolve(res!)));
    });
  }

  openProcess(): ProcessCall {
    return new ProcessCall(this.extProc.Process());
  }

  /** The CheckRequest Envoy builds for an HTTP request (headers as a lower-case map). */
  checkRequest(req: HttpRequestSpec, headers: Record<string, string>): CheckRequest {
    const q = req.path.indexOf("?");
    return {
      attributes: {
        request: {
          http: {
            id: "envoy-request-id",
            method: req.method,
            headers,
            path: req.path,
            host: req.authority ?? "gateway.test",
            scheme: "https",
            protocol: "HTTP/1.1",
            ...(q >= 0 ? { query: req.path.slice(q + 1) } : {}),
          },
        },
      },
    };
  }

  /** One HTTP request through ext_authz and ext_proc, with `upstream` playing the MCP server. */
  async exchange(req: HttpRequestSpec, upstream: Upstream): Promise<EnvoyExchange> {
    const authority = req.authority ?? "gateway.test";
    const body = req.body === undefined ? undefined : toBuffer(req.body);
    const requestHeaders: Record<string, string> = {
      ":authority": authority,
      ":path": req.path,
      ":method": req.method,
      ":scheme": "https",
      ...lower(req.headers),
    };
    if (body !== undefined && !("content-length" in requestHeaders)) {
      requestHeaders["content-length"] = String(body.byteLength);
    }

    const check = await this.check(this.checkRequest(req, requestHeaders));
    const result: EnvoyExchange = {
      response: { status: 0, headers: {}, body: Buffer.alloc(0) },
      answeredBy: "upstream",
      check,
      sent: [],
      received: [],
      extProcMetadata: {},
    };
    if (check.status.code !== 0) {
      const denied = check.denied_response;
      result.answeredBy = "ext_authz";
      result.response = {
        status: envoyProtos().httpStatusNumber(denied?.status?.code) || 403,
        headers: Object.fromEntries(
          (denied?.headers ?? []).map((h) => [h.header.key.toLowerCase(), h.header.value ?? ""]),
        ),
        body: Buffer.from(denied?.body ?? "", "utf8"),
      };
      return result;
    }
    // Envoy's order: headers to set/append first, then headers_to_remove. ext_authz reads `value`.
    const ok = check.ok_response;
    for (const h of ok?.headers ?? []) {
      const key = h.header.key.toLowerCase();
      const value = h.header.value ?? "";
      requestHeaders[key] = appends(h) && key in requestHeaders ? `${requestHeaders[key]},${value}` : value;
    }
    for (const name of ok?.headers_to_remove ?? []) {
      if (!name.startsWith(":") && name.toLowerCase() !== "host") delete requestHeaders[name.toLowerCase()];
    }
    // Envoy stores ext_authz's metadata under its namespace, adding the call's duration.
    const stored = check.dynamic_metadata?.fields
      ? { fields: { ...check.dynamic_metadata.fields, ext_authz_duration: { numberValue: 1 } } }
      : undefined;
    if (stored) result.authzMetadata = fromStruct(stored);
    const metadataContext =
      this.options.forwardAuthzMetadata && stored
        ? { filter_metadata: { [EXT_AUTHZ_NAMESPACE]: stored } }
        : undefined;

    const call = this.openProcess();
    const send = (message: ProcessingRequest) => {
      const full = metadataContext ? { ...message, metadata_context: metadataContext } : message;
      result.sent.push(full);
      call.send(full);
    };
    const expect = async (kind: Kind): Promise<ProcessingResponse> => {
      const event = await call.next(this.options.messageTimeoutMs);
      if (event.kind === "timeout") throw new EnvoyFailure(504, "ext_proc message timeout");
      if (event.kind === "end") {
        throw new EnvoyFailure(500, `ext_proc stream closed: ${event.error?.message ?? "no reply"}`);
      }
      const reply = event.reply;
      result.received.push(reply);
      this.keepMetadata(result, reply);
      if (reply.response !== kind && reply.response !== "immediate_response") {
        throw new EnvoyFailure(500, `spurious message: expected ${kind}, got ${reply.response}`);
      }
      return reply;
    };

    try {
      await this.run(req, body, requestHeaders, upstream, result, send, expect);
    } catch (err) {
      if (!(err instanceof EnvoyFailure)) {
        call.cancel();
        throw err;
      }
      result.answeredBy = "envoy";
      result.envoyError = err.message;
      result.response = { status: err.status, headers: {}, body: Buffer.alloc(0) };
      call.cancel();
      await call.closed;
      return result;
    }
    call.end();
    await call.closed;
    return result;
  }

  private keepMetadata(result: EnvoyExchange, reply: ProcessingResponse): void {
    const metadata = reply.dynamic_metadata ? fromStruct(reply.dynamic_metadata) : {};
    for (const [namespace, value] of Object.entries(metadata)) {
      if (!this.options.receivingNamespaces.includes(namespace)) continue;
      if (typeof value !== "object" || value === null || Array.isArray(value)) continue;
      result.extProcMetadata[namespace] = { ...result.extProcMetadata[namespace], ...value };
    }
  }

  private immediate(result: EnvoyExchange, immediate: ImmediateResponse): void {
    const headers: Record<string, string> = {};
    applyHeaderMutation(headers, immediate.headers);
    const status = envoyProtos().httpStatusNumber(immediate.status?.code);
    result.answeredBy = "ext_proc";
    result.response = {
      status: status < 200 ? 200 : status,
      headers,
      body: Buffer.from(immediate.body ?? Buffer.alloc(0)),
    };
  }

  private async run(
    req: HttpRequestSpec,
    body: Buffer | undefined,
    requestHeaders: Record<string, string>,
    upstream: Upstream,
    result: EnvoyExchange,
    send: (m: ProcessingRequest) => void,
    expect: (k: Kind) => Promise<ProcessingResponse>,
  ): Promise<void> {
    // Request headers: with end_of_stream when there is no body, so no body phase follows.
    send({ request_headers: { headers: toHeaderMap(requestHeaders), end_of_stream: body === undefined } });
    let reply = await expect("request_headers");
    if (reply.immediate_response) return this.immediate(result, reply.immediate_response);
    applyHeaderMutation(requestHeaders, reply.request_headers?.response?.header_mutation);

    let upstreamBody = body ?? Buffer.alloc(0);
    if (body !== undefined) {
      send({ request_body: { body, end_of_stream: true } });
      reply = await expect("request_body");
      if (reply.immediate_response) return this.immediate(result, reply.immediate_response);
      const common = reply.request_body?.response;
      applyHeaderMutation(requestHeaders, common?.header_mutation);
      upstreamBody = applyBodyMutation(upstreamBody, common) ?? upstreamBody;
    }

    const upstreamRequest: UpstreamRequest = {
      method: req.method,
      path: req.path,
      headers: requestHeaders,
      body: upstreamBody,
    };
    result.upstreamRequest = upstreamRequest;
    const answer = await upstream(upstreamRequest);
    const chunked = Array.isArray(answer.body);
    const parts: (string | Uint8Array)[] = Array.isArray(answer.body)
      ? answer.body
      : answer.body === undefined
        ? []
        : [answer.body];
    const chunks = parts.map((p) => toBuffer(p));
    const responseHeaders: Record<string, string> = {
      ":status": String(answer.status),
      ...lower(answer.headers),
    };
    if (!chunked && chunks.length === 1 && !("content-length" in responseHeaders)) {
      responseHeaders["content-length"] = String(chunks[0]!.byteLength);
    }
    const noBody = chunks.length === 0 && !answer.finalEmptyChunk;
    send({ response_headers: { headers: toHeaderMap(responseHeaders), end_of_stream: noBody } });
    reply = await expect("response_headers");
    if (reply.immediate_response) return this.immediate(result, reply.immediate_response);
    applyHeaderMutation(responseHeaders, reply.response_headers?.response?.header_mutation);
    let mode = this.options.responseBodyMode;
    if (reply.mode_override && this.options.allowModeOverride) {
      result.modeOverride = reply.mode_override;
      mode = reply.mode_override.response_body_mode ?? "NONE";
    }
    result.responseBodyMode = mode;

    let finalBody: Buffer;
    if (noBody || mode === "NONE") {
      finalBody = Buffer.concat(chunks);
    } else if (mode === "BUFFERED" || mode === "BUFFERED_PARTIAL") {
      const whole = Buffer.concat(chunks);
      send({ response_body: { body: whole, end_of_stream: true } });
      reply = await expect("response_body");
      if (reply.immediate_response) return this.immediate(result, reply.immediate_response);
      const common = reply.response_body?.response;
      applyHeaderMutation(responseHeaders, common?.header_mutation);
      const replaced = applyBodyMutation(whole, common);
      finalBody = replaced ?? whole;
      const length = responseHeaders["content-length"];
      if (replaced !== undefined && length !== undefined && Number(length) !== replaced.byteLength) {
        throw new EnvoyFailure(
          500,
          `body mutation of ${replaced.byteLength} bytes with content-length ${length} left in place`,
        );
      }
    } else {
      // STREAMED: Envoy drops content-length and sends every chunk without waiting for replies.
      delete responseHeaders["content-length"];
      const messages = chunks.map((c, i) => ({
        body: c,
        end_of_stream: !answer.finalEmptyChunk && i === chunks.length - 1,
      }));
      if (answer.finalEmptyChunk) messages.push({ body: Buffer.alloc(0), end_of_stream: true });
      for (const m of messages) send({ response_body: m });
      const out: Buffer[] = [];
      for (const m of messages) {
        reply = await expect("response_body");
        if (reply.immediate_response) {
          // Headers already went downstream: Envoy can only reset the stream.
          result.reset = true;
          break;
        }
        out.push(applyBodyMutation(m.body, reply.response_body?.response) ?? m.body);
      }
      finalBody = Buffer.concat(out);
    }
    const status = Number(responseHeaders[":status"]);
    delete responseHeaders[":status"];
    result.response = { status, headers: responseHeaders, body: finalBody };
  }
}

function applyBodyMutation(body: Buffer, common: CommonResponse | undefined): Buffer | undefined {
  const mutation = common?.body_mutation;
  if (!mutation) return undefined;
  if (mutation.mutation === "clear_body" || mutation.clear_body) return Buffer.alloc(0);
  if (mutation.mutation === "body" || mutation.body !== undefined)
    return Buffer.from(mutation.body ?? Buffer.alloc(0));
  return body;
}
