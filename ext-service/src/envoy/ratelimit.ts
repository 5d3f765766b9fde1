import type { sendUnaryData, ServerUnaryCall } from "@grpc/grpc-js";
import { agentHeaderValue, type Principal } from "../policy/identity.js";
import { StoreUnavailable } from "../state/store.js";
import type { AdapterContext } from "./context.js";
import { constantMessage } from "./protos.js";

/** envoy.service.ratelimit.v3.RateLimitRequest, as decoded (keepCase). */
export interface RateLimitRequest {
  domain?: string;
  descriptors?: {
    entries?: { key?: string; value?: string }[];
    /** google.protobuf.UInt64Value: overrides the request's hits_addend for this descriptor. */
    hits_addend?: { value?: number | string };
  }[];
  hits_addend?: number;
}

type Code = "OK" | "OVER_LIMIT";

export interface RateLimitResponse {
  overall_code: Code;
  statuses: { code: Code; duration_until_reset?: { seconds: number | string; nanos: number } }[];
  /** Envoy adds these to its 429 (and to the upstream's response when OK). */
  response_headers_to_add?: { key: string; value: string }[];
}

/** The rate limit domain of the shipped envoy.yaml's global rate limit filter. */
export const RATE_LIMIT_DOMAIN = "mcp_gateway";

/** The descriptor key (envoy.yaml's rate_limits) that marks a hop of the aggregated endpoint. */
export const VIA_BROKER_DESCRIPTOR = "via_broker";

/**
 * The entries of the shipped envoy.yaml's descriptor for a request of `principal` (its
 * rate_limits: x-mcp-agent as agent, x-mcp-issuer as issuer when the token had one), as
 * ext_authz sets those headers (PolicyEngine.upstreamHeaders).
 */
export function agentDescriptor(principal: Principal): { key: string; value: string }[] {
  return [
    { key: "agent", value: agentHeaderValue(principal.agent) },
    ...(principal.issuer !== undefined ? [{ key: "issuer", value: agentHeaderValue(principal.issuer) }] : []),
  ];
}

/**
 * The aggregated endpoint's own request, counted as the Envoy plane's global rate limit counts a
 * request of the agent (the same bucket: the shipped descriptor's), by the broker listener behind
 * Envoy (broker/http.ts): 0 when it may go, else the whole seconds to wait (Retry-After). Its hops
 * come back through Envoy with the via_broker entry and are not counted again (shouldRateLimit),
 * as the local edge counts `/mcp` and not its hops. While the store is unavailable: 0, as the
 * service answers OK then.
 */
export async function takeAgentToken(ctx: AdapterContext, principal: Principal): Promise<number> {
  const { rateLimit } = ctx.engine.config.edge;
  try {
    const ms = await ctx.state.store.takeToken(
      descriptorKey(RATE_LIMIT_DOMAIN, agentDescriptor(principal)),
      rateLimit.requestsPerSecond,
      rateLimit.burst,
      1,
    );
    return ms === 0 ? 0 : Math.max(1, Math.ceil(ms / 1000));
  } catch (err) {
    if (!(err instanceof StoreUnavailable)) throw err;
    ctx.state.metrics.storeErrors.inc({ feature: "rate_limit" });
    return 0;
  }
}

/** The bucket key of a descriptor: the domain and its entries, in order. */
export function descriptorKey(domain: string, entries: readonly { key?: string; value?: string }[]): string {
  return `rls:${domain}:${entries.map((e) => `${e.key ?? ""}=${e.value ?? ""}`).join("|")}`;
}

/** The all-OK answers by number of descriptors, each encoded once (constantMessage). */
const allOk: RateLimitResponse[] = [];
function allOkReply(descriptors: number): RateLimitResponse {
  if (descriptors > 16) {
    return {
      overall_code: "OK",
      statuses: Array.from({ length: descriptors }, () => ({ code: "OK" as const })),
    };
  }
  return (allOk[descriptors] ??= constantMessage<RateLimitResponse>({
    overall_code: "OK",
    statuses: Array.from({ length: descriptors }, () => ({ code: "OK" as const })),
  }));
}

function overLimit(waits: readonly number[]): RateLimitResponse {
  const statuses = waits.map((ms) =>
    ms === 0
      ? { code: "OK" as const }
      : {
          code: "OVER_LIMIT" as const,
          duration_until_reset: { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 },
        },
  );
  const longest = Math.max(0, ...waits);
  return {
    overall_code: "OVER_LIMIT",
    statuses,
    response_headers_to_add: [{ key: "retry-after", value: String(Math.max(1, Math.ceil(longest / 1000))) }],
  };
}

/**
 * Envoy's rate limit service protocol (`envoy.service.ratelimit.v3.RateLimitService`), answered
 * from the state store, so every Envoy in front of replicas that share Redis takes from the same
 * buckets. Each descriptor is one bucket (domain plus its entries, e.g. the agent and issuer the
 * shipped envoy.yaml sends), with the rate and burst of `edge.rateLimit`: the same token bucket
 * as the local edge. A descriptor with a `via_broker` entry (a hop of the aggregated endpoint,
 * whose request to /mcp took its token: takeAgentToken) takes none. A request takes `hits_addend` tokens (Envoy sends 0, meaning 1); a
 * descriptor's own hits_addend overrides it. OVER_LIMIT carries Retry-After, in whole seconds,
 * as the edge's 429 does. While the store is unavailable the answer is OK (the request is not
 * limited): an outage of the limiter must not refuse every call; Envoy's own local_ratelimit
 * still bounds each instance.
 */
export function createRateLimitHandler(ctx: AdapterContext) {
  return function shouldRateLimit(
    call: ServerUnaryCall<RateLimitRequest, RateLimitResponse>,
    callback: sendUnaryData<RateLimitResponse>,
  ): void {
    const { rateLimit } = ctx.engine.config.edge;
    const domain = call.request.domain ?? "";
    const descriptors = call.request.descriptors ?? [];
    const requestHits = Number(call.request.hits_addend ?? 0) || 1;
    const take = descriptors.map((d) => {
      // A hop of the aggregated endpoint (ext_authz set x-mcp-via-broker for a hop identity
      // only): the agent's request to /mcp was counted by the broker (takeAgentToken).
      if ((d.entries ?? []).some((e) => e.key === VIA_BROKER_DESCRIPTOR)) return Promise.resolve(0);
      const own = d.hits_addend?.value;
      const hits = own === undefined ? requestHits : Number(own);
      return ctx.state.store.takeToken(
        descriptorKey(domain, d.entries ?? []),
        rateLimit.requestsPerSecond,
        rateLimit.burst,
        hits,
      );
    });
    Promise.all(take).then(
      (waits) => {
        callback(null, waits.every((ms) => ms === 0) ? allOkReply(waits.length) : overLimit(waits));
      },
      (err: unknown) => {
        if (!(err instanceof StoreUnavailable)) {
          ctx.logger.error({ err }, "rate limit service: internal error");
          callback(err as Error);
          return;
        }
        ctx.state.metrics.storeErrors.inc({ feature: "rate_limit" });
        callback(null, allOkReply(descriptors.length));
      },
    );
  };
}
