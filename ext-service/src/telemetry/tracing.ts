import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  defaultTextMapGetter,
  defaultTextMapSetter,
  trace,
  type Attributes,
  type Context,
  type Span,
} from "@opentelemetry/api";
import type { GatewayConfig } from "../config/schema.js";
import type { Exchange } from "../policy/exchange.js";
import { Reasons } from "../policy/reasons.js";
import type { TracerSdk, TracingOptions } from "./tracing-sdk.js";

export type { TracingOptions } from "./tracing-sdk.js";

/**
 * OpenTelemetry spans for the gateway's two hops, after the semantic conventions for MCP
 * (status: development; open-telemetry/semantic-conventions-genai, docs/gen-ai/mcp.md): a SERVER
 * span for the agent's request to the gateway and a CLIENT span for the gateway's request to the
 * MCP server, both named `{mcp.method.name} {target}`. They continue the caller's trace (the
 * `traceparent` of the request, or of a 2026-07-28 request's `params._meta`), and the CLIENT
 * span's context goes to the server. Gateway facts (decision, reasons, causes, agent, server)
 * are `mcp_gateway.*` attributes.
 *
 * Spans are made only when tracing is configured: the adapters hold no Tracing otherwise, and
 * each exchange costs one `undefined` check. The SDK and the exporter (tracing-sdk.ts) are loaded
 * only then too: tracingFromConfig imports them when the config turns tracing on, so a gateway
 * without tracing starts without loading them. Span ends ride on the audit record (AuditTrail calls
 * finish), which every exchange gets exactly once.
 */

/** Network facts of the agent's hop, as far as the plane knows them. */
export interface ServerHop {
  clientAddress?: string | undefined;
  clientPort?: number | undefined;
  /** HTTP version of the agent's request, e.g. "1.1". */
  httpVersion?: string | undefined;
  /** A context the plane was handed for this exchange (Envoy's gRPC metadata), preferred. */
  traceparent?: string | undefined;
}

interface ExchangeSpans {
  server: Span;
  serverContext: Context;
  client: Span | undefined;
}

/** The OTLP/HTTP traces URL from gateway.yaml and the standard OTEL_EXPORTER_OTLP_* variables. */
export function tracesUrl(
  configured: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): string | undefined {
  const traces = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT;
  if (traces) return traces;
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT;
  if (base) return `${base.replace(/\/+$/, "")}/v1/traces`;
  return configured;
}

/**
 * A Tracing for gateway.yaml's `tracing` section, or undefined when tracing is off. The SDK and
 * exporter are imported here, only when tracing is on.
 */
export async function tracingFromConfig(
  config: GatewayConfig,
  plane: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<Tracing | undefined> {
  const settings = config.tracing;
  if (!settings.enabled) return undefined;
  const url = tracesUrl(settings.endpoint, env);
  if (!url) return undefined;
  return createTracing({
    url,
    serviceName: env.OTEL_SERVICE_NAME || settings.serviceName,
    sampleRatio: settings.sampleRatio,
    plane,
  });
}

/** A Tracing with the SDK (loaded now if it was not yet) exporting to `options.url` or `options.exporter`. */
export async function createTracing(options: TracingOptions): Promise<Tracing> {
  const { createTracerSdk } = await import("./tracing-sdk.js");
  return new Tracing(options, createTracerSdk(options));
}

function methodTarget(exchange: Exchange): { method: string | undefined; target: string | undefined } {
  const method = exchange.methods[0];
  if (method === "tools/call") return { method, target: exchange.tools[0] };
  if (method === "prompts/get") return { method, target: exchange.prompts[0] };
  return { method, target: undefined };
}

function spanName(exchange: Exchange): string {
  const { method, target } = methodTarget(exchange);
  if (method === undefined) return exchange.httpMethod;
  return target === undefined ? method : `${method} ${target}`;
}

const RESOURCE_METHODS: ReadonlySet<string> = new Set([
  "resources/read",
  "resources/subscribe",
  "resources/unsubscribe",
]);

/** The MCP attributes both spans carry (the conventions' common set). */
function mcpAttributes(exchange: Exchange): Attributes {
  const attributes: Attributes = {};
  const { method, target } = methodTarget(exchange);
  if (method !== undefined) attributes["mcp.method.name"] = method;
  if (method === "tools/call" && target !== undefined) {
    attributes["gen_ai.tool.name"] = target;
    attributes["gen_ai.operation.name"] = "execute_tool";
  }
  if (method === "prompts/get" && target !== undefined) attributes["gen_ai.prompt.name"] = target;
  // Audit text: canonical, with anything a DLP detector finds replaced.
  if (method !== undefined && RESOURCE_METHODS.has(method) && exchange.resources[0] !== undefined) {
    attributes["mcp.resource.uri"] = exchange.resources[0];
  }
  if (exchange.rpcId !== undefined) attributes["jsonrpc.request.id"] = exchange.rpcId;
  if (exchange.protocolVersion !== undefined) attributes["mcp.protocol.version"] = exchange.protocolVersion;
  // Sessions exist in the 2025 revisions only; the id is the gateway-sealed one the client holds.
  if (exchange.era === "2025" && exchange.sessionId !== undefined) {
    attributes["mcp.session.id"] = exchange.sessionId;
  }
  attributes["network.transport"] = "tcp";
  attributes["network.protocol.name"] = "http";
  return attributes;
}

/** error.type, rpc.response.status_code and the status message of an outcome. */
interface Failure {
  type: string;
  code: string | undefined;
  message: string | undefined;
}

/** What the agent got: the gateway's refusal, or the server's answer as forwarded. */
function agentFailure(exchange: Exchange): Failure | undefined {
  if (exchange.decision !== "allow") {
    const reason = exchange.reasons[0];
    const info = reason === undefined ? undefined : Reasons[reason];
    return info
      ? { type: String(info.code), code: String(info.code), message: info.message }
      : { type: "_OTHER", code: undefined, message: undefined };
  }
  return upstreamFailure(exchange);
}

/** What the MCP server answered (its JSON-RPC error, or a tool result with isError). */
function upstreamFailure(exchange: Exchange): Failure | undefined {
  const outcome = exchange.outcome;
  if (outcome === undefined) return undefined;
  if ("code" in outcome) {
    return { type: String(outcome.code), code: String(outcome.code), message: outcome.message };
  }
  return outcome.toolError ? { type: "tool_error", code: undefined, message: undefined } : undefined;
}

function fail(span: Span, failure: Failure | undefined): void {
  if (!failure) return;
  span.setAttribute("error.type", failure.type);
  if (failure.code !== undefined) span.setAttribute("rpc.response.status_code", failure.code);
  span.setStatus({
    code: SpanStatusCode.ERROR,
    ...(failure.message !== undefined ? { message: failure.message } : {}),
  });
}

export class Tracing {
  private readonly spans = new WeakMap<Exchange, ExchangeSpans>();
  private readonly hops = new WeakMap<Exchange, ServerHop>();

  /** `sdk` from tracing-sdk.ts (createTracing loads it). */
  constructor(
    private readonly options: TracingOptions,
    private readonly sdk: TracerSdk,
  ) {}

  /**
   * The SERVER span of the agent's hop, started (at the exchange's start) on first use, once the
   * body was read: the parent is the context the plane was handed, else the 2026-07-28
   * `_meta.traceparent`, else the request's `traceparent`.
   */
  private serverSpans(exchange: Exchange): ExchangeSpans {
    let spans = this.spans.get(exchange);
    if (spans) return spans;
    const hop = this.hops.get(exchange);
    const parentHeader = hop?.traceparent ?? exchange.metaTraceparent ?? exchange.traceparent;
    const parent =
      parentHeader === undefined
        ? ROOT_CONTEXT
        : this.sdk.propagator.extract(ROOT_CONTEXT, { traceparent: parentHeader }, defaultTextMapGetter);
    const attributes: Attributes = {};
    if (hop?.clientAddress !== undefined) attributes["client.address"] = hop.clientAddress;
    if (hop?.clientPort !== undefined) attributes["client.port"] = hop.clientPort;
    if (hop?.httpVersion !== undefined) attributes["network.protocol.version"] = hop.httpVersion;
    const server = this.sdk.tracer.startSpan(
      spanName(exchange),
      { kind: SpanKind.SERVER, startTime: exchange.startedAt, attributes },
      parent,
    );
    spans = { server, serverContext: trace.setSpan(parent, server), client: undefined };
    this.spans.set(exchange, spans);
    return spans;
  }

  /** What the plane knows of the agent's hop at the start, for the SERVER span made later. */
  begin(exchange: Exchange, hop: ServerHop): void {
    this.hops.set(exchange, hop);
  }

  /**
   * The request goes to the MCP server now: starts the CLIENT span (child of the SERVER span)
   * and returns the `traceparent` that carries it to the server.
   */
  forwarding(
    exchange: Exchange,
    upstream: { address?: string | undefined; port?: number | undefined },
  ): string | undefined {
    const spans = this.serverSpans(exchange);
    if (spans.client) return undefined;
    const attributes: Attributes = {};
    if (upstream.address !== undefined) attributes["server.address"] = upstream.address;
    if (upstream.port !== undefined) attributes["server.port"] = upstream.port;
    if (exchange.server !== undefined) attributes["mcp_gateway.server"] = exchange.server;
    spans.client = this.sdk.tracer.startSpan(
      spanName(exchange),
      { kind: SpanKind.CLIENT, attributes },
      spans.serverContext,
    );
    const carrier: Record<string, string> = {};
    this.sdk.propagator.inject(trace.setSpan(ROOT_CONTEXT, spans.client), carrier, defaultTextMapSetter);
    return carrier.traceparent;
  }

  /** Ends the exchange's spans with everything the audit record knows (AuditTrail calls this). */
  finish(exchange: Exchange): void {
    const spans = this.serverSpans(exchange);
    this.spans.delete(exchange);
    this.hops.delete(exchange);
    const name = spanName(exchange);
    const common = mcpAttributes(exchange);
    const server = spans.server;
    server.updateName(name);
    server.setAttributes(common);
    server.setAttributes({
      "mcp_gateway.plane": this.options.plane,
      "mcp_gateway.request_id": exchange.requestId,
      "mcp_gateway.decision": exchange.decision,
      "mcp_gateway.reasons": exchange.reasons,
      "mcp_gateway.causes": exchange.causes,
      ...(exchange.server !== undefined ? { "mcp_gateway.server": exchange.server } : {}),
      ...(exchange.principal
        ? {
            "mcp_gateway.agent": exchange.principal.agent,
            ...(exchange.principal.issuer !== undefined
              ? { "mcp_gateway.issuer": exchange.principal.issuer }
              : {}),
          }
        : {}),
      ...(exchange.status !== undefined ? { "http.response.status_code": exchange.status } : {}),
    });
    fail(server, agentFailure(exchange));
    const client = spans.client;
    if (client) {
      client.updateName(name);
      client.setAttributes(common);
      // The hop failed when the gateway could not get an answer (upstream_*, breaker) or the
      // server answered with an error; a refusal of the answer by policy is the server span's.
      const hopFailed = exchange.decision === "error" && exchange.outcome === undefined;
      fail(client, hopFailed ? agentFailure(exchange) : upstreamFailure(exchange));
      client.end();
    }
    server.end();
  }

  /** Exports what is buffered (tests, shutdown). */
  flush(): Promise<void> {
    return this.sdk.forceFlush();
  }

  shutdown(): Promise<void> {
    return this.sdk.shutdown();
  }
}

/**
 * A 2026-07-28 body whose `params._meta.traceparent` named the caller's span, with it naming the
 * gateway's CLIENT span instead, so the server's span is a child of the gateway's (the
 * conventions propagate context there). Other bodies are returned as they are.
 */
export function withMetaTraceparent(exchange: Exchange, body: Buffer, traceparent: string): Buffer {
  if (exchange.metaTraceparent === undefined || exchange.era !== "2026") return body;
  const message = JSON.parse(body.toString("utf8")) as { params: { _meta: Record<string, unknown> } };
  message.params._meta.traceparent = traceparent;
  return Buffer.from(JSON.stringify(message), "utf8");
}
