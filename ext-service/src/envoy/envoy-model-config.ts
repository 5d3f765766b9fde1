import { readFileSync } from "node:fs";
import { parse } from "yaml";
import type {
  EnvoyModelConfig,
  GlobalRateLimitConfig,
  LocalReplyFacts,
  LocalReplyFormat,
  LocalReplyMapper,
  RequestHeaderAction,
} from "./envoy-model.js";
import { envoyProtos } from "./protos.js";
import type { ProcessingMode } from "./types.js";

/**
 * The Envoy model's configuration read from an Envoy bootstrap (envoy/envoy.yaml): the fields of
 * the listener, connection manager and filters the model acts on. Used by a test to hold
 * SHIPPED_CHAIN to the shipped file, and by anyone modelling another bootstrap. Throws on what the
 * model cannot represent (an unknown local-reply filter), rather than modelling it wrongly.
 */

type Obj = Record<string, unknown>;

const HCM = "envoy.filters.network.http_connection_manager";

function obj(value: unknown): Obj {
  return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Obj) : {};
}

function list(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

/** A protobuf JSON Duration ("5s", "0.25s") in milliseconds. */
function durationMs(value: unknown): number | undefined {
  if (typeof value !== "string") return undefined;
  const m = /^(\d+(?:\.\d+)?)s$/.exec(value);
  return m ? Math.round(Number(m[1]) * 1000) : undefined;
}

function statusOf(value: unknown): number | undefined {
  const code = obj(value).code;
  if (code === undefined) return undefined;
  return envoyProtos().httpStatusNumber(code as string | number);
}

/** A local_reply_config filter as a predicate (the kinds envoy.yaml uses). */
function filterOf(filter: Obj): (r: LocalReplyFacts) => boolean {
  if (filter.response_flag_filter) {
    const flags = list(obj(filter.response_flag_filter).flags) as string[];
    return (r) => r.flags.some((f) => flags.includes(f));
  }
  if (filter.status_code_filter) {
    const comparison = obj(obj(filter.status_code_filter).comparison);
    const value = Number(obj(comparison.value).default_value);
    const op = (comparison.op as string | undefined) ?? "EQ";
    if (op === "EQ") return (r) => r.status === value;
    if (op === "GE") return (r) => r.status >= value;
    if (op === "LE") return (r) => r.status <= value;
    throw new Error(`local_reply_config: status comparison '${op}' is not modelled`);
  }
  if (filter.and_filter) {
    const parts = list(obj(filter.and_filter).filters).map((f) => filterOf(obj(f)));
    return (r) => parts.every((p) => p(r));
  }
  if (filter.or_filter) {
    const parts = list(obj(filter.or_filter).filters).map((f) => filterOf(obj(f)));
    return (r) => parts.some((p) => p(r));
  }
  if (filter.extension_filter) {
    const expression = obj(obj(filter.extension_filter).typed_config).expression;
    const m =
      typeof expression === "string" ? /^response\.code_details == '([^']*)'$/.exec(expression.trim()) : null;
    if (!m) throw new Error(`local_reply_config: CEL filter '${String(expression)}' is not modelled`);
    const details = m[1];
    return (r) => r.details === details;
  }
  throw new Error(`local_reply_config: filter ${Object.keys(filter).join(",")} is not modelled`);
}

/** json_format with %REQ(HEADER)% operators; an unavailable value is written as null. */
function formatJson(template: unknown, headers: Readonly<Record<string, string>>): unknown {
  if (typeof template === "string") {
    const whole = /^%REQ\(([^)]+)\)%$/.exec(template);
    if (whole) return headers[whole[1]!.toLowerCase()] ?? null;
    return template;
  }
  if (Array.isArray(template)) return template.map((t) => formatJson(t, headers));
  if (typeof template === "object" && template !== null) {
    return Object.fromEntries(Object.entries(template).map(([k, v]) => [k, formatJson(v, headers)]));
  }
  return template;
}

function mapperOf(mapper: Obj): LocalReplyMapper {
  const matches = filterOf(obj(mapper.filter));
  const status = typeof mapper.status_code === "number" ? mapper.status_code : undefined;
  const override = obj(mapper.body_format_override);
  let format: ((headers: Readonly<Record<string, string>>) => LocalReplyFormat) | undefined;
  if (override.json_format !== undefined) {
    const template = override.json_format;
    const contentType = (override.content_type as string | undefined) ?? "application/json";
    format = (headers) => ({ contentType, body: JSON.stringify(formatJson(template, headers)) });
  } else if (Object.keys(override).length > 0) {
    throw new Error("local_reply_config: only json_format bodies are modelled");
  }
  return { matches, ...(status !== undefined ? { status } : {}), ...(format ? { format } : {}) };
}

/** The HTTP filters the model runs, in its order (router last). */
export const MODELLED_FILTERS = [
  "envoy.filters.http.ext_authz",
  "envoy.filters.http.local_ratelimit",
  "envoy.filters.http.ratelimit",
  "envoy.filters.http.ext_proc",
  "envoy.filters.http.router",
];

/** The global rate limit filter's settings; only request_headers actions are modelled. */
function globalRateLimitOf(config: Obj): GlobalRateLimitConfig {
  const descriptors = list(config.rate_limits).map((entry) =>
    list(obj(entry).actions).map((raw): RequestHeaderAction => {
      const action = obj(raw);
      const headers = obj(action.request_headers);
      if (Object.keys(action).length !== 1 || typeof headers.header_name !== "string")
        throw new Error(`ratelimit: action ${Object.keys(action).join(",")} is not modelled`);
      return {
        header: headers.header_name.toLowerCase(),
        descriptorKey: String(headers.descriptor_key),
        skipIfAbsent: headers.skip_if_absent === true,
      };
    }),
  );
  if (config.request_type !== undefined && config.request_type !== "both")
    throw new Error(`ratelimit: request_type '${String(config.request_type)}' is not modelled`);
  const limited = statusOf(config.rate_limited_status);
  return {
    domain: String(config.domain),
    descriptors,
    timeoutMs: durationMs(config.timeout) ?? 20,
    failureModeDeny: config.failure_mode_deny === true,
    statusOnError: statusOf(config.status_on_error) ?? 500,
    rateLimitedStatus: limited !== undefined && limited >= 400 ? limited : 429,
    xEnvoyRateLimitedHeader: config.disable_x_envoy_ratelimited_header !== true,
  };
}

/** The model's configuration for one listener of a bootstrap file. */
export function chainFromEnvoyYaml(file: string, listenerName = "mcp_tls"): Partial<EnvoyModelConfig> {
  const bootstrap = obj(parse(readFileSync(file, "utf8")));
  const listener = list(obj(bootstrap.static_resources).listeners)
    .map(obj)
    .find((l) => l.name === listenerName);
  if (!listener) throw new Error(`${file}: no listener '${listenerName}'`);
  const hcm = list(obj(list(listener.filter_chains).map(obj)[0]).filters)
    .map(obj)
    .find((f) => f.name === HCM);
  const manager = obj(hcm?.typed_config);
  const filters = list(manager.http_filters).map(obj);
  const names = filters.map((f) => String(f.name));
  const order = MODELLED_FILTERS.filter((name) => names.includes(name));
  if (names.length !== order.length || names.some((name, i) => name !== order[i]))
    throw new Error(`${file}: http_filters ${names.join(", ")} are not in an order the model runs`);
  const filter = (name: string) => obj(filters.find((f) => f.name === name)?.typed_config);
  const global = filters.find((f) => f.name === "envoy.filters.http.ratelimit");
  const authz = filter("envoy.filters.http.ext_authz");
  const proc = filter("envoy.filters.http.ext_proc");
  const router = filter("envoy.filters.http.router");
  const metadata = obj(proc.metadata_options);
  const out: Partial<EnvoyModelConfig> = {
    processingMode: { ...(obj(proc.processing_mode) as Required<ProcessingMode>) },
    allowModeOverride: proc.allow_mode_override === true,
    messageTimeoutMs: durationMs(proc.message_timeout) ?? 200,
    maxMessageTimeoutMs: durationMs(proc.max_message_timeout) ?? 0,
    failureModeAllow: proc.failure_mode_allow === true,
    statusOnError: statusOf(proc.status_on_error) ?? 500,
    routeCacheAction:
      (proc.route_cache_action as EnvoyModelConfig["routeCacheAction"] | undefined) ?? "DEFAULT",
    forwardingNamespaces: list(obj(metadata.forwarding_namespaces).untyped) as string[],
    receivingNamespaces: list(obj(metadata.receiving_namespaces).untyped) as string[],
    authzTimeoutMs: durationMs(obj(authz.grpc_service).timeout) ?? 200,
    authzStatusOnError: statusOf(authz.status_on_error) ?? 403,
    globalRateLimit: global ? globalRateLimitOf(obj(global.typed_config)) : undefined,
    bufferLimitBytes: Number(listener.per_connection_buffer_limit_bytes ?? 1024 * 1024),
    serverName: (manager.server_name as string | undefined) ?? "envoy",
    maxRequestHeadersKb: Number(manager.max_request_headers_kb ?? 60),
    maxHeadersCount: Number(obj(manager.common_http_protocol_options).max_headers_count ?? 100),
    suppressEnvoyHeaders: router.suppress_envoy_headers === true,
    streamIdleTimeoutMs: durationMs(manager.stream_idle_timeout) ?? 300_000,
    localReplyMappers: list(obj(manager.local_reply_config).mappers).map((m) => mapperOf(obj(m))),
  };
  return out;
}
