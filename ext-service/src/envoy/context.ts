import type { GatewayState } from "../runtime/gateway-state.js";
import type { AuditTrail } from "../telemetry/audit.js";
import type { Logger } from "../telemetry/logger.js";
import type { Metrics } from "../telemetry/metrics.js";
import type { Tracing } from "../telemetry/tracing.js";
import type { PinVerifier } from "../upstream/pin-verifier.js";
import type { TokenExchanger } from "../upstream/token-exchange.js";
import type { GatewayEngine } from "../config/compile.js";

/** What the Envoy adapters share: the policy core and telemetry. */
export interface AdapterContext {
  engine: GatewayEngine;
  audit: AuditTrail;
  logger: Logger;
  metrics: Metrics;
  /** Shared state (budgets, cache) the request-body phase consults before forwarding. */
  state: GatewayState;
  /** Exchanges in progress on ext_proc streams, read by the in-flight gauge when scraped. */
  inflight: { count: number };
  /** Fetches a server's tools/list from its registry upstreams when the core asks for it. */
  pinVerifier: PinVerifier;
  /** Exchanges agents' tokens for servers' (registry `upstream.tokenExchange`): ext_authz adds them. */
  tokenExchanger: TokenExchanger;
  /** OpenTelemetry spans; undefined when tracing is off. */
  tracing: Tracing | undefined;
}

/** Dynamic metadata namespace ext_authz results are stored under by Envoy. */
export const EXT_AUTHZ_NAMESPACE = "envoy.filters.http.ext_authz";
/** Dynamic metadata namespace ext_proc writes for access logs (`%DYNAMIC_METADATA(mcp_gateway:method)%`). */
export const GATEWAY_NAMESPACE = "mcp_gateway";

export function secondsSince(start: number): number {
  return (performance.now() - start) / 1000;
}
