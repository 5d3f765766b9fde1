import { randomUUID } from "node:crypto";
import type { ClientDuplexStream, ServiceError } from "@grpc/grpc-js";
import { EXT_AUTHZ_NAMESPACE } from "./context.js";
import { lowerCaseKeys } from "./headers.js";
import { envoyProtos } from "./protos.js";
import type { RateLimitRequest, RateLimitResponse } from "./ratelimit.js";
import { fromStruct, type StructJson } from "./struct.js";
import type {
  BodySendMode,
  CheckRequest,
  CheckResponse,
  CommonResponse,
  HeaderMutation,
  HeaderValueOption,
  ImmediateResponse,
  ProcessingMode,
  ProcessingRequest,
  ProcessingResponse,
  ProcessingResponseKind,
  Struct,
} from "./types.js";

/**
 * A model of the HTTP filter chain we ship in envoy/envoy.yaml, as Envoy 1.38 runs it:
 * connection manager -> ext_authz -> local_ratelimit -> ratelimit (global, asking the rate limit
 * service) -> ext_proc -> router, and back through the encoder filters. Every behaviour here is taken from Envoy's source, and listed with that source
 * and the test covering it in proto/README.md ("The Envoy model"). It streams: request and
 * response bodies move chunk by chunk, so the HTTP front (envoy-role-front.ts) can put real MCP
 * clients and servers on either side. The gRPC side talks to the real ext-service.
 */

// ---------------------------------------------------------------------------------------------
// Configuration: the fields of envoy.yaml the model acts on.

export interface TokenBucket {
  maxTokens: number;
  tokensPerFill: number;
  fillIntervalMs: number;
}

/** local_ratelimit keyed by one request header (the shipped descriptor is `x-mcp-agent`). */
export interface RateLimitConfig {
  descriptorHeader: string;
  /** Buckets for listed descriptor values; other values share `fallback`. */
  buckets: Record<string, TokenBucket>;
  fallback: TokenBucket;
}

/** One `request_headers` rate limit action: a descriptor entry from a request header. */
export interface RequestHeaderAction {
  header: string;
  descriptorKey: string;
  /** Absent header: the entry is left out (true) or the whole descriptor is (false). */
  skipIfAbsent: boolean;
}

/**
 * envoy.filters.http.ratelimit (ratelimit.cc), with the filter's own `rate_limits`: each entry's
 * actions make one descriptor for the rate limit service.
 */
export interface GlobalRateLimitConfig {
  domain: string;
  /** The filter-level `rate_limits`: one list of actions per descriptor. */
  descriptors: RequestHeaderAction[][];
  /** `timeout` (Envoy's default: 20 ms); a call not answered in time is an error. */
  timeoutMs: number;
  /** `failure_mode_deny`: an error refuses the request (status_on_error) instead of passing it. */
  failureModeDeny: boolean;
  /** `status_on_error` (unset: 500). */
  statusOnError: number;
  /** `rate_limited_status` (unset, or below 400: 429). */
  rateLimitedStatus: number;
  /** Not `disable_x_envoy_ratelimited_header`: a limited reply carries x-envoy-ratelimited: true. */
  xEnvoyRateLimitedHeader: boolean;
}

/** What a local reply looks like once local_reply_config has rewritten it. */
export interface LocalReplyFormat {
  status?: number;
  contentType: string;
  body: string;
}

/** What a local_reply_config filter looks at. */
export interface LocalReplyFacts {
  status: number;
  flags: readonly string[];
  details: string;
}

/** One `local_reply_config.mappers` entry: the first that matches rewrites the reply. */
export interface LocalReplyMapper {
  /** The mapper's filter (response flags, status, code details, and combinations of them). */
  matches(reply: LocalReplyFacts): boolean;
  /** `status_code`: the status the reply gets instead. */
  status?: number;
  /** `body_format_override`; undefined keeps the body. */
  format?(requestHeaders: Readonly<Record<string, string>>): LocalReplyFormat;
}

export interface EnvoyModelConfig {
  /** ext_proc `processing_mode` (static; mode_override changes it per request). */
  processingMode: Required<ProcessingMode>;
  allowModeOverride: boolean;
  /** ext_proc `message_timeout` (Envoy's default is 200 ms). */
  messageTimeoutMs: number;
  /** ext_proc `max_message_timeout`: the most an `override_message_timeout` may ask (0: none). */
  maxMessageTimeoutMs: number;
  failureModeAllow: boolean;
  /** ext_proc `status_on_error` (unset: 500). */
  statusOnError: number;
  routeCacheAction: "DEFAULT" | "CLEAR" | "RETAIN";
  /** ext_proc `metadata_options.forwarding_namespaces.untyped`. */
  forwardingNamespaces: string[];
  /** ext_proc `metadata_options.receiving_namespaces.untyped`. */
  receivingNamespaces: string[];
  /** ext_authz `grpc_service.timeout`. */
  authzTimeoutMs: number;
  /** ext_authz `status_on_error` (unset: 403). */
  authzStatusOnError: number;
  /** local_ratelimit; undefined = the filter lets everything through. */
  rateLimit: RateLimitConfig | undefined;
  /** The global rate limit filter; undefined = not in the chain. */
  globalRateLimit: GlobalRateLimitConfig | undefined;
  /** `per_connection_buffer_limit_bytes`: the most a buffered response may hold (500 above). */
  bufferLimitBytes: number;
  /** Route/virtual host `request_body_buffer_limit` (routes.yaml), else the connection's (413 above). */
  requestBufferLimitBytes?: number;
  /** HCM `server_name` (set on every response, server_header_transformation OVERWRITE). */
  serverName: string;
  /**
   * HCM `max_request_headers_kb` (Envoy's default 60): the HTTP/1 codec answers 431 to request
   * headers whose names and values together exceed it (EnvoyModel.headersTooLarge).
   */
  maxRequestHeadersKb: number;
  /**
   * HCM `common_http_protocol_options.max_headers_count` (Envoy's default 100): the HTTP/2 codec
   * resets a request stream with more headers (EnvoyModel.http2HeadersOverflow).
   */
  maxHeadersCount: number;
  /** Router `suppress_envoy_headers`. */
  suppressEnvoyHeaders: boolean;
  /** HCM `stream_idle_timeout` / route `idle_timeout`: a stream with no activity this long ends. */
  streamIdleTimeoutMs: number;
  localReplyMappers: LocalReplyMapper[];
}

/** The JSON-RPC error body the shipped local_reply_config writes (id null, reason in data). */
function jsonRpcBody(code: number, message: string, reason: string, withRequestId = true) {
  return (headers: Readonly<Record<string, string>>): LocalReplyFormat => ({
    contentType: "application/json",
    body: JSON.stringify({
      jsonrpc: "2.0",
      id: null,
      error: {
        code,
        message,
        data: withRequestId ? { reason, request_id: headers["x-mcp-request-id"] ?? null } : { reason },
      },
    }),
  });
}

const anyFlag = (flags: string[]) => (r: LocalReplyFacts) => r.flags.some((f) => flags.includes(f));

/**
 * The filter chain of envoy/envoy.yaml (listener mcp_tls), field by field. A test reads the file
 * (envoy-model-config.ts) and holds these values to it, so the two cannot drift apart.
 */
export const SHIPPED_CHAIN: Readonly<EnvoyModelConfig> = Object.freeze<EnvoyModelConfig>({
  processingMode: {
    request_header_mode: "SEND",
    request_body_mode: "BUFFERED",
    response_header_mode: "SEND",
    response_body_mode: "NONE",
    request_trailer_mode: "SKIP",
    response_trailer_mode: "SKIP",
  },
  allowModeOverride: true,
  messageTimeoutMs: 5000,
  maxMessageTimeoutMs: 30_000,
  failureModeAllow: false,
  statusOnError: 503,
  routeCacheAction: "RETAIN",
  forwardingNamespaces: [EXT_AUTHZ_NAMESPACE],
  receivingNamespaces: ["mcp_gateway"],
  authzTimeoutMs: 2000,
  authzStatusOnError: 503,
  rateLimit: undefined,
  globalRateLimit: {
    domain: "mcp_gateway",
    descriptors: [
      [
        { header: "x-mcp-agent", descriptorKey: "agent", skipIfAbsent: false },
        { header: "x-mcp-issuer", descriptorKey: "issuer", skipIfAbsent: true },
        { header: "x-mcp-via-broker", descriptorKey: "via_broker", skipIfAbsent: true },
      ],
    ],
    timeoutMs: 250,
    failureModeDeny: false,
    statusOnError: 500,
    rateLimitedStatus: 429,
    xEnvoyRateLimitedHeader: true,
  },
  bufferLimitBytes: 2 * 1024 * 1024,
  serverName: "mcp-gateway",
  maxRequestHeadersKb: 60,
  maxHeadersCount: 100,
  suppressEnvoyHeaders: true,
  streamIdleTimeoutMs: 300_000,
  localReplyMappers: [
    { matches: anyFlag(["RL"]), format: jsonRpcBody(-32029, "Too many requests; slow down", "rate_limited") },
    {
      matches: (r) => r.status === 431,
      format: jsonRpcBody(
        -32600,
        "The request headers are too large (a bearer token is the usual cause)",
        "headers_too_large",
        false,
      ),
    },
    {
      matches: (r) => anyFlag(["SI"])(r) && r.status === 408,
      format: jsonRpcBody(-32600, "The request body was not received in time", "request_timeout"),
    },
    {
      matches: anyFlag(["UT", "SI"]),
      format: jsonRpcBody(-32050, "The MCP server did not answer in time", "upstream_timeout"),
    },
    {
      matches: anyFlag(["UH"]),
      format: jsonRpcBody(-32050, "The MCP server is failing; requests are paused briefly", "breaker_open"),
    },
    {
      matches: anyFlag(["UF", "URX", "UC", "UR", "NC", "UO"]),
      format: jsonRpcBody(-32050, "The MCP server is unavailable", "upstream_unavailable"),
    },
    {
      matches: (r) => r.details === "request_payload_too_large",
      format: jsonRpcBody(-32600, "The request body is too large", "body_too_large"),
    },
    {
      matches: (r) => r.details === "response_payload_too_large",
      status: 502,
      format: jsonRpcBody(
        -32603,
        "The MCP server's response is larger than the gateway inspects",
        "response_too_large",
      ),
    },
    {
      matches: (r) => anyFlag(["UAEX"])(r) && r.status === 503,
      format: jsonRpcBody(-32603, "Internal gateway error", "internal_error", false),
    },
    {
      matches: (r) => r.status === 503,
      format: jsonRpcBody(-32603, "Internal gateway error", "internal_error"),
    },
  ],
});

// ---------------------------------------------------------------------------------------------
// The two sides of a request, and the gRPC calls to the ext-service.

/** The request as the downstream client sent it. */
export interface DownstreamRequest {
  method: string;
  path: string;
  authority?: string;
  headers: Record<string, string>;
  /** Undefined: no body (headers end the stream). */
  body?: Buffer | AsyncIterable<Buffer>;
  /** The peer's address, which the connection manager puts in x-forwarded-for. */
  remoteAddress?: string;
  /** The listener side of the connection, which ext_authz sends as `attributes.destination`. */
  localAddress?: string;
  /**
   * False when the path matches a direct_response route (no route entry: the rate limit filter
   * has nothing to ask about). Default true.
   */
  routed?: boolean;
}

/** The request as the router sends it to the MCP server. */
export interface UpstreamRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: Buffer;
}

/** One DATA frame; `end` is end of stream. */
export interface BodyFrame {
  data: Buffer;
  end: boolean;
}

export interface UpstreamAnswer {
  status: number;
  headers: Record<string, string>;
  /** False when the headers end the stream (204, 304, content-length: 0, HEAD). */
  hasBody: boolean;
  /** Frames as they arrive; the last has `end` (possibly empty). */
  body: AsyncIterable<BodyFrame>;
}

/**
 * Why the router answers instead of the upstream: the local reply router.cc sends. A cluster
 * rejects with one to say which (no healthy host, a connect failure with its transport reason,
 * a reset); any other rejection is taken as a connect failure with no transport reason.
 */
export class UpstreamLocalReply extends Error {
  constructor(
    readonly status: number,
    readonly body: string,
    readonly details: string,
    readonly flags: string[],
  ) {
    super(details);
    this.name = "UpstreamLocalReply";
  }

  /** No host to pick: every host failed its health check or is ejected (503, UH). */
  static noHealthyUpstream(): UpstreamLocalReply {
    return new UpstreamLocalReply(503, "no healthy upstream", "no_healthy_upstream", ["UH"]);
  }

  /**
   * onUpstreamReset before the response: "reset reason: <reason>" in the body, and the details
   * `upstream_reset_before_response_started{<reason>|<transport failure reason>}` with spaces as
   * underscores (Envoy 1.3x: the reason is "remote connection failure", no longer
   * "connection failure", and "|" separates the transport failure reason, formerly ",").
   */
  static reset(reason: string, transportFailure?: string): UpstreamLocalReply {
    const flag =
      reason === "remote connection failure" ||
      reason === "local connection failure" ||
      reason === "connection timeout"
        ? "UF"
        : reason === "connection termination"
          ? "UC"
          : "UR";
    const body =
      `upstream connect error or disconnect/reset before headers. reset reason: ${reason}` +
      (transportFailure ? `, transport failure reason: ${transportFailure}` : "");
    const details = `upstream_reset_before_response_started{${reason}${transportFailure ? `|${transportFailure}` : ""}}`;
    return new UpstreamLocalReply(503, body, details.replace(/\s/g, "_"), [flag]);
  }
}

/**
 * The router's cluster: sends the request, resolves with the response headers as soon as they
 * come. Rejects when the server cannot be reached (Envoy answers 503, flag UF), with an
 * UpstreamLocalReply to say what Envoy would.
 */
export type UpstreamCluster = (request: UpstreamRequest, signal: AbortSignal) => Promise<UpstreamAnswer>;

/** Where the agent's response goes, as Envoy's codec writes it. */
export interface Downstream {
  headers(status: number, headers: Record<string, string>, end: boolean): void;
  data(chunk: Buffer, end: boolean): void;
  /** The stream is reset (after headers went out, nothing else can signal an error). */
  reset(reason: string): void;
}

export type StreamEvent =
  { kind: "reply"; reply: ProcessingResponse } | { kind: "end"; error?: ServiceError } | { kind: "timeout" };

/** One Process stream with a reply queue, as Envoy's gRPC async client sees it. */
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

  /** Half-close. */
  end(): void {
    this.call.end();
  }

  /** Reset the stream. */
  cancel(): void {
    this.call.cancel();
  }

  /**
   * Envoy's ExternalProcessorStreamImpl::close(): closeStream() then resetStream(), the only way
   * Envoy ends a stream while `ext_proc_graceful_grpc_close` stays off (its default).
   */
  closeAsEnvoy(): void {
    if (this.ended) return;
    this.call.end();
    this.call.cancel();
  }
}

/** The ext-service's services, as Envoy's gRPC clients call them. */
export interface ExtServiceCalls {
  check(request: CheckRequest, deadlineMs: number): Promise<CheckResponse>;
  openProcess(): ProcessCall;
  /** The rate limit service (ShouldRateLimit); rejects on an RPC error or the deadline. */
  shouldRateLimit(request: RateLimitRequest, deadlineMs: number): Promise<RateLimitResponse>;
}

// ---------------------------------------------------------------------------------------------
// What one request did, for tests.

export type AnsweredBy = "ext_authz" | "local_ratelimit" | "ratelimit" | "ext_proc" | "upstream" | "envoy";

/** Counters named as the rate limit filter's stats (`cluster.<route cluster>.ratelimit.*`), per request. */
export interface RateLimitStats {
  ok: number;
  over_limit: number;
  error: number;
  failure_mode_allowed: number;
}

/** Counters named as Envoy's ext_proc stats (`http.<prefix>.ext_proc.*`), per request. */
export interface ExtProcStats {
  streams_started: number;
  stream_msgs_sent: number;
  stream_msgs_received: number;
  spurious_msgs_received: number;
  streams_failed: number;
  message_timeouts: number;
  failure_mode_allowed: number;
  rejected_header_mutations: number;
  clear_route_cache_ignored: number;
  clear_route_cache_disabled: number;
  override_message_timeout_received: number;
  override_message_timeout_ignored: number;
}

export interface ExchangeTrace {
  /** Who produced the response. `envoy`: Envoy's own local reply (timeouts, limits, errors). */
  answeredBy: AnsweredBy;
  /** Envoy's response code details (`%RESPONSE_CODE_DETAILS%`) for local replies. */
  details?: string;
  /** Response flags (`%RESPONSE_FLAGS%`), e.g. RL, UAEX, UF. */
  flags: string[];
  /** Set when Envoy reset the downstream stream after sending part of a response. */
  reset?: boolean;
  check?: CheckResponse;
  /**
   * Why Check got no answer (the gRPC status and details, or the timeout): Envoy logs it and
   * answers status_on_error; the model keeps it for whoever reads the trace (a test, a bench).
   */
  checkError?: string;
  authzMetadata?: Record<string, StructJson>;
  upstreamRequest?: UpstreamRequest;
  sent: ProcessingRequest[];
  received: ProcessingResponse[];
  /** The last mode override Envoy applied. */
  modeOverride?: ProcessingMode;
  /** The response body mode in force when the response body started. */
  responseBodyMode?: BodySendMode;
  /** Dynamic metadata Envoy kept from ext_proc replies, by namespace (later replies win per field). */
  extProcMetadata: Record<string, Record<string, StructJson>>;
  stats: ExtProcStats;
  /** The global rate limit filter's call, when it made one. */
  rateLimitRequest?: RateLimitRequest;
  rateLimitStats: RateLimitStats;
}

// ---------------------------------------------------------------------------------------------
// Helpers.

const EMPTY = Buffer.alloc(0);

/** Envoy's local replies say "text/plain" unless local_reply_config changes it. */
const LOCAL_REPLY_CONTENT_TYPE = "text/plain";

/** Hop-by-hop headers the connection manager drops (ConnectionManagerUtility::mutateRequestHeaders/mutateResponseHeaders). */
const HOP_BY_HOP = ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"];

/** x-envoy-* headers a request from outside may not set (cleanInternalHeaders, edge request). */
const INTERNAL_HEADERS = [
  "x-envoy-decorator-operation",
  "x-envoy-downstream-service-cluster",
  "x-envoy-downstream-service-node",
  "x-envoy-retriable-status-codes",
  "x-envoy-retriable-header-names",
  "x-envoy-retry-on",
  "x-envoy-retry-grpc-on",
  "x-envoy-max-retries",
  "x-envoy-upstream-alt-stat-name",
  "x-envoy-upstream-rq-timeout-ms",
  "x-envoy-upstream-rq-per-try-timeout-ms",
  "x-envoy-upstream-rq-timeout-alt-response",
  "x-envoy-expected-rq-timeout-ms",
  "x-envoy-force-trace",
  "x-envoy-ip-tags",
  "x-envoy-original-url",
  "x-envoy-hedge-on-per-try-timeout",
  "x-envoy-internal",
];

/** Headers ext_proc may not touch without allow_all_routing (mutation_rules.cc ExtraRoutingHeaders). */
const ROUTING_HEADERS = new Set(["host", ":authority", ":method", ":scheme"]);

/** Headers as ext_proc sends them: bytes in raw_value (send_header_raw_value). */
function toHeaderMap(headers: Record<string, string>) {
  return {
    headers: Object.entries(headers).map(([key, value]) => ({
      key,
      raw_value: Buffer.from(value, "latin1"),
    })),
  };
}

function newStats(): ExtProcStats {
  return {
    streams_started: 0,
    stream_msgs_sent: 0,
    stream_msgs_received: 0,
    spurious_msgs_received: 0,
    streams_failed: 0,
    message_timeouts: 0,
    failure_mode_allowed: 0,
    rejected_header_mutations: 0,
    clear_route_cache_ignored: 0,
    clear_route_cache_disabled: 0,
    override_message_timeout_received: 0,
    override_message_timeout_ignored: 0,
  };
}

/**
 * ext_proc.cc effectiveModeOverride: header and trailer modes left DEFAULT keep the filter's
 * static ones; body modes always apply as given (unset = NONE).
 */
export function effectiveModeOverride(
  override: ProcessingMode,
  base: Required<ProcessingMode>,
): Required<ProcessingMode> {
  const pick = (v: ProcessingMode["request_header_mode"], b: NonNullable<typeof v>) =>
    v === undefined || v === "DEFAULT" ? b : v;
  return {
    request_header_mode: pick(override.request_header_mode, base.request_header_mode),
    response_header_mode: pick(override.response_header_mode, base.response_header_mode),
    request_trailer_mode: pick(override.request_trailer_mode, base.request_trailer_mode),
    response_trailer_mode: pick(override.response_trailer_mode, base.response_trailer_mode),
    request_body_mode: override.request_body_mode ?? "NONE",
    response_body_mode: override.response_body_mode ?? "NONE",
  };
}

/** mutation_rules.cc Checker with default rules: what a processor may change. */
function mutationAllowed(op: "set" | "append" | "remove", name: string, value: string): boolean {
  if (op === "remove" && (name.startsWith(":") || name === "host")) return false;
  if (ROUTING_HEADERS.has(name)) return false;
  if (name.startsWith(":") && op === "append") return false;
  if (name.startsWith("x-envoy")) return false;
  if (op === "remove") return true;
  if (name === ":status") return /^\d+$/.test(value) && Number(value) >= 200;
  return true;
}

/** A reply Envoy refuses: ext_proc answers it with status_on_error (handleErrorResponse). */
class ProcessingError extends Error {
  constructor(
    readonly details: string,
    readonly spurious = false,
  ) {
    super(details);
  }
}

/**
 * mutation_utils.cc applyHeaderMutations. Only `append` counts (append_action is not read by
 * ext_proc); values come from raw_value; rules that say "ignore" count a rejected mutation,
 * invalid input fails the reply.
 */
function applyHeaderMutation(
  headers: Record<string, string>,
  mutation: HeaderMutation | undefined,
  stats: ExtProcStats,
  removeContentLength = false,
): void {
  if (!mutation) return;
  for (const raw of mutation.remove_headers ?? []) {
    const name = raw.toLowerCase();
    if (!/^[!#$%&'*+\-.^_`|~0-9a-z:]+$/.test(name)) {
      stats.rejected_header_mutations++;
      throw new ProcessingError("Invalid character in remove_headers mutation.");
    }
    if (mutationAllowed("remove", name, "")) delete headers[name];
    else stats.rejected_header_mutations++;
  }
  for (const option of mutation.set_headers ?? []) {
    const name = option.header.key.toLowerCase();
    if (removeContentLength && name === "content-length") continue;
    const rawValue = option.header.raw_value;
    const value = rawValue ? Buffer.from(rawValue).toString("latin1") : "";
    if (option.header.value && rawValue && rawValue.length > 0) {
      stats.rejected_header_mutations++;
      throw new ProcessingError("Only one of value or raw_value in the HeaderValue message should be set.");
    }
    if (/[\0\r\n]/.test(value)) {
      stats.rejected_header_mutations++;
      throw new ProcessingError("Invalid character in set_headers mutation.");
    }
    const append = option.append?.value === true;
    const op = append && name in headers ? "append" : "set";
    if (!mutationAllowed(op, name, value)) {
      stats.rejected_header_mutations++;
      continue;
    }
    // addCopy keeps a second entry; a record joins them, as HTTP/1 would on the wire.
    headers[name] = op === "append" ? `${headers[name]}, ${value}` : value;
  }
}

function applyBodyMutation(body: Buffer, common: CommonResponse | undefined): Buffer | undefined {
  const mutation = common?.body_mutation;
  if (!mutation) return undefined;
  if (mutation.mutation === "clear_body" || mutation.clear_body) return EMPTY;
  if (mutation.mutation === "body" || mutation.body !== undefined) return Buffer.from(mutation.body ?? EMPTY);
  return body;
}

async function* bufferFrames(body: Buffer): AsyncIterable<BodyFrame> {
  yield { data: body, end: true };
}

/** A local reply on its way down the encoder path. */
interface LocalReply {
  status: number;
  body: string;
  headers?: Record<string, string>;
  details: string;
  flags?: string[];
  by: AnsweredBy;
}

/** The outcome of one event on the ext_proc stream. */
type Outcome =
  | { kind: "reply"; reply: ProcessingResponse }
  /** Not the awaited reply (override_message_timeout): wait on. */
  | { kind: "again" }
  /** Envoy gives up on the processor (failure_mode_allow, or the server closed the stream OK). */
  | { kind: "skip" }
  | { kind: "immediate"; immediate: ImmediateResponse }
  /** Envoy answers with a local reply instead (timeout, stream error, spurious reply). */
  | { kind: "fail"; status: number; details: string }
  /** stream_idle_timeout: nothing moved on the request for that long. */
  | { kind: "idle" };

/** A wait on the ext_proc stream: its event, the message timer, or the downstream going away. */
type WaitEvent = StreamEvent | { kind: "message_timeout" } | { kind: "aborted" };

// ---------------------------------------------------------------------------------------------

/** The model: one per "Envoy", shared by its requests (the rate-limit buckets live here). */
export class EnvoyModel {
  readonly config: EnvoyModelConfig;
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly calls: ExtServiceCalls,
    config: Partial<EnvoyModelConfig> = {},
  ) {
    this.config = { ...SHIPPED_CHAIN, ...config };
  }

  /**
   * The HTTP/1 codec's answer to request headers over `max_request_headers_kb`, or undefined when
   * they fit (codec_impl.cc ConnectionImpl::checkMaxHeadersSize: the header map's byteSize, the
   * names and values, without the request line). ServerConnectionImpl::sendProtocolError then
   * sends a local reply (status 431, details http1.headers_too_large) before the request's headers
   * are complete, so no HTTP filter (ext_authz, ext_proc) sees the request or its answer;
   * local_reply_config rewrites it, with no request headers to format from. Envoy closes the
   * connection after it.
   */
  headersTooLarge(
    rawHeaders: readonly string[],
  ): { status: number; headers: Record<string, string>; body: string } | undefined {
    // Node's rawHeaders: name, value, name, value...
    let size = 0;
    for (const part of rawHeaders) size += Buffer.byteLength(part);
    return size > this.config.maxRequestHeadersKb * 1024 ? this.headersTooLargeReply() : undefined;
  }

  /**
   * The HTTP/2 codec's check as each request header is decoded (http2/codec_impl.cc
   * ConnectionImpl::saveHeader): once the header map holds more than `max_request_headers_kb` of
   * names and values (pseudo-headers included) or more than `max_headers_count` headers, the
   * callback fails "temporally" and nghttp2 resets the stream (RST_STREAM INTERNAL_ERROR; details
   * http2.too_many_headers). Unlike HTTP/1 there is no 431 and no local reply: the request never
   * reaches the connection manager, so no filter and no local_reply_config sees it, and the
   * connection with its other streams goes on. Returns the details, or undefined when they fit.
   */
  http2HeadersOverflow(rawHeaders: readonly string[]): string | undefined {
    let size = 0;
    for (let i = 0; i < rawHeaders.length; i += 2) {
      size += Buffer.byteLength(rawHeaders[i]!) + Buffer.byteLength(rawHeaders[i + 1] ?? "");
      if (size > this.config.maxRequestHeadersKb * 1024 || i / 2 + 1 > this.config.maxHeadersCount)
        return "http2.too_many_headers";
    }
    return undefined;
  }

  /** The 431 local reply of headersTooLarge, after local_reply_config. */
  headersTooLargeReply(): { status: number; headers: Record<string, string>; body: string } {
    let status = 431;
    let body = "Request Header Fields Too Large";
    let contentType = LOCAL_REPLY_CONTENT_TYPE;
    const facts: LocalReplyFacts = { status, flags: [], details: "http1.headers_too_large" };
    const mapper = this.config.localReplyMappers.find((m) => m.matches(facts));
    if (mapper) {
      status = mapper.status ?? status;
      const format = mapper.format?.({});
      if (format) ({ body, contentType } = format);
    }
    return {
      status,
      headers: {
        "content-type": contentType,
        "content-length": String(Buffer.byteLength(body)),
        server: this.config.serverName,
        connection: "close",
      },
      body,
    };
  }

  /** One HTTP request through the chain; resolves when Envoy is done with it. */
  handle(
    request: DownstreamRequest,
    cluster: UpstreamCluster,
    downstream: Downstream,
    signal?: AbortSignal,
  ): Promise<ExchangeTrace> {
    return new ModelStream(this, this.calls, request, cluster, downstream, signal).run();
  }

  /**
   * local_ratelimit: a token bucket per descriptor value, refilled `tokensPerFill` every
   * `fillIntervalMs` up to `maxTokens`. Returns false when the request is limited.
   */
  takeToken(value: string | undefined): boolean {
    const limit = this.config.rateLimit;
    if (!limit) return true;
    const named = value !== undefined ? limit.buckets[value] : undefined;
    const bucket = named ?? limit.fallback;
    const key = named ? `v:${value}` : "default";
    const now = Date.now();
    let state = this.buckets.get(key);
    if (!state) this.buckets.set(key, (state = { tokens: bucket.maxTokens, at: now }));
    const fills = Math.floor((now - state.at) / bucket.fillIntervalMs);
    if (fills > 0) {
      state.tokens = Math.min(bucket.maxTokens, state.tokens + fills * bucket.tokensPerFill);
      state.at += fills * bucket.fillIntervalMs;
    }
    if (state.tokens <= 0) return false;
    state.tokens--;
    return true;
  }
}

/** One request's trip through the chain. */
class ModelStream {
  private readonly trace: ExchangeTrace = {
    answeredBy: "upstream",
    flags: [],
    sent: [],
    received: [],
    extProcMetadata: {},
    stats: newStats(),
    rateLimitStats: { ok: 0, over_limit: 0, error: 0, failure_mode_allowed: 0 },
  };
  private readonly config: EnvoyModelConfig;
  private readonly requestHeaders: Record<string, string>;
  /** Envoy's dynamic metadata, by namespace. */
  private readonly dynamicMetadata: Record<string, Struct> = {};
  private readonly upstreamAbort = new AbortController();

  // ext_proc filter state (ext_proc.cc Filter, processor_state.cc)
  private call: ProcessCall | undefined;
  private processingComplete = false;
  private decodingMode: Required<ProcessingMode>;
  private encodingMode: Required<ProcessingMode>;
  /** Which headers reply the filter waits for (inHeaderProcessState). */
  private awaitingHeaders = false;
  private timer: NodeJS.Timeout | undefined;
  /** Set when the message timer fired: Envoy acts on it at once, the model at the next wait. */
  private timedOut = false;
  /** The current message's timer was extended by override_message_timeout (allowed once). */
  private timerOverridden = false;
  private wakeWaiter: (() => void) | undefined;

  /** Response headers exist (upstream's or a local reply's): a new local reply goes straight out. */
  private responseHeadersCreated = false;
  /** The rate limit service's response_headers_to_add, for whatever response goes out. */
  private rateLimitResponseHeaders: Record<string, string> | undefined;
  /** Response headers went downstream: after this, only a reset can signal an error. */
  private responseStarted = false;
  private finished = false;

  constructor(
    private readonly model: EnvoyModel,
    private readonly calls: ExtServiceCalls,
    private readonly request: DownstreamRequest,
    private readonly cluster: UpstreamCluster,
    private readonly downstream: Downstream,
    private readonly signal: AbortSignal | undefined,
  ) {
    this.config = model.config;
    this.decodingMode = { ...this.config.processingMode };
    this.encodingMode = { ...this.config.processingMode };
    this.requestHeaders = {
      ":authority": request.authority ?? "gateway.test",
      ":path": request.path,
      ":method": request.method,
      ":scheme": "https",
      ...lowerCaseKeys(request.headers),
    };
  }

  async run(): Promise<ExchangeTrace> {
    const onAbort = () => this.onDownstreamReset();
    this.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      if (this.signal?.aborted) return this.trace;
      await this.decode();
    } finally {
      this.signal?.removeEventListener("abort", onAbort);
      this.stopTimer();
      this.closeStream();
      this.upstreamAbort.abort();
    }
    return this.trace;
  }

  /** The client went away: Envoy destroys the filters (onDestroy closes the ext_proc stream). */
  private onDownstreamReset(): void {
    this.finished = true;
    this.stopTimer();
    this.closeStream();
    this.upstreamAbort.abort();
    this.wakeWaiter?.();
  }

  // -------------------------------------------------------------------------------------------
  // Decoder path.

  private async decode(): Promise<void> {
    this.mutateRequestHeaders();
    if (!(await this.extAuthz())) return;
    if (!(await this.localRateLimit())) return;
    if (!(await this.globalRateLimit())) return;
    if (!(await this.extProcRequestHeaders())) return;
    const body = await this.readRequestBody();
    if (body === undefined) return;
    const forwarded = await this.extProcRequestBody(body);
    if (forwarded === undefined) return;
    await this.route(forwarded);
  }

  /** ConnectionManagerUtility::mutateRequestHeaders for an edge request (use_remote_address: true). */
  private mutateRequestHeaders(): void {
    const h = this.requestHeaders;
    for (const name of HOP_BY_HOP) delete h[name];
    if (h.te !== undefined && h.te.toLowerCase() !== "trailers") delete h.te;
    for (const name of INTERNAL_HEADERS) delete h[name];
    const peer = this.request.remoteAddress ?? "127.0.0.1";
    h["x-forwarded-for"] = h["x-forwarded-for"] ? `${h["x-forwarded-for"]},${peer}` : peer;
    h["x-forwarded-proto"] ??= "https";
    h["x-envoy-external-address"] = peer;
    // generate_request_id, preserve_external_request_id: false: an edge request gets a new id.
    h["x-request-id"] = randomUUID();
  }

  /** ext_authz.cc: Check with the request headers; allow, deny (local reply) or error. */
  private async extAuthz(): Promise<boolean> {
    const h = this.requestHeaders;
    const path = h[":path"]!;
    const q = path.indexOf("?");
    const check: CheckRequest = {
      attributes: {
        request: {
          http: {
            id: h["x-request-id"],
            method: h[":method"],
            headers: { ...h },
            path,
            host: h[":authority"],
            scheme: h[":scheme"],
            protocol: "HTTP/1.1",
            ...(q >= 0 ? { query: path.slice(q + 1) } : {}),
          },
        },
        // CheckRequestUtils::createHttpCheck: the destination peer is the connection's local address.
        ...(this.request.localAddress !== undefined
          ? { destination: { address: { socket_address: { address: this.request.localAddress } } } }
          : {}),
      },
    };
    let response: CheckResponse;
    try {
      response = await this.calls.check(check, this.config.authzTimeoutMs);
    } catch (err) {
      // No answer (timeout, unreachable, RPC error): status_on_error, flag UAEX.
      this.trace.checkError = err instanceof Error ? err.message : String(err);
      await this.localReply({
        status: this.config.authzStatusOnError,
        body: "",
        details: "ext_authz_error",
        flags: ["UAEX"],
        by: "ext_authz",
      });
      return false;
    }
    if (this.finished) return false;
    this.trace.check = response;
    const allowed = response.status?.code === 0;
    if (response.dynamic_metadata?.fields && Object.keys(response.dynamic_metadata.fields).length > 0) {
      const fields = { ...response.dynamic_metadata.fields };
      if (allowed) fields.ext_authz_duration = { numberValue: 1 };
      this.dynamicMetadata[EXT_AUTHZ_NAMESPACE] = { fields };
      this.trace.authzMetadata = fromStruct({ fields });
    }
    if (!allowed) {
      const denied = response.denied_response;
      const headers: Record<string, string> = {};
      for (const option of denied?.headers ?? []) {
        const key = option.header.key.toLowerCase();
        const value = option.header.value ?? "";
        headers[key] = option.append?.value === true && key in headers ? `${headers[key]},${value}` : value;
      }
      await this.localReply({
        status: envoyProtos().httpStatusNumber(denied?.status?.code) || 403,
        body: denied?.body ?? "",
        headers,
        details: "ext_authz_denied",
        flags: ["UAEX"],
        by: "ext_authz",
      });
      return false;
    }
    const ok = response.ok_response;
    for (const option of ok?.headers ?? []) {
      const key = option.header.key.toLowerCase();
      const value = option.header.value ?? "";
      h[key] = appends(option) && key in h ? `${h[key]},${value}` : value;
    }
    for (const name of ok?.headers_to_remove ?? []) {
      const key = name.toLowerCase();
      if (!key.startsWith(":") && key !== "host") delete h[key];
    }
    return true;
  }

  /** local_ratelimit.cc: a limited request gets 429 "local_rate_limited", flag RL. */
  private async localRateLimit(): Promise<boolean> {
    const limit = this.config.rateLimit;
    if (!limit) return true;
    if (this.model.takeToken(this.requestHeaders[limit.descriptorHeader])) return true;
    await this.localReply({
      status: 429,
      body: "local_rate_limited",
      details: "local_rate_limited",
      flags: ["RL"],
      by: "local_ratelimit",
    });
    return false;
  }

  /**
   * ratelimit.cc decodeHeaders: only for a request whose route has a route entry; each
   * `rate_limits` entry makes a descriptor (an action that cannot produce its entry drops the
   * descriptor, a skipped one only its entry), and no descriptor means no call. OVER_LIMIT: a
   * local reply (rate_limited_status, x-envoy-ratelimited, the service's headers; flag RL,
   * details request_rate_limited). An RPC error or timeout: on unless failure_mode_deny
   * (status_on_error, flag RLSE, details rate_limiter_error). OK: the service's
   * request_headers_to_add go upstream; its response_headers_to_add go on the response.
   */
  private async globalRateLimit(): Promise<boolean> {
    const limit = this.config.globalRateLimit;
    if (!limit || this.request.routed === false) return true;
    const h = this.requestHeaders;
    // request_type "both" (the default): internal and external requests alike.
    const descriptors: NonNullable<RateLimitRequest["descriptors"]> = [];
    for (const actions of limit.descriptors) {
      const entries: { key: string; value: string }[] = [];
      let produced = true;
      for (const action of actions) {
        const value = h[action.header];
        if (value === undefined) {
          if (!action.skipIfAbsent) produced = false;
          if (!produced) break;
          continue;
        }
        entries.push({ key: action.descriptorKey, value });
      }
      if (produced && entries.length > 0) descriptors.push({ entries });
    }
    if (descriptors.length === 0) return true;
    // hits_addend: 0 unless a filter put envoy.ratelimit.hits_addend in the filter state.
    const request: RateLimitRequest = { domain: limit.domain, descriptors, hits_addend: 0 };
    this.trace.rateLimitRequest = request;
    const stats = this.trace.rateLimitStats;
    let response: RateLimitResponse | undefined;
    try {
      response = await this.calls.shouldRateLimit(request, limit.timeoutMs);
    } catch {
      response = undefined;
    }
    if (this.finished) return false;
    if (!response) {
      stats.error++;
      if (!limit.failureModeDeny) {
        stats.failure_mode_allowed++;
        return true;
      }
      await this.localReply({
        status: limit.statusOnError,
        body: "",
        details: "rate_limiter_error",
        flags: ["RLSE"],
        by: "ratelimit",
      });
      return false;
    }
    const toAdd: Record<string, string> = {};
    for (const header of response.response_headers_to_add ?? [])
      toAdd[header.key.toLowerCase()] = header.value;
    if (response.overall_code === "OVER_LIMIT") {
      stats.over_limit++;
      if (limit.xEnvoyRateLimitedHeader) toAdd["x-envoy-ratelimited"] = "true";
      await this.localReply({
        status: limit.rateLimitedStatus,
        body: "",
        headers: toAdd,
        details: "request_rate_limited",
        flags: ["RL"],
        by: "ratelimit",
      });
      return false;
    }
    stats.ok++;
    if (Object.keys(toAdd).length > 0) this.rateLimitResponseHeaders = toAdd;
    return true;
  }

  /** ext_proc decodeHeaders: request_headers, then the reply's mutations and mode override. */
  private async extProcRequestHeaders(): Promise<boolean> {
    if (this.decodingMode.request_header_mode === "SKIP") return true;
    const noBody = this.request.body === undefined;
    const answer = await this.exchangeMessage(
      { request_headers: { headers: toHeaderMap(this.requestHeaders), end_of_stream: noBody } },
      "request_headers",
    );
    if (answer === "done") return false;
    if (answer === "skip") return true;
    const common = answer.request_headers?.response;
    try {
      applyHeaderMutation(this.requestHeaders, common?.header_mutation, this.trace.stats);
    } catch (err) {
      return this.failProcessing(err);
    }
    this.clearRouteCache(common);
    return true;
  }

  /** Reads the request body up to the buffer limit; 413 above it (filter_manager.cc requestDataTooLarge). */
  private async readRequestBody(): Promise<Buffer | undefined> {
    const source = this.request.body;
    if (source === undefined) return EMPTY;
    if (Buffer.isBuffer(source)) {
      if (this.bufferedRequestBody() && source.byteLength > this.requestBufferLimit) {
        await this.payloadTooLarge();
        return undefined;
      }
      return source;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of source) {
      if (this.finished) return undefined;
      chunks.push(chunk);
      size += chunk.byteLength;
      if (this.bufferedRequestBody() && size > this.requestBufferLimit) {
        await this.payloadTooLarge();
        return undefined;
      }
    }
    return Buffer.concat(chunks);
  }

  private get requestBufferLimit(): number {
    return this.config.requestBufferLimitBytes ?? this.config.bufferLimitBytes;
  }

  private bufferedRequestBody(): boolean {
    return !this.processingComplete && this.decodingMode.request_body_mode === "BUFFERED";
  }

  private payloadTooLarge(): Promise<void> {
    return this.localReply({
      status: 413,
      body: "Payload Too Large",
      details: "request_payload_too_large",
      by: "envoy",
    });
  }

  /** ext_proc decodeData in BUFFERED mode: one message with the whole body. */
  private async extProcRequestBody(body: Buffer): Promise<Buffer | undefined> {
    if (this.request.body === undefined || this.processingComplete) return body;
    if (this.decodingMode.request_body_mode === "NONE") return body;
    // STREAMED and BUFFERED_PARTIAL requests are sent as one message too: the shipped filter
    // buffers requests, and the ext-service refuses anything else (the model does not stream them).
    const answer = await this.exchangeMessage(
      { request_body: { body, end_of_stream: true } },
      "request_body",
    );
    if (answer === "done") return undefined;
    if (answer === "skip") return body;
    const common = answer.request_body?.response;
    try {
      applyHeaderMutation(this.requestHeaders, common?.header_mutation, this.trace.stats);
      const replaced = applyBodyMutation(body, common);
      const length = this.requestHeaders["content-length"];
      if (replaced !== undefined && length !== undefined && Number(length) !== replaced.byteLength) {
        throw new ProcessingError("mismatch between content length and the length of the mutated body");
      }
      this.clearRouteCache(common);
      return replaced ?? body;
    } catch (err) {
      await this.failProcessing(err);
      return undefined;
    }
  }

  /** The router: sends the request upstream and encodes its answer. */
  private async route(body: Buffer): Promise<void> {
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(this.requestHeaders)) if (!k.startsWith(":")) headers[k] = v;
    if (!this.config.suppressEnvoyHeaders) headers["x-envoy-expected-rq-timeout-ms"] = "15000";
    const upstreamRequest: UpstreamRequest = {
      method: this.requestHeaders[":method"]!,
      path: this.requestHeaders[":path"]!,
      headers,
      body,
    };
    this.trace.upstreamRequest = upstreamRequest;
    let answer: UpstreamAnswer;
    try {
      answer = await this.cluster(upstreamRequest, this.upstreamAbort.signal);
    } catch (err) {
      if (this.finished) return;
      const reply =
        err instanceof UpstreamLocalReply ? err : UpstreamLocalReply.reset("remote connection failure");
      await this.localReply({
        status: reply.status,
        body: reply.body,
        details: reply.details,
        flags: reply.flags,
        by: "envoy",
      });
      return;
    }
    if (this.finished) return;
    const responseHeaders = lowerCaseKeys(answer.headers);
    for (const name of HOP_BY_HOP) delete responseHeaders[name];
    if (!this.config.suppressEnvoyHeaders) responseHeaders["x-envoy-upstream-service-time"] = "1";
    this.trace.answeredBy = "upstream";
    await this.encode(answer.status, responseHeaders, answer.hasBody, answer.body);
  }

  // -------------------------------------------------------------------------------------------
  // Encoder path.

  /**
   * filter_manager.cc sendLocalReply: before response headers exist, the reply runs through the
   * whole encoder chain (sendLocalReplyViaFilterChain, so ext_proc sees it: its first message
   * may be response_headers); once headers exist but have not gone out, it goes straight to the
   * codec (sendDirectLocalReply); after that, the stream is reset. local_reply_config rewrites
   * the reply first in every case.
   */
  private async localReply(reply: LocalReply): Promise<void> {
    if (this.finished) return;
    this.trace.answeredBy = reply.by;
    this.trace.details = reply.details;
    for (const f of reply.flags ?? []) if (!this.trace.flags.includes(f)) this.trace.flags.push(f);
    if (this.responseStarted) {
      this.resetDownstream(reply.details);
      return;
    }
    this.upstreamAbort.abort();
    let status = reply.status;
    let body = reply.body;
    const headers: Record<string, string> = { ...(reply.headers ?? {}) };
    if (body.length > 0) headers["content-type"] ??= LOCAL_REPLY_CONTENT_TYPE;
    const facts: LocalReplyFacts = { status, flags: this.trace.flags, details: reply.details };
    const mapper = this.config.localReplyMappers.find((m) => m.matches(facts));
    if (mapper) {
      status = mapper.status ?? status;
      const format = mapper.format?.(this.requestHeaders);
      if (format) {
        body = format.body;
        headers["content-type"] = format.contentType;
      }
    }
    headers["content-length"] = String(Buffer.byteLength(body));
    if (this.responseHeadersCreated) {
      this.sendDownstreamHeaders(status, headers, body.length === 0);
      if (body.length > 0) this.downstream.data(Buffer.from(body), true);
      this.finish();
      return;
    }
    await this.encode(status, headers, body.length > 0, bufferFrames(Buffer.from(body)));
  }

  /** The response (upstream's or a local reply) through ext_proc's encoder side, then downstream. */
  private async encode(
    status: number,
    headersIn: Record<string, string>,
    hasBody: boolean,
    frames: AsyncIterable<BodyFrame>,
  ): Promise<void> {
    this.responseHeadersCreated = true;
    const headers: Record<string, string> = { ":status": String(status), ...headersIn };
    if (!this.processingComplete && this.encodingMode.response_header_mode !== "SKIP") {
      const answer = await this.exchangeMessage(
        { response_headers: { headers: toHeaderMap(headers), end_of_stream: !hasBody } },
        "response_headers",
      );
      if (answer === "done") return;
      if (answer !== "skip") {
        const common = answer.response_headers?.response;
        try {
          applyHeaderMutation(
            headers,
            common?.header_mutation,
            this.trace.stats,
            this.removesContentLength(),
          );
        } catch (err) {
          await this.failProcessing(err);
          return;
        }
        this.clearRouteCache(common);
      }
    }
    const mode: BodySendMode = this.processingComplete ? "NONE" : this.encodingMode.response_body_mode;
    this.trace.responseBodyMode = mode;
    if (this.removesContentLength()) delete headers["content-length"];
    const responseStatus = Number(headers[":status"]);
    delete headers[":status"];

    if (!hasBody) {
      this.sendDownstreamHeaders(responseStatus, headers, true);
      this.finish();
      return;
    }
    const iterator = frames[Symbol.asyncIterator]();
    if (mode === "BUFFERED") {
      await this.encodeBuffered(responseStatus, headers, iterator);
      return;
    }
    this.sendDownstreamHeaders(responseStatus, headers, false);
    if (mode === "STREAMED") {
      await this.encodeStreamed(iterator);
      return;
    }
    for (;;) {
      const next = await this.nextFrame(iterator);
      if (this.finished) return;
      const frame = next.done ? { data: EMPTY, end: true } : next.value;
      this.downstream.data(frame.data, frame.end);
      if (frame.end) break;
    }
    this.finish();
  }

  /**
   * The upstream's next body frame. A body the upstream cuts (its connection closed or reset
   * mid-answer) ends the exchange as router.cc onUpstreamReset does once the upstream's headers
   * came: a local reply (503, flag UC, details
   * `upstream_reset_after_response_started{connection_termination}`), which goes straight to the
   * codec while the response headers are still held (a BUFFERED answer: local_reply_config makes
   * it the JSON-RPC upstream_unavailable error) and resets the downstream stream once they went
   * out (a cut body must not look complete). The caller sees `done` with the exchange finished;
   * the failure never escapes as a rejection of its own.
   */
  private async nextFrame(iterator: AsyncIterator<BodyFrame>): Promise<IteratorResult<BodyFrame>> {
    try {
      return await iterator.next();
    } catch {
      if (!this.finished) {
        this.stopTimer();
        this.closeStream();
        await this.localReply({
          status: 503,
          body: "upstream connect error or disconnect/reset before headers. reset reason: connection termination",
          details: "upstream_reset_after_response_started{connection_termination}",
          flags: ["UC"],
          by: "envoy",
        });
        // A wait for the processor's reply ends with the exchange.
        this.wakeWaiter?.();
      }
      return { done: true, value: undefined };
    }
  }

  /** processor_state.cc shouldRemoveContentLength: streamed bodies lose content-length. */
  private removesContentLength(): boolean {
    if (this.processingComplete) return false;
    const mode = this.encodingMode.response_body_mode;
    return mode === "STREAMED" || mode === "BUFFERED_PARTIAL";
  }

  /**
   * BUFFERED: headers wait with the body. Above the buffer limit Envoy answers 500 itself
   * (filter_manager.cc responseDataTooLarge) and drops the processor.
   */
  private async encodeBuffered(
    status: number,
    headersIn: Record<string, string>,
    iterator: AsyncIterator<BodyFrame>,
  ): Promise<void> {
    const chunks: Buffer[] = [];
    let size = 0;
    for (;;) {
      const current = await this.nextFrame(iterator);
      if (this.finished) return;
      if (current.done) break;
      chunks.push(current.value.data);
      size += current.value.data.byteLength;
      if (size > this.config.bufferLimitBytes) {
        this.processingComplete = true;
        this.closeStream();
        await this.localReply({
          status: 500,
          body: "Internal Server Error",
          details: "response_payload_too_large",
          by: "envoy",
        });
        return;
      }
      if (current.value.end) break;
    }
    const whole = Buffer.concat(chunks);
    const headers: Record<string, string> = { ":status": String(status), ...headersIn };
    const answer = await this.exchangeMessage(
      { response_body: { body: whole, end_of_stream: true } },
      "response_body",
    );
    if (answer === "done") return;
    let body: Buffer = whole;
    if (answer !== "skip") {
      const common = answer.response_body?.response;
      try {
        applyHeaderMutation(headers, common?.header_mutation, this.trace.stats);
        const replaced = applyBodyMutation(whole, common);
        const length = headers["content-length"];
        if (replaced !== undefined && length !== undefined && Number(length) !== replaced.byteLength) {
          throw new ProcessingError("mismatch between content length and the length of the mutated body");
        }
        body = replaced ?? whole;
      } catch (err) {
        await this.failProcessing(err);
        return;
      }
    }
    const finalStatus = Number(headers[":status"]);
    delete headers[":status"];
    this.sendDownstreamHeaders(finalStatus, headers, false);
    this.downstream.data(body, true);
    this.finish();
  }

  /**
   * STREAMED: every chunk goes to the processor as it arrives, without waiting for replies
   * (handleDataStreamedMode); replies are applied in order and each mutated chunk is written as
   * soon as its reply comes. The message timer restarts on each chunk sent and stops on each reply
   * (processor_state.cc onStartProcessorCall / onFinishProcessorCall).
   */
  private async encodeStreamed(iterator: AsyncIterator<BodyFrame>) {
    const queue: BodyFrame[] = [];
    let producerDone = false;
    let wake: (() => void) | undefined;
    const notify = () => {
      const w = wake;
      wake = undefined;
      w?.();
    };
    // Runs beside the loop below, which awaits the processor's replies meanwhile: it must end
    // (producerDone) however the body ends, and never reject unobserved.
    const producer = (async () => {
      try {
        for (;;) {
          const current = await this.nextFrame(iterator);
          if (this.finished) break;
          const frame: BodyFrame = current.done ? { data: EMPTY, end: true } : current.value;
          if (this.finished || this.processingComplete) {
            queue.push(frame);
            notify();
          } else {
            this.sendMessage({ response_body: { body: frame.data, end_of_stream: frame.end } });
            queue.push(frame);
            notify();
          }
          if (frame.end) break;
        }
      } finally {
        producerDone = true;
        notify();
      }
    })();
    producer.catch(() => undefined);
    try {
      for (;;) {
        if (this.finished) return;
        if (queue.length === 0) {
          if (producerDone) break;
          await new Promise<void>((r) => (wake = r));
          continue;
        }
        const frame = queue[0]!;
        if (this.processingComplete) {
          queue.shift();
          this.downstream.data(frame.data, frame.end);
          if (frame.end) break;
          continue;
        }
        const answer = await this.awaitReply("response_body");
        if (answer === "done") return;
        queue.shift();
        let out = frame.data;
        if (answer !== "skip") {
          out = applyBodyMutation(frame.data, answer.response_body?.response) ?? frame.data;
        }
        if (out.byteLength > 0 || frame.end) this.downstream.data(out, frame.end);
        if (frame.end) break;
      }
      this.finish();
    } finally {
      await producer.catch(() => undefined);
    }
  }

  // -------------------------------------------------------------------------------------------
  // The ext_proc stream.

  /** Opens the stream on first use (openStream), sends one message and waits for its reply. */
  private async exchangeMessage(
    message: ProcessingRequest,
    kind: Exclude<ProcessingResponseKind, "immediate_response">,
  ): Promise<ProcessingResponse | "skip" | "done"> {
    this.sendMessage(message);
    return this.awaitReply(kind);
  }

  private sendMessage(message: ProcessingRequest): void {
    if (!this.call) {
      this.call = this.calls.openProcess();
      this.trace.stats.streams_started++;
    }
    // addDynamicMetadata: the forwarding namespaces go with every message.
    const forwarded: Record<string, Struct> = {};
    for (const ns of this.config.forwardingNamespaces) {
      const value = this.dynamicMetadata[ns];
      if (value) forwarded[ns] = value;
    }
    const full: ProcessingRequest = { ...message, metadata_context: { filter_metadata: forwarded } };
    this.trace.sent.push(full);
    this.trace.stats.stream_msgs_sent++;
    this.awaitingHeaders = message.request_headers !== undefined || message.response_headers !== undefined;
    this.startTimer();
    try {
      this.call.send(full);
    } catch {
      // The stream already failed; the reply wait reports it.
    }
  }

  private startTimer(ms = this.config.messageTimeoutMs): void {
    this.stopTimer();
    this.timerOverridden = false;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.timedOut = true;
      this.wakeWaiter?.();
    }, ms);
  }

  private stopTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.timedOut = false;
  }

  /**
   * Waits for the reply to the oldest message (ext_proc.cc onReceiveMessage): applies a mode
   * override from a headers reply, dynamic metadata for receiving namespaces, and turns timeouts,
   * stream errors, spurious and immediate replies into what Envoy does with them. Returns the
   * reply, "skip" (go on without the processor) or "done" (a local reply answered the request).
   */
  private async awaitReply(
    kind: Exclude<ProcessingResponseKind, "immediate_response">,
  ): Promise<ProcessingResponse | "skip" | "done"> {
    const call = this.call!;
    for (;;) {
      const event = await this.nextEvent(call);
      if (this.finished || event.kind === "aborted") return "done";
      const outcome = this.onEvent(event, kind);
      switch (outcome.kind) {
        case "again":
          continue;
        case "reply":
          return outcome.reply;
        case "skip":
          this.processingComplete = true;
          this.closeStream();
          return "skip";
        case "immediate":
          this.processingComplete = true;
          this.closeStream();
          await this.immediateResponse(outcome.immediate);
          return "done";
        case "fail":
          this.processingComplete = true;
          this.closeStream();
          await this.localReply({ status: outcome.status, body: "", details: outcome.details, by: "envoy" });
          return "done";
        case "idle":
          this.processingComplete = true;
          this.closeStream();
          this.trace.flags.push("SI");
          await this.localReply({
            status: 408,
            body: "stream timeout",
            details: "stream_idle_timeout",
            by: "envoy",
          });
          return "done";
      }
    }
  }

  /** The next stream event, the message timer firing, or the downstream going away. */
  private nextEvent(call: ProcessCall): Promise<WaitEvent> {
    if (this.finished) return Promise.resolve({ kind: "aborted" });
    if (this.timedOut) {
      this.timedOut = false;
      return Promise.resolve({ kind: "message_timeout" });
    }
    return new Promise<WaitEvent>((resolve) => {
      let settled = false;
      const settle = (e: WaitEvent) => {
        if (settled) return;
        settled = true;
        this.wakeWaiter = undefined;
        resolve(e);
      };
      this.wakeWaiter = () => {
        if (this.finished) return settle({ kind: "aborted" });
        if (this.timedOut) {
          this.timedOut = false;
          settle({ kind: "message_timeout" });
        }
      };
      // Without a message timer (Envoy stops it on every reply, even with chunks still out),
      // only the stream idle timeout ends a wait.
      call.next(this.config.streamIdleTimeoutMs).then(settle, () => settle({ kind: "end" }));
    });
  }

  private onEvent(event: WaitEvent, kind: Exclude<ProcessingResponseKind, "immediate_response">): Outcome {
    const stats = this.trace.stats;
    if (event.kind === "aborted") return { kind: "skip" };
    if (event.kind === "timeout") return { kind: "idle" };
    if (event.kind === "message_timeout") {
      stats.message_timeouts++;
      if (this.config.failureModeAllow) {
        stats.failure_mode_allowed++;
        return { kind: "skip" };
      }
      // onMessageTimeout: always 504, whatever status_on_error says.
      return { kind: "fail", status: 504, details: "ext_proc_error_per-message_timeout_exceeded" };
    }
    if (event.kind === "end") {
      this.stopTimer();
      // onGrpcClose: the processor ended the stream with OK: Envoy goes on without it.
      if (!event.error) return { kind: "skip" };
      stats.streams_failed++;
      if (this.config.failureModeAllow) {
        stats.failure_mode_allowed++;
        return { kind: "skip" };
      }
      return {
        kind: "fail",
        status: this.config.statusOnError,
        details: `ext_proc_error_gRPC_error_${event.error.code}{${event.error.details ?? ""}}`,
      };
    }
    const reply = event.reply;
    this.trace.received.push(reply);
    if (reply.override_message_timeout !== undefined) {
      // onNewTimeout: honoured once per message, between 1 ms and max_message_timeout, and only
      // while the timer runs; the reply itself is still to come.
      const { seconds = 0, nanos = 0 } = reply.override_message_timeout;
      const ms = Number(seconds) * 1000 + Math.floor(nanos / 1e6);
      if (this.timer && !this.timerOverridden && ms >= 1 && ms <= this.config.maxMessageTimeoutMs) {
        this.startTimer(ms);
        this.timerOverridden = true;
        stats.override_message_timeout_received++;
      } else {
        stats.override_message_timeout_ignored++;
      }
      return { kind: "again" };
    }
    this.stopTimer();
    if (this.config.allowModeOverride && this.awaitingHeaders && reply.mode_override) {
      const mode = effectiveModeOverride(reply.mode_override, this.config.processingMode);
      this.decodingMode = mode;
      this.encodingMode = { ...mode };
      this.trace.modeOverride = reply.mode_override;
    }
    this.awaitingHeaders = false;
    if (reply.response === "immediate_response" && reply.immediate_response) {
      stats.stream_msgs_received++;
      this.keepMetadata(reply);
      return { kind: "immediate", immediate: reply.immediate_response };
    }
    if (reply.response !== kind) {
      stats.spurious_msgs_received++;
      // ext_proc_fail_close_spurious_resp (on by default): fail closed unless failure_mode_allow.
      if (this.config.failureModeAllow) {
        stats.failure_mode_allowed++;
        return { kind: "skip" };
      }
      return { kind: "fail", status: this.config.statusOnError, details: "spurious message" };
    }
    stats.stream_msgs_received++;
    this.keepMetadata(reply);
    return { kind: "reply", reply };
  }

  /** setDynamicMetadata: only namespaces listed in receiving_namespaces are kept. */
  private keepMetadata(reply: ProcessingResponse): void {
    const metadata = reply.dynamic_metadata ? fromStruct(reply.dynamic_metadata) : {};
    for (const [namespace, value] of Object.entries(metadata)) {
      if (!this.config.receivingNamespaces.includes(namespace)) continue;
      if (typeof value !== "object" || value === null || Array.isArray(value)) continue;
      this.trace.extProcMetadata[namespace] = { ...this.trace.extProcMetadata[namespace], ...value };
    }
  }

  /** sendImmediateResponse: a status below 200 (or none) becomes 200; header mutations follow the rules. */
  private immediateResponse(immediate: ImmediateResponse): Promise<void> {
    const status = envoyProtos().httpStatusNumber(immediate.status?.code);
    const headers: Record<string, string> = {};
    try {
      applyHeaderMutation(headers, immediate.headers, this.trace.stats);
    } catch {
      // Logged by Envoy ("Immediate response mutations failed"); the reply still goes out.
    }
    return this.localReply({
      status: status >= 200 ? status : 200,
      body: Buffer.from(immediate.body ?? EMPTY).toString("utf8"),
      headers,
      details: immediate.details ?? "",
      by: "ext_proc",
    });
  }

  /** A reply Envoy refused (handleErrorResponse): status_on_error, the stream closed. */
  private async failProcessing(err: unknown): Promise<false> {
    if (!(err instanceof ProcessingError)) throw err;
    this.processingComplete = true;
    this.closeStream();
    await this.localReply({ status: this.config.statusOnError, body: "", details: err.details, by: "envoy" });
    return false;
  }

  /** clear_route_cache needs a header mutation in the same reply; RETAIN ignores it anyway. */
  private clearRouteCache(common: CommonResponse | undefined): void {
    if (!common?.clear_route_cache) return;
    if (!common.header_mutation) this.trace.stats.clear_route_cache_ignored++;
    else if (this.config.routeCacheAction === "RETAIN") this.trace.stats.clear_route_cache_disabled++;
  }

  private closeStream(): void {
    this.call?.closeAsEnvoy();
  }

  // -------------------------------------------------------------------------------------------
  // Downstream.

  /** mutateResponseHeaders + the codec: hop-by-hop out, server and date set. */
  private sendDownstreamHeaders(status: number, headersIn: Record<string, string>, end: boolean): void {
    if (this.finished) return;
    // The rate limit filter's encodeHeaders runs after ext_proc's (encoder filters run in reverse).
    const headers = { ...headersIn, ...this.rateLimitResponseHeaders };
    for (const name of HOP_BY_HOP) delete headers[name];
    headers.server = this.config.serverName;
    headers.date = new Date().toUTCString();
    this.responseStarted = true;
    this.downstream.headers(status, headers, end);
  }

  private resetDownstream(reason: string): void {
    if (this.finished) return;
    this.trace.reset = true;
    this.finished = true;
    this.upstreamAbort.abort();
    this.downstream.reset(reason);
  }

  private finish(): void {
    this.finished = true;
  }
}

function appends(option: HeaderValueOption): boolean {
  if (option.append !== undefined) return option.append.value;
  return (option.append_action ?? "APPEND_IF_EXISTS_OR_ADD") === "APPEND_IF_EXISTS_OR_ADD";
}
