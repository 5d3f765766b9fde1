import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { readBody } from "../edge/body.js";
import { answerHeaderOverflow } from "../edge/header-overflow.js";
import { headerMap, refusedHeaderName } from "../edge/headers.js";
import {
  errorResponse,
  parseJsonRpcBody,
  type JsonRpcId,
  type JsonRpcMessage,
  type JsonRpcRequest,
} from "../mcp/jsonrpc.js";
import { classifyEra, protocolVersionLabel } from "../mcp/eras.js";
import { MCP_HTTP_METHODS, checkMcpMedia } from "../mcp/media.js";
import { missingTargetProblem } from "../mcp/methods.js";
import { jsonReply, type HeaderMap, type HttpReply, type PolicyEngine } from "../policy/engine.js";
import { countOn, denyExchange, noteBody, type Exchange } from "../policy/exchange.js";
import { MAX_REQUEST_HEADER_BYTES } from "../policy/header-limits.js";
import type { Principal } from "../policy/identity.js";
import { Reasons, type Reason } from "../policy/reasons.js";
import type { AuditTrail } from "../telemetry/audit.js";
import type { Logger } from "../telemetry/logger.js";
import type { Broker } from "./broker.js";
import type { BrokerRefusal } from "./refusals.js";

function sendReply(res: ServerResponse, reply: HttpReply, extra: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  const body = Buffer.from(reply.body);
  res.writeHead(reply.status, { ...reply.headers, ...extra, "content-length": String(body.length) });
  res.end(body);
}

export interface BrokerRequestOptions {
  engine: PolicyEngine;
  broker: Broker;
  /** The agent's rate limit and caps (the edge's); false when it answered the request itself. */
  admitAgent?: (principal: Principal) => Promise<boolean>;
}

/**
 * One HTTP request to `/mcp` or `/mcp/views/<name>`: the header-phase checks of the aggregated
 * endpoint (PolicyEngine.admitBroker), the body limit, then the broker. Shared by the local edge
 * and the ext-service's broker listener behind Envoy.
 */
export async function serveBrokerRequest(
  options: BrokerRequestOptions,
  req: IncomingMessage,
  res: ServerResponse,
  exchange: Exchange,
): Promise<void> {
  const { engine } = options;
  // Once the body is parsed, a refusal answers its requests' ids (PolicyEngine.rejection).
  const reject = (
    reason: Reason,
    extra: Record<string, string> = {},
    detail?: string,
    id?: JsonRpcId | null,
  ) => sendReply(res, engine.rejection(exchange, reason, detail, extra, id));
  if (refusedHeaderName(req.headers) !== undefined) return reject("header_name_invalid");
  const headers = headerMap(req.headers);
  const method = exchange.httpMethod;
  const admission = await engine.admitBroker(
    { method, path: req.url ?? "/", headers, localAddress: req.socket.localAddress },
    exchange,
  );
  if (!admission.ok) return sendReply(res, admission.reply);
  if (options.admitAgent && !(await options.admitAgent(admission.principal))) return;
  const media = checkMcpMedia(method, headers);
  if (media) return reject(media, media === "http_method_not_allowed" ? { allow: MCP_HTTP_METHODS } : {});
  let parsed: unknown;
  if (method !== "POST") {
    // GET and DELETE are 2025-era session operations, recorded as /mcp/<server> records them.
    exchange.era = "2025";
    const version = headers["mcp-protocol-version"];
    exchange.protocolVersion = version === undefined ? undefined : protocolVersionLabel(version.trim());
  }
  if (method === "POST") {
    const read = await readBody(req, engine.limits.maxRequestBytes);
    if (!read.ok) {
      if (read.problem === "too_large") reject("body_too_large", { connection: "close" });
      return;
    }
    // The checks of /mcp/<server> (mcp/jsonrpc.ts: strict UTF-8, nesting depth, duplicate keys,
    // the JSON-RPC shape, batch size), refused with the same reasons and audited alike.
    const checked = parseJsonRpcBody(read.body, engine.limits);
    if (!checked.ok) return reject(checked.reason, {}, checked.detail, checked.id);
    noteBody(exchange, checked.batch, checked.messages);
    parsed = checked.batch ? checked.messages.map((m) => m.raw) : checked.messages[0]!.raw;
    for (const message of checked.messages)
      if (message.kind !== "response") exchange.methods.push(message.method);
    noteEra(exchange, checked.messages, checked.batch, headers);
    const malformed = refuseMissingTargets(exchange, checked.messages, checked.batch);
    if (malformed) return sendReply(res, malformed);
  }
  countOn(exchange, "aggregated");
  const refusal = await options.broker.handle(req, res, admission.principal, admission.view, parsed, {
    requestId: exchange.requestId,
    refused: (refused) => recordRefusal(exchange, refused),
    leftOut: (server, late) => {
      countOn(exchange, `left_out:${server}`);
      if (late) countOn(exchange, `fanout_timeout:${server}`);
    },
  });
  if (refusal) {
    noteSubject(exchange, refusal);
    // A refusal without an id (the SDK transport's own errors say null) answers the body's.
    const reply = engine.rejection(exchange, refusal.reason, refusal.detail, {}, refusal.id, refusal.data);
    return sendReply(res, refusal.status === undefined ? reply : { ...reply, status: refusal.status });
  }
  exchange.status = res.statusCode;
}

/**
 * The era and revision of the request in its audit record and the protocol metric, as
 * /mcp/<server> records them (PolicyEngine.classifyBody over mcp/eras.ts; a batch is classified on
 * its version header only). What the classification refuses is the broker's to answer: such a
 * message sets nothing.
 */
function noteEra(
  exchange: Exchange,
  messages: readonly JsonRpcMessage[],
  batch: boolean,
  headers: HeaderMap,
): void {
  const standard = batch ? { "mcp-protocol-version": headers["mcp-protocol-version"] } : headers;
  for (const message of messages) {
    const era = classifyEra(message, standard);
    if (!era.ok) continue;
    if (exchange.era === undefined || (exchange.protocolVersion === undefined && era.version !== undefined)) {
      exchange.era = era.era;
      exchange.protocolVersion = era.version === undefined ? undefined : protocolVersionLabel(era.version);
    }
  }
}

/**
 * The methods that name their subject in both eras. `resources/subscribe` and `unsubscribe` are
 * gone in 2026-07-28 (method not found, 404, which the broker answers), so they are left to it.
 */
const NAMED_IN_BOTH_ERAS: ReadonlySet<string> = new Set([
  "tools/call",
  "prompts/get",
  "resources/read",
  "completion/complete",
]);

/**
 * Requests that must name a tool, prompt, resource or completion reference and do not
 * (`tools/call` without a string `name`, ...), refused as `/mcp/<server>` refuses them: the
 * malformed ones `invalid_params` with the same detail, the rest of a batch `batch_rejected`,
 * HTTP 200, nothing forwarded. Without this the broker's SDK server answered a schema dump
 * without a reason or request id (audited as allowed), or for non-object params a 400 whose
 * words repeated themselves. Undefined when every request names what it needs.
 */
function refuseMissingTargets(
  exchange: Exchange,
  messages: readonly JsonRpcMessage[],
  batch: boolean,
): HttpReply | undefined {
  const problems = new Map<JsonRpcRequest, string>();
  for (const m of messages) {
    if (m.kind !== "request" || !NAMED_IN_BOTH_ERAS.has(m.method)) continue;
    const problem = missingTargetProblem(m.method, m.params);
    if (problem !== undefined) problems.set(m, problem);
  }
  if (problems.size === 0) return undefined;
  denyExchange(exchange, "invalid_params");
  const answers = messages
    .filter((m): m is JsonRpcRequest => m.kind === "request")
    .map((m) => {
      const problem = problems.get(m);
      const reason: Reason = problem === undefined ? "batch_rejected" : "invalid_params";
      const info = Reasons[reason];
      const message = problem === undefined ? info.message : `${info.message}: ${problem}`;
      return errorResponse(m.id, info.code, message, { reason, request_id: exchange.requestId });
    });
  return jsonReply(200, batch ? answers : answers[0]);
}

/**
 * A refusal of the broker's own in the request's audit record: a denial with its reason and
 * cause (so counted as any denial is), and the server and name it concerned, when known. A
 * failure rather than a decision (internal_error; upstream_unavailable, a hop that broke) is
 * recorded as an error, as /mcp/<server> records it.
 */
function recordRefusal(exchange: Exchange, refusal: BrokerRefusal): void {
  denyExchange(
    exchange,
    refusal.reason,
    refusal.reason === "internal_error" ||
      refusal.reason === "upstream_unavailable" ||
      refusal.reason === "upstream_invalid_response"
      ? "error"
      : "deny",
    refusal.cause,
  );
  noteSubject(exchange, refusal);
}

function noteSubject(exchange: Exchange, refusal: BrokerRefusal): void {
  if (refusal.server !== undefined) exchange.server ??= refusal.server;
  const subject = refusal.subject;
  if (subject !== undefined) exchange[subject.kind].push(subject.name);
}

export interface BrokerListener {
  port: number;
  url: string;
  close(): Promise<void>;
}

/**
 * The aggregated endpoint over HTTP, for the Envoy plane: Envoy routes `/mcp` (and views) here,
 * and the broker's hops go back through Envoy's per-server routes (`broker.hopUrl`).
 */
export function startBrokerListener(options: {
  engine: () => PolicyEngine;
  broker: Broker;
  audit: AuditTrail;
  logger: Logger;
  host: string;
  port: number;
  /**
   * The agent's rate limit, as the Envoy plane counts the agent's requests (envoy/ratelimit.ts
   * takeAgentToken): 0 when the request may go, else the seconds to wait. Each request to the
   * aggregated endpoint is counted once here (Envoy's routes to it run no rate limit: without
   * ext_authz they know no agent), and its hops are not counted again, as on the local edge.
   */
  limitAgent?: (principal: Principal) => Promise<number>;
}): Promise<BrokerListener> {
  // Whatever Envoy's listener accepted, with the headers Envoy adds (policy/header-limits.ts).
  const http: Server = createServer({ maxHeaderSize: MAX_REQUEST_HEADER_BYTES }, (req, res) => {
    const engine = options.engine();
    const traceparent = req.headers.traceparent;
    const exchange = engine.newExchange(
      req.method ?? "",
      undefined,
      typeof traceparent === "string" ? traceparent : undefined,
    );
    res.once("close", () => options.audit.finish(exchange, res.headersSent ? res.statusCode : 499));
    const limitAgent = options.limitAgent;
    const admitAgent =
      limitAgent &&
      (async (principal: Principal) => {
        const wait = await limitAgent(principal);
        if (wait === 0) return true;
        sendReply(
          res,
          engine.rejection(exchange, "rate_limited", undefined, { "retry-after": String(wait) }),
        );
        return false;
      });
    serveBrokerRequest(
      { engine, broker: options.broker, ...(admitAgent ? { admitAgent } : {}) },
      req,
      res,
      exchange,
    ).catch((err: unknown) => {
      options.logger.error({ err, request_id: exchange.requestId }, "aggregated endpoint request failed");
      if (!res.headersSent) sendReply(res, engine.rejection(exchange, "internal_error"));
      else res.destroy();
    });
  });
  // Beyond it: a 431 with the JSON-RPC error and an audit record, not a reset (edge/server.ts too).
  http.on("clientError", (err: NodeJS.ErrnoException, socket: Socket) => {
    if (err.code !== "HPE_HEADER_OVERFLOW") {
      // What Node answers without a listener: 408 for a headers timeout, else 400.
      const head = err.code === "ERR_HTTP_REQUEST_TIMEOUT" ? "408 Request Timeout" : "400 Bad Request";
      if (err.code !== "ECONNRESET" && socket.writable)
        socket.end(`HTTP/1.1 ${head}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`);
      socket.destroySoon();
      return;
    }
    const engine = options.engine();
    const exchange = engine.newExchange("");
    const reply = engine.rejection(exchange, "headers_too_large");
    if (answerHeaderOverflow(socket, reply.status, reply.headers, reply.body))
      options.audit.finish(exchange, reply.status);
  });
  // Long-lived GET streams: no Node timeouts of their own.
  http.requestTimeout = 0;
  http.keepAliveTimeout = 5_000;
  return new Promise((resolve, reject) => {
    http.once("error", reject);
    http.listen(options.port, options.host, () => {
      http.off("error", reject);
      const port = (http.address() as AddressInfo).port;
      const shown = options.host.includes(":") ? `[${options.host}]` : options.host;
      resolve({
        port,
        url: `http://${shown === "0.0.0.0" ? "127.0.0.1" : shown}:${port}`,
        close: () =>
          new Promise<void>((done) => {
            http.close(() => done());
            http.closeAllConnections();
          }),
      });
    });
  });
}
