import type { Server as HttpServer } from "node:http";
import {
  constants,
  type Http2Server,
  type Http2Session,
  type IncomingHttpHeaders,
  type ServerHttp2Stream,
} from "node:http2";
import { Server, ServerCredentials, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { durationMs } from "../config/schema.js";
import { GatewayState } from "../runtime/gateway-state.js";
import { openStore } from "../state/open-store.js";
import { approvalsAdminApi } from "../approvals/admin-api.js";
import { consoleApi } from "../console/api.js";
import { consoleAssets } from "../console/routes.js";
import { adminBaseUrl, startAdminServer, boundPort } from "../telemetry/admin.js";
import { tracingFromConfig, type Tracing } from "../telemetry/tracing.js";
import { AuditTrail } from "../telemetry/audit.js";
import type { Logger } from "../telemetry/logger.js";
import { Metrics } from "../telemetry/metrics.js";
import { createCheckHandler } from "./authz.js";
import type { AdapterContext } from "./context.js";
import { createProcessHandler } from "./extproc.js";
import { createRateLimitHandler, takeAgentToken } from "./ratelimit.js";
import { TokenExchanger } from "../upstream/token-exchange.js";
import { PinVerifier } from "../upstream/pin-verifier.js";
import { HealthService } from "./health.js";
import { Broker } from "../broker/broker.js";
import { startBrokerListener, type BrokerListener } from "../broker/http.js";
import { AUTHORIZATION_SERVICE, EXTERNAL_PROCESSOR_SERVICE, envoyProtos } from "./protos.js";
import type { GatewayEngine } from "../config/compile.js";

export interface ExtServiceOptions {
  engine: GatewayEngine;
  logger: Logger;
  /** Defaults: the config's listen.grpc / listen.admin; port 0 picks a free port. */
  grpcHost?: string;
  grpcPort?: number;
  adminHost?: string;
  adminPort?: number;
  metrics?: Metrics;
  /** How long close() lets in-flight streams finish; default the config's shutdownGrace. */
  shutdownGraceMs?: number;
  /** Fetches servers' tools/list (directly from the registry's upstreams); defaults to one on `logger`. */
  pinVerifier?: PinVerifier;
  /** Exchanges agents' tokens for servers' (registry `upstream.tokenExchange`); defaults to one on `logger`. */
  tokenExchanger?: TokenExchanger;
  /** Shared state (budgets, cache); defaults to the store the config names, closed with the service. */
  state?: GatewayState;
  /** Mutual TLS on the gRPC port (PEM contents); without it the port is plaintext. */
  grpcTls?: GrpcTls;
  /** OpenTelemetry spans per exchange; defaults to the config's `tracing` (none when off). */
  tracing?: Tracing | undefined;
  /** The aggregated endpoint's HTTP listener; defaults: the config's listen.broker. */
  brokerHost?: string;
  brokerPort?: number;
  /**
   * Where the broker's hops reach `/mcp/<server>` (Envoy's listener); defaults to the config's
   * broker.hopUrl, else publicUrl. Tests pass the Envoy-role front's origin.
   */
  brokerHopOrigin?: () => string;
}

export interface GrpcTls {
  cert: Buffer;
  key: Buffer;
  /** Client certificates must chain to these; a client without one is refused in the handshake. */
  clientCa: Buffer;
}

export interface ExtService {
  /** The policy in force; replaced by setEngine (config reload). */
  readonly engine: GatewayEngine;
  /**
   * Replaces the policy for the Check calls and ext_proc streams that start from now on; streams
   * already open finish under the policy they started with. Ports and the gRPC message size
   * limit stay as started.
   */
  setEngine(engine: GatewayEngine): void;
  grpcPort: number;
  adminPort: number;
  /** The aggregated endpoint over HTTP (`/mcp`, `/mcp/views/<name>`), where Envoy routes them. */
  brokerUrl: string;
  /** The aggregated endpoint behind brokerUrl (its kept hops, for tests and diagnostics). */
  readonly broker: Broker;
  /** host:port for gRPC clients. */
  grpcAddress: string;
  metrics: Metrics;
  health: HealthService;
  /**
   * Graceful stop: /readyz and gRPC health go NOT_SERVING at once. For drainDelayMs new calls are
   * still served (Envoy keeps sending them until its health checks have seen NOT_SERVING
   * unhealthy_threshold times); then no new calls are accepted, in-flight streams may finish
   * until the grace period ends, and the rest are cancelled.
   */
  close(graceMs?: number, drainDelayMs?: number): Promise<void>;
}

function bindGrpc(server: Server, host: string, port: number, tls: GrpcTls | undefined): Promise<number> {
  const address = host.includes(":") && !host.startsWith("[") ? `[${host}]:${port}` : `${host}:${port}`;
  const credentials = tls
    ? ServerCredentials.createSsl(tls.clientCa, [{ cert_chain: tls.cert, private_key: tls.key }], true)
    : ServerCredentials.createInsecure();
  return new Promise((resolve, reject) => {
    server.bindAsync(address, credentials, (err, bound) => (err ? reject(err) : resolve(bound)));
  });
}

/**
 * Advertises HTTP/2 flow-control windows of `bytes` (per stream and per connection) on every
 * connection the gRPC server accepts.
 *
 * Node's defaults are the protocol's 64 KiB. Envoy pipelines every chunk of a streamed body and
 * sends a buffered body of up to the inspection limit as one message, so with 64 KiB it stalls
 * until a WINDOW_UPDATE comes back, and that frame only leaves once the event loop is done with
 * whatever it is running (e.g. scanning another stream's 64 KiB body): every stream of the
 * connection then waits on one busy turn. The window still bounds memory: unread data per
 * connection stays under one message of the largest size grpc.max_receive_message_length
 * accepts anyway.
 *
 * grpc-js 1.14 has no server option for this, so the hook is its per-port `createHttp2Server`
 * (the version is pinned; test/envoy/serve.test.ts fails if the hook goes away). Each session
 * also gets renewBeforeResetLimit.
 */
function advertiseFlowControlWindow(server: Server, bytes: number, logger: Logger): void {
  const hooked = server as unknown as { createHttp2Server?: (credentials: unknown) => Http2Server };
  const create = hooked.createHttp2Server;
  if (typeof create !== "function") {
    logger.warn(
      "grpc-js has no createHttp2Server: HTTP/2 flow-control windows stay at 64 KiB, no renewal before the stream reset limit",
    );
    return;
  }
  hooked.createHttp2Server = (credentials: unknown) => {
    const http2Server = create.call(server, credentials);
    http2Server.on("session", (session: Http2Session) => {
      try {
        session.settings({ initialWindowSize: bytes });
        session.setLocalWindowSize(bytes);
      } catch (err) {
        // Already closing: nothing will flow on it.
        logger.debug({ err }, "ext-service: could not set the HTTP/2 window of a closing session");
      }
      renewBeforeResetLimit(session, logger);
    });
    return http2Server;
  };
}

/**
 * nghttp2's guard against "rapid reset" floods (CVE-2023-44487, in the nghttp2 Node 20 carries):
 * a server session drains a token bucket of 1000 by one for every RST_STREAM it receives,
 * refilled at 33 a second, and once it is empty sends GOAWAY INTERNAL_ERROR. Node has no setting
 * for it and no event when it fires.
 *
 * Envoy resets every ext_proc stream it is done with (ExternalProcessorStreamImpl::close():
 * closeStream() then resetStream(), ext_proc_graceful_grpc_close being off by default), so one
 * Envoy worker's connection carrying more than 33 requests a second got that GOAWAY after about a
 * thousand of them: the calls it had sent past the GOAWAY's last stream id were refused (the
 * request's Check answered by status_on_error, its ext_proc stream failing it with a 500), and a
 * grpc-js client (the Envoy-role model) fails every call in flight on an error GOAWAY. Before the
 * bucket runs out, the session is told to go away gracefully instead (GOAWAY NO_ERROR naming no
 * last stream): the client opens a new connection for new calls and lets the old one's finish.
 *
 * The count here errs high: every ext_proc stream is taken as reset (the RST of one the server
 * has already ended still drains nghttp2's bucket, but closes nothing this side could observe),
 * and any other stream that ends with an error code.
 */
const RESET_BURST = 1000;
const RESET_REFILL_PER_SECOND = 33;
/** Resets the client may still send before it reads the GOAWAY. */
const RESET_HEADROOM = 250;
/** Time the client gets to read the first GOAWAY before the closing one names the last stream. */
const GOAWAY_GRACE_MS = 1000;
const EXT_PROC_PATH = `/${EXTERNAL_PROCESSOR_SERVICE}/Process`;

function renewBeforeResetLimit(session: Http2Session, logger: Logger): void {
  let tokens = RESET_BURST;
  let at = performance.now();
  let leaving = false;
  const spend = () => {
    const now = performance.now();
    tokens = Math.min(RESET_BURST, tokens + ((now - at) / 1000) * RESET_REFILL_PER_SECOND) - 1;
    at = now;
    if (leaving || tokens >= RESET_HEADROOM || session.closed || session.destroyed) return;
    leaving = true;
    logger.debug(
      "ext-service: HTTP/2 connection near nghttp2's stream reset limit: asking the client to reconnect",
    );
    try {
      // Every stream the client may already have sent is still served.
      session.goaway(constants.NGHTTP2_NO_ERROR, 2 ** 31 - 1);
    } catch {
      return; // already going
    }
    setTimeout(() => {
      if (!session.closed && !session.destroyed) session.close();
    }, GOAWAY_GRACE_MS).unref();
  };
  session.on("stream", (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    if (headers[":path"] === EXT_PROC_PATH) spend();
    else stream.once("close", () => stream.rstCode !== constants.NGHTTP2_NO_ERROR && spend());
  });
}

/** The ext-service: ext_authz + ext_proc + gRPC health on one port, admin HTTP on another. */
export async function startExtService(options: ExtServiceOptions): Promise<ExtService> {
  const { engine, logger } = options;
  const listen = engine.config.listen;
  const metrics = options.metrics ?? new Metrics();
  const audit = new AuditTrail(logger, metrics, "envoy");
  const ownsTracing = options.tracing === undefined;
  const tracing = options.tracing ?? (await tracingFromConfig(engine.config, "envoy"));
  metrics.setKnownNames(Object.keys(engine.config.agents), engine.registry.toolNames());
  audit.tracing = tracing;
  const ownsState = options.state === undefined;
  const state =
    options.state ??
    new GatewayState(
      openStore(engine.config, process.env, engine.configDir),
      metrics,
      logger,
      engine.config.cache,
    );
  const pinVerifier = options.pinVerifier ?? new PinVerifier(logger);
  const ctx: AdapterContext = {
    engine,
    audit,
    logger,
    metrics,
    state,
    inflight: { count: 0 },
    pinVerifier,
    tokenExchanger: options.tokenExchanger ?? new TokenExchanger(logger, { metrics }),
    tracing,
  };
  const protos = envoyProtos();
  const health = new HealthService([AUTHORIZATION_SERVICE, EXTERNAL_PROCESSOR_SERVICE]);
  const limits = engine.limits;

  // A buffered response body arrives as one message: allow the largest body the core inspects.
  const maxMessageBytes = Math.max(limits.maxRequestBytes, limits.maxResponseBytes) + 65_536;
  // Channelz stays on (grpc-js's default) although nothing serves it: its per-call bookkeeping
  // shows in profiles, but with it off grpc-js 1.14's forceShutdown() does not see the open
  // sessions (it tracks them only for channelz) and the shutdown grace period would not end them.
  const grpc = new Server({ "grpc.max_receive_message_length": maxMessageBytes });
  // One whole message in flight per stream; HTTP/2 caps a window at 2^31-1.
  advertiseFlowControlWindow(grpc, Math.min(maxMessageBytes, 2 ** 31 - 1), logger);
  grpc.addService(protos.Authorization.service, {
    Check: createCheckHandler(ctx),
  } as UntypedServiceImplementation);
  grpc.addService(protos.ExternalProcessor.service, {
    Process: createProcessHandler(ctx),
  } as UntypedServiceImplementation);
  grpc.addService(protos.RateLimitService.service, {
    ShouldRateLimit: createRateLimitHandler(ctx),
  } as UntypedServiceImplementation);
  grpc.addService(protos.Health.service, health.handlers as unknown as UntypedServiceImplementation);

  const grpcHost = options.grpcHost ?? listen.grpc.host;
  let grpcPort: number;
  try {
    grpcPort = await bindGrpc(grpc, grpcHost, options.grpcPort ?? listen.grpc.port, options.grpcTls);
  } catch (err) {
    if (ownsState) await state.close();
    throw err;
  }
  let admin: HttpServer;
  try {
    admin = await startAdminServer(
      metrics,
      { ready: () => health.serving && state.ready() },
      options.adminHost ?? listen.admin.host,
      options.adminPort ?? listen.admin.port,
      [
        approvalsAdminApi(() => ctx.engine, state.approvals, logger),
        consoleApi({
          engine: () => ctx.engine,
          approvals: state.approvals,
          audit: audit,
          store: state.store,
          metrics,
          logger,
        }),
        consoleAssets(),
      ],
    );
    state.approvals.adminUrl = adminBaseUrl(options.adminHost ?? listen.admin.host, boundPort(admin));
  } catch (err) {
    grpc.forceShutdown();
    if (ownsState) await state.close();
    throw err;
  }
  const broker = new Broker({
    engine: () => ctx.engine,
    logger,
    metrics,
    hopOrigin:
      options.brokerHopOrigin ??
      (() => (ctx.engine.config.broker.hopUrl ?? ctx.engine.config.publicUrl).replace(/\/$/, "")),
    ...(state.cache.sharedByReplicas ? { listsChangedAt: (server) => state.listsChangedAt(server) } : {}),
    revocations: state.sessionRevocations(),
    answers: state.answerRelay(),
  });
  let brokerListener: BrokerListener;
  try {
    brokerListener = await startBrokerListener({
      engine: () => ctx.engine,
      broker,
      audit,
      logger,
      limitAgent: (principal) => takeAgentToken(ctx, principal),
      host: options.brokerHost ?? listen.broker.host,
      // A caller that asks for a free gRPC port (tests, benches) gets a free broker port too.
      port: options.brokerPort ?? ((options.grpcPort ?? listen.grpc.port) === 0 ? 0 : listen.broker.port),
    });
  } catch (err) {
    grpc.forceShutdown();
    admin.close();
    if (ownsState) await state.close();
    throw err;
  }
  // A list_changed any client's stream carries (ext_proc) drops the broker's kept lists of that server.
  const stopBrokerWatch = state.onListChanged((server, method) => broker.listChanged(server, method));
  // Read on each scrape of the admin port, which is up from here.
  const stopCounting = metrics.countInflight("envoy", () => ctx.inflight.count);

  let closing: Promise<void> | undefined;
  const graceDefault = options.shutdownGraceMs ?? durationMs(engine.config.shutdownGrace);
  const close = (graceMs = graceDefault, drainDelayMs = 0): Promise<void> => {
    closing ??= (async () => {
      health.drain();
      if (drainDelayMs > 0) {
        logger.info(
          { drain_delay_ms: drainDelayMs },
          "NOT_SERVING: still accepting calls until Envoy has seen it",
        );
        await new Promise((resolve) => setTimeout(resolve, drainDelayMs));
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          logger.warn({ grace_ms: graceMs }, "shutdown grace period over: cancelling remaining streams");
          grpc.forceShutdown();
          resolve();
        }, graceMs);
        grpc.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
      await brokerListener.close();
      stopBrokerWatch();
      await broker.close();
      await new Promise<void>((resolve) => {
        admin.close(() => resolve());
        admin.closeAllConnections();
      });
      stopCounting();
      if (ownsState) await state.close();
      audit.flush(); // records of the last exchanges, if their turn of the event loop has not ended
      if (ownsTracing) await tracing?.shutdown();
    })();
    return closing;
  };

  const hostForClients = grpcHost === "0.0.0.0" || grpcHost === "::" ? "127.0.0.1" : grpcHost;
  return {
    get engine() {
      return ctx.engine;
    },
    setEngine(next) {
      ctx.engine = next;
      metrics.setKnownNames(Object.keys(next.config.agents), next.registry.toolNames());
    },
    grpcPort,
    adminPort: boundPort(admin),
    brokerUrl: brokerListener.url,
    broker,
    grpcAddress: `${hostForClients.includes(":") ? `[${hostForClients}]` : hostForClients}:${grpcPort}`,
    metrics,
    health,
    close,
  };
}
