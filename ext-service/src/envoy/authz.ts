import type { sendUnaryData, ServerUnaryCall } from "@grpc/grpc-js";
import type { HttpReply } from "../policy/engine.js";
import { secondsSince, type AdapterContext } from "./context.js";
import { authzHeader, headerMapToRecord, lowerCaseKeys } from "./headers.js";
import { envoyProtos } from "./protos.js";
import { encodeAnsweredMetadata, encodeAuthzMetadata } from "./principal.js";
import type { CheckReply, CheckRequest } from "./types.js";
import { encodeCheckAllow, type EncodedMessage } from "./wire.js";

/** google.rpc codes for CheckReply.status. Envoy forwards on 0 and answers locally on anything else. */
const GrpcCode = {
  OK: 0,
  INVALID_ARGUMENT: 3,
  NOT_FOUND: 5,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  INTERNAL: 13,
  UNAUTHENTICATED: 16,
} as const;

function grpcCodeFor(status: number): number {
  switch (status) {
    case 401:
      return GrpcCode.UNAUTHENTICATED;
    case 403:
      return GrpcCode.PERMISSION_DENIED;
    case 404:
      return GrpcCode.NOT_FOUND;
    case 400:
      return GrpcCode.INVALID_ARGUMENT;
    case 429:
      return GrpcCode.RESOURCE_EXHAUSTED;
    default:
      // 5xx are internal errors; anything else (the 200 of the RFC 9728 metadata document) is
      // still an answer the gateway gives itself, which Envoy only does for a non-zero code.
      return status >= 500 ? GrpcCode.INTERNAL : GrpcCode.PERMISSION_DENIED;
  }
}

/**
 * The gateway answers the request itself: a denial, or the RFC 9728 metadata document. The
 * exchange is audited here; the metadata says so to ext_proc, which Envoy 1.38 also hands this
 * answer to (a local reply runs through every encoder filter), so it is not audited twice.
 */
export function deniedResponse(reply: HttpReply, reason: string | undefined, requestId: string): CheckReply {
  return {
    status: { code: grpcCodeFor(reply.status), message: reason ?? `answered with ${reply.status}` },
    denied_response: {
      // Set explicitly: a missing status would make every answer a 403.
      status: { code: envoyProtos().httpStatusName(reply.status) },
      headers: Object.entries(reply.headers).map(([k, v]) => authzHeader(k, v)),
      body: reply.body,
    },
    dynamic_metadata: encodeAnsweredMetadata(requestId),
  };
}

/**
 * `envoy.service.auth.v3.Authorization/Check`: the header phase. Verifies the token, decides
 * whether the agent may reach the server in the path, and on allow rewrites identity headers.
 * It writes the audit record only for requests it answers itself; allowed requests are audited
 * by ext_proc when their stream ends (also when a later filter, local_ratelimit or a buffer
 * limit, answers them), so each HTTP request yields exactly one record.
 */
export function createCheckHandler(ctx: AdapterContext) {
  const { audit, logger, metrics } = ctx;
  // Bound once: observe() with a labels object builds and checks them on every call.
  const authzSeconds = metrics.decisionSeconds.labels({ phase: "authz" });

  async function decide(request: CheckRequest): Promise<CheckReply | EncodedMessage> {
    const engine = ctx.engine; // one policy per call, even if a reload lands while it awaits
    const http = request.attributes?.request?.http;
    const headers =
      http?.headers && Object.keys(http.headers).length > 0
        ? lowerCaseKeys(http.headers)
        : headerMapToRecord(http?.header_map);
    const method = http?.method || headers[":method"] || "";
    const path = http?.path || headers[":path"] || "";
    const exchange = engine.newExchange(method, undefined, headers.traceparent);
    if (!http || method === "" || path === "") {
      logger.error({ request_id: exchange.requestId }, "ext_authz: CheckRequest without HTTP attributes");
      const reply = engine.rejection(exchange, "internal_error");
      audit.finishSoon(exchange, reply.status);
      return deniedResponse(reply, "internal_error", exchange.requestId);
    }
    const admission = await engine.admit(
      {
        method,
        path,
        headers,
        host: http.host || headers[":authority"] || headers.host,
        localAddress: request.attributes?.destination?.address?.socket_address?.address,
      },
      exchange,
    );
    if (!admission.ok) {
      audit.finishSoon(exchange, admission.reply.status);
      return deniedResponse(admission.reply, exchange.reasons[0], exchange.requestId);
    }
    const opened = engine.openSession(exchange, headers["mcp-session-id"]);
    if (!opened.ok) {
      audit.finishSoon(exchange, opened.reply.status);
      return deniedResponse(opened.reply, exchange.reasons[0], exchange.requestId);
    }
    // A per-agent credential (registry `upstream.tokenExchange`): exchanged here, where the
    // agent's token still is, and added like a static one; no token, no request (fail closed).
    const need = engine.credentialNeed(exchange, headers);
    let exchanged: Readonly<Record<string, string>> | undefined;
    let sealedCredential: string | undefined;
    if (need.kind === "refused") {
      audit.finishSoon(exchange, need.reply.status);
      return deniedResponse(need.reply, exchange.reasons[0], exchange.requestId);
    }
    if (need.kind === "exchange") {
      const outcome = await ctx.tokenExchanger.credential(need.need);
      if (!outcome.ok) {
        const reply = engine.credentialUnavailable(exchange, outcome.cause);
        audit.finishSoon(exchange, reply.status);
        return deniedResponse(reply, exchange.reasons[0], exchange.requestId);
      }
      exchanged = outcome.headers;
      // For this request's ext_proc stream, on whichever replica: DLP and the pin check's
      // tools/list use this token. Sealed, so the metadata holds no readable credential.
      sealedCredential = engine.issuedCredentials.seal(exchange.requestId, admission.server, outcome);
    }
    const upstream = engine.upstreamHeaders(exchange, headers, exchanged);
    // The upstream knows the session by its own id; the client only ever holds the sealed one.
    if (opened.session) upstream.set["mcp-session-id"] = opened.session.upstream;
    // Envoy applies ok_response.headers before headers_to_remove (and some versions the other
    // way round): never remove a header we also set, or the agent's own x-mcp-agent would wipe
    // ours. The overwrite already replaces any client-sent value of those two.
    const remove = upstream.remove.filter((name) => !(name in upstream.set));
    // Status OK, ok_response { headers (value, append: false), headers_to_remove }, the
    // metadata: encoded here, as proto-loader would encode that reply (wire.ts).
    return encodeCheckAllow(
      upstream.set,
      remove,
      encodeAuthzMetadata(
        admission.principal,
        exchange.requestId,
        admission.server,
        method,
        sealedCredential,
      ),
    );
  }

  return function check(
    call: ServerUnaryCall<CheckRequest, CheckReply | EncodedMessage>,
    callback: sendUnaryData<CheckReply | EncodedMessage>,
  ): void {
    const started = performance.now();
    decide(call.request).then(
      (response) => {
        authzSeconds.observe(secondsSince(started));
        callback(null, response);
      },
      (err: unknown) => {
        // A bug, not a verdict: logged in full, the agent sees a short JSON-RPC error (fail closed).
        const exchange = ctx.engine.newExchange(call.request.attributes?.request?.http?.method ?? "");
        logger.error({ err, request_id: exchange.requestId }, "ext_authz: check failed");
        const reply = ctx.engine.rejection(exchange, "internal_error");
        audit.finishSoon(exchange, reply.status);
        callback(null, deniedResponse(reply, "internal_error", exchange.requestId));
      },
    );
  };
}
