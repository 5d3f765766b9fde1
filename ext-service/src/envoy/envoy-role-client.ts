import {
  Metadata,
  credentials,
  type Client,
  type ClientDuplexStream,
  type ServiceError,
} from "@grpc/grpc-js";
import {
  EnvoyModel,
  ProcessCall,
  SHIPPED_CHAIN,
  type AnsweredBy,
  type BodyFrame,
  type EnvoyModelConfig,
  type ExchangeTrace,
  type ExtServiceCalls,
  type UpstreamAnswer,
  type UpstreamRequest,
} from "./envoy-model.js";
import { lowerCaseKeys } from "./headers.js";
import { envoyProtos } from "./protos.js";
import type { RateLimitRequest, RateLimitResponse } from "./ratelimit.js";
import type { StructJson } from "./struct.js";
import type {
  BodySendMode,
  CheckRequest,
  CheckResponse,
  ProcessingMode,
  ProcessingRequest,
  ProcessingResponse,
} from "./types.js";

export { ProcessCall, type StreamEvent, type UpstreamRequest } from "./envoy-model.js";

/**
 * A gRPC client that plays Envoy against an ext-service: ext_authz Check, then one ext_proc
 * Process stream per HTTP request, through the model of our filter chain in envoy-model.ts
 * (local replies through ext_proc's encoder path, message timeouts, buffer limits, mode
 * override rules, header rules), producing the HTTP response the agent would see. `exchange()`
 * takes a whole request and a scripted upstream; the HTTP front (envoy-role-front.ts) streams.
 * Used by the conformance tests, the scenario table and the benchmark.
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
   * ext_proc `message_timeout`. The shipped filter says 1 s; the default here is generous so a
   * busy test machine does not turn into failures. A reply that never comes still fails the
   * request (504) as in Envoy.
   */
  messageTimeoutMs?: number;
  /** Anything else of the modelled chain (envoy-model.ts SHIPPED_CHAIN is the default). */
  chain?: Partial<EnvoyModelConfig>;
  /**
   * Envoy with a tracer: the W3C `traceparent` of the span Envoy's gRPC client opens for each
   * ext_proc stream, which it puts in the call's initial metadata
   * (source/common/grpc/async_client_impl.cc, `current_span_->injectContext`).
   */
  extProcTraceparent?: () => string;
  /**
   * Where ext_proc streams go, when not to `address`: Envoy picks a host of the ext_service
   * cluster for each gRPC call on its own, so one request's Check and Process may reach two
   * replicas.
   */
  extProcAddress?: string;
}

export interface HttpRequestSpec {
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: string | Uint8Array;
  authority?: string;
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

export interface EnvoyExchange extends ExchangeTrace {
  /** What the agent receives. */
  response: AgentResponse;
  answeredBy: AnsweredBy;
  /** Envoy's response code details when Envoy answered itself (answeredBy "envoy"). */
  envoyError?: string;
  check: CheckResponse;
  authzMetadata?: Record<string, StructJson>;
  modeOverride?: ProcessingMode;
}

/** Envoy's default HTTP/2 flow-control window, per stream and per connection: 256 MiB. */
export const ENVOY_DEFAULT_WINDOW_BYTES = 256 * 1024 * 1024;

function toBuffer(data: string | Uint8Array | undefined): Buffer {
  if (data === undefined) return Buffer.alloc(0);
  return typeof data === "string" ? Buffer.from(data, "utf8") : Buffer.from(data);
}

/** A scripted upstream answer as the frames Envoy's codec would deliver. */
function answerOf(spec: UpstreamResponseSpec): UpstreamAnswer {
  const headers = lowerCaseKeys(spec.headers);
  const chunked = Array.isArray(spec.body);
  const parts = Array.isArray(spec.body) ? spec.body : spec.body === undefined ? [] : [spec.body];
  const chunks = parts.map((p) => toBuffer(p));
  if (!chunked && chunks.length === 1 && !("content-length" in headers)) {
    headers["content-length"] = String(chunks[0]!.byteLength);
  }
  const frames: BodyFrame[] = chunks.map((data, i) => ({
    data,
    end: !spec.finalEmptyChunk && i === chunks.length - 1,
  }));
  if (spec.finalEmptyChunk) frames.push({ data: Buffer.alloc(0), end: true });
  return {
    status: spec.status,
    headers,
    hasBody: frames.length > 0,
    body: (async function* () {
      yield* frames;
    })(),
  };
}

export class EnvoyRoleClient implements ExtServiceCalls {
  private readonly authz: Client & {
    Check(
      req: CheckRequest,
      options: { deadline?: number },
      cb: (err: ServiceError | null, res?: CheckResponse) => void,
    ): unknown;
  };
  private readonly extProc: Client & {
    Process(metadata?: Metadata): ClientDuplexStream<ProcessingRequest, ProcessingResponse>;
  };
  private readonly extProcTraceparent: (() => string) | undefined;
  private readonly rateLimit: Client & {
    ShouldRateLimit(
      req: RateLimitRequest,
      options: { deadline?: number },
      cb: (err: ServiceError | null, res?: RateLimitResponse) => void,
    ): unknown;
  };
  /** The modelled filter chain, with this client as its gRPC side. */
  readonly model: EnvoyModel;

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
      options.extProcAddress ?? address,
      creds,
      channelOptions,
    ) as unknown as typeof this.extProc;
    this.rateLimit = new protos.RateLimitService(
      address,
      creds,
      channelOptions,
    ) as unknown as typeof this.rateLimit;
    const chain: Partial<EnvoyModelConfig> = { messageTimeoutMs: 5000, ...options.chain };
    if (options.messageTimeoutMs !== undefined) chain.messageTimeoutMs = options.messageTimeoutMs;
    if (options.allowModeOverride !== undefined) chain.allowModeOverride = options.allowModeOverride;
    if (options.receivingNamespaces !== undefined) chain.receivingNamespaces = options.receivingNamespaces;
    if (options.forwardAuthzMetadata === false) chain.forwardingNamespaces = [];
    if (options.responseBodyMode !== undefined) {
      const base = chain.processingMode ?? { ...SHIPPED_CHAIN.processingMode };
      chain.processingMode = { ...base, response_body_mode: options.responseBodyMode };
    }
    this.model = new EnvoyModel(this, chain);
    this.extProcTraceparent = options.extProcTraceparent;
  }

  close(): void {
    this.authz.close();
    this.extProc.close();
    this.rateLimit.close();
  }

  check(request: CheckRequest, deadlineMs = 5000): Promise<CheckResponse> {
    return new Promise((resolve, reject) => {
      this.authz.Check(request, { deadline: Date.now() + deadlineMs }, (err, res) =>
        err ? reject(err) : resolve(res!),
      );
    });
  }

  shouldRateLimit(request: RateLimitRequest, deadlineMs = 250): Promise<RateLimitResponse> {
    return new Promise((resolve, reject) => {
      this.rateLimit.ShouldRateLimit(request, { deadline: Date.now() + deadlineMs }, (err, res) =>
        err ? reject(err) : resolve(res!),
      );
    });
  }

  openProcess(): ProcessCall {
    if (!this.extProcTraceparent) return new ProcessCall(this.extProc.Process());
    const metadata = new Metadata();
    metadata.set("traceparent", this.extProcTraceparent());
    return new ProcessCall(this.extProc.Process(metadata));
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

  /**
   * One HTTP request through the modelled chain, with `upstream` playing the MCP server; the
   * response is collected whole.
   */
  async exchange(req: HttpRequestSpec, upstream: Upstream): Promise<EnvoyExchange> {
    const body = req.body === undefined ? undefined : toBuffer(req.body);
    const headers = lowerCaseKeys(req.headers);
    if (body !== undefined && !("content-length" in headers))
      headers["content-length"] = String(body.byteLength);
    const response: AgentResponse = { status: 0, headers: {}, body: Buffer.alloc(0) };
    const chunks: Buffer[] = [];
    const trace = await this.model.handle(
      { method: req.method, path: req.path, authority: req.authority, headers, body },
      async (request) => answerOf(await upstream(request)),
      {
        headers(status, h) {
          response.status = status;
          response.headers = h;
        },
        data(chunk) {
          chunks.push(chunk);
        },
        reset() {},
      },
    );
    response.body = Buffer.concat(chunks);
    return {
      ...trace,
      response,
      check: trace.check ?? { status: { code: -1 } },
      ...(trace.answeredBy === "envoy" ? { envoyError: trace.details } : {}),
    };
  }
}
