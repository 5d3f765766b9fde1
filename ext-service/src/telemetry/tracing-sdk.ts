import type { TextMapPropagator, Tracer } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  type SpanExporter,
} from "@opentelemetry/sdk-trace-base";

/**
 * The OpenTelemetry SDK and the OTLP/HTTP exporter, kept apart from tracing.ts: that module is
 * loaded by every plane, this one only when tracing is on (tracingFromConfig imports it
 * dynamically), so a gateway without tracing does not load, compile or start them.
 */

export interface TracingOptions {
  /** OTLP/HTTP traces URL, e.g. http://jaeger:4318/v1/traces. */
  url: string;
  serviceName: string;
  /** Share of new traces sampled (a sampled caller's trace is always followed). */
  sampleRatio: number;
  /** The data plane: `edge` or `envoy`. */
  plane: string;
  /** For tests: where spans go instead of an OTLP/HTTP exporter to `url`. */
  exporter?: SpanExporter;
}

export interface TracerSdk {
  tracer: Tracer;
  propagator: TextMapPropagator;
  forceFlush(): Promise<void>;
  shutdown(): Promise<void>;
}

export function createTracerSdk(options: TracingOptions): TracerSdk {
  const exporter = options.exporter ?? new OTLPTraceExporter({ url: options.url });
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({
      "service.name": options.serviceName,
      "mcp_gateway.plane": options.plane,
    }),
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(options.sampleRatio) }),
    spanProcessors: [new BatchSpanProcessor(exporter, { scheduledDelayMillis: 1000 })],
  });
  return {
    tracer: provider.getTracer("mcp-gateway"),
    propagator: new W3CTraceContextPropagator(),
    forceFlush: () => provider.forceFlush(),
    shutdown: () => provider.shutdown(),
  };
}
