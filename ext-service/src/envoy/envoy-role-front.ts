import { once } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import {
  constants as h2,
  createServer as createH2Server,
  type Http2Server,
  type ServerHttp2Session,
} from "node:http2";
import type { AddressInfo, Socket } from "node:net";
import { request as undiciRequest } from "undici";
import { createLogger, type Logger } from "../telemetry/logger.js";
import { Metrics } from "../telemetry/metrics.js";
import type {
  BodyFrame,
  DownstreamRequest,
  EnvoyModelConfig,
  ExchangeTrace,
  UpstreamAnswer,
} from "./envoy-model.js";
import { EnvoyRoleClient, type EnvoyRoleOptions } from "./envoy-role-client.js";
import { UpstreamLocalReply } from "./envoy-model.js";
import { OutlierDetector, outlierDetectionOf, type OutlierDetectionConfig } from "./outlier.js";
import { outlierDetection } from "./render.js";
import { RingHash } from "./ring-hash.js";
import { answerHeaderOverflow } from "../edge/header-overflow.js";
import { startExtService, type ExtService } from "./server.js";
import type { GatewayEngine } from "../config/compile.js";

/**
 * An HTTP listener that plays Envoy with our filter chain (envoy-model.ts) in front of real MCP
 * servers, streaming both ways: request and response bodies move chunk by chunk, SSE responses
 * and long-lived GET streams reach the client as the server writes them, and a client can POST
 * answers to server requests while a stream is open. With it, real MCP clients (SDK 1.x, 2.x,
 * the conformance suite) run through the ext_authz + ext_proc path without an Envoy binary.
 *
 * Test and benchmark infrastructure, kept beside the Envoy-role client it is built on (it uses
 * only this package's modules). Plain HTTP on 127.0.0.1; no TLS (the shipped listener's TLS is
 * not part of the model).
 */

export interface EnvoyRoleFrontOptions {
  /**
   * The ext-service: the address of a running one ("127.0.0.1:9001"), or a policy engine to
   * start one with in this process (on a free port, closed with the front).
   */
  extService: string | { engine: GatewayEngine; logger?: Logger; metrics?: Metrics };
  /**
   * Where `/mcp/<server>` goes: an upstream URL per server name. By default the registry's first
   * upstream for the server (only when the front starts the ext-service from an engine).
   */
  upstreams?: Record<string, string>;
  /** The modelled chain; SHIPPED_CHAIN's values by default, with a 5 s message timeout. */
  chain?: Partial<EnvoyModelConfig>;
  /** Other Envoy-role client options. */
  client?: Omit<EnvoyRoleOptions, "chain">;
  host?: string;
  port?: number;
  /**
   * Where the `/mcp` and `/mcp/views/<name>` routes go (the ext-service's broker listener). By
   * default the broker of the ext-service the front starts, whose hops come back to this front.
   * Several URLs are the endpoints of envoy.yaml's `mcp_gateway_broker` cluster (broker replicas):
   * each request goes to the one RING_HASH picks for its `mcp-session-id` (ring-hash.ts), as the
   * broker routes' hash_policy makes Envoy do.
   */
  broker?: string | string[];
  /**
   * Outlier detection on each MCP server's cluster (outlier.ts): by default what render.ts
   * writes in the cluster's outlier_detection for the engine's edge.breaker (the schema's
   * defaults without an engine). Fields given here replace the rendered ones (a test may
   * shorten the interval); false turns it off.
   */
  outlier?: Partial<OutlierDetectionConfig> | false;
  /**
   * Also listen for HTTP/2 with prior knowledge (h2c), as the shipped listeners' `codec_type: AUTO`
   * takes it (and the TLS listener negotiates through ALPN): the same model behind HTTP/2's codec.
   */
  http2?: boolean;
  /** Called with each HTTP/2 stream the codec resets before the connection manager has it. */
  onCodecReset?: (details: string, request: { path: string }) => void;
  /** Called with each request's trace once Envoy is done with it (tests look at answeredBy, flags). */
  onExchange?: (trace: ExchangeTrace, request: { method: string; path: string }) => void;
}

export interface EnvoyRoleFront {
  /** http://host:port, the listener's origin: MCP servers are at `${url}/mcp/<server>`. */
  url: string;
  port: number;
  /** The h2c listener's origin (the `http2` option). */
  h2Url?: string;
  client: EnvoyRoleClient;
  /** The ext-service the front started, if it started one. */
  extService?: ExtService;
  /**
   * The broker cluster's endpoints change (a replica fails its health checks or leaves EDS): new
   * requests are hashed onto a ring of `urls`; requests in flight stay on their replica, as in
   * Envoy, whose load balancer picks a host only when a request starts.
   */
  setBrokers(urls: string[]): void;
  /** The outlier detector of a server's cluster, once a request has been routed to it. */
  outlier(server: string): OutlierDetector | undefined;
  close(): Promise<void>;
}

/** What Node's parser counts beyond Envoy's header bytes (the request line): room for it. */
const FRONT_HEADER_SLACK = 16 * 1024;

/** The aggregated endpoint's routes (routes.yaml sends them to the broker cluster). */
function brokerRoute(path: string): boolean {
  const q = path.indexOf("?");
  const bare = q < 0 ? path : path.slice(0, q);
  return bare === "/mcp" || /^\/mcp\/views\/[^/]+$/.test(bare);
}

/** The route the shipped routes.yaml gives `/mcp/<server>`: the server's name, or undefined. */
function routedServer(path: string): string | undefined {
  const q = path.indexOf("?");
  const bare = q < 0 ? path : path.slice(0, q);
  return /^\/mcp\/([A-Za-z0-9][A-Za-z0-9_-]*)$/.exec(bare)?.[1];
}

function headerRecord(raw: IncomingMessage["headers"] | Record<string, string | string[] | undefined>) {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(raw)) {
    // HTTP/2's pseudo-headers are the request line's parts, read where they are needed.
    if (v === undefined || k.startsWith(":")) continue;
    out[k.toLowerCase()] = Array.isArray(v) ? v.join(", ") : v;
  }
  return out;
}

/** Whether the client sent a body: Envoy's codec ends the stream with the headers otherwise. */
function hasRequestBody(req: IncomingMessage): boolean {
  if (req.headers["transfer-encoding"] !== undefined) return true;
  const length = Number(req.headers["content-length"] ?? "0");
  return Number.isFinite(length) && length > 0;
}

/**
 * What Envoy's router says when the request did not reach the server: the connection pool's
 * failure (refused: a remote connection failure whose transport failure reason is the socket's
 * "delayed connect error") or the connection closing before response headers (termination).
 */
function resetOf(err: unknown): UpstreamLocalReply {
  const code = (err as { code?: string }).code;
  if (code === "ECONNREFUSED")
    return UpstreamLocalReply.reset("remote connection failure", "delayed connect error: Connection refused");
  if (code === "UND_ERR_CONNECT_TIMEOUT") return UpstreamLocalReply.reset("connection timeout");
  if (code === "UND_ERR_SOCKET" || code === "ECONNRESET" || code === "EPIPE")
    return UpstreamLocalReply.reset("connection termination");
  return UpstreamLocalReply.reset("remote connection failure");
}

/**
 * undici's response body as Envoy's codec frames it: `end` on the last frame (possibly empty).
 * A body cut by the request's end (the client left, Envoy reset the stream) just stops.
 */
async function* framesOf(
  body: AsyncIterable<Buffer>,
  contentLength: number | undefined,
  done: () => void,
): AsyncIterable<BodyFrame> {
  let received = 0;
  try {
    for await (const chunk of body) {
      received += chunk.byteLength;
      const end = contentLength !== undefined && received >= contentLength;
      yield { data: chunk, end };
      if (end) return;
    }
    yield { data: Buffer.alloc(0), end: true };
  } catch (err) {
    if ((err as Error).name !== "AbortError") throw err;
  } finally {
    done();
  }
}

export async function startEnvoyRoleFront(options: EnvoyRoleFrontOptions): Promise<EnvoyRoleFront> {
  let extService: ExtService | undefined;
  let frontOrigin = "";
  let address: string;
  let engine: GatewayEngine | undefined;
  if (typeof options.extService === "string") {
    address = options.extService;
  } else {
    engine = options.extService.engine;
    extService = await startExtService({
      engine,
      // The broker's hops come back through this front, as they go through Envoy's listener.
      brokerHopOrigin: () => frontOrigin,
      logger: options.extService.logger ?? createLogger("silent"),
      metrics: options.extService.metrics ?? new Metrics(false),
      grpcHost: "127.0.0.1",
      grpcPort: 0,
      adminHost: "127.0.0.1",
      adminPort: 0,
    });
    address = extService.grpcAddress;
  }
  // routes.yaml buffers request bodies up to the gateway's own limit (render.ts).
  const chain: Partial<EnvoyModelConfig> = {
    ...(engine ? { requestBufferLimitBytes: engine.limits.maxRequestBytes } : {}),
    ...options.chain,
  };
  const client = new EnvoyRoleClient(address, { ...options.client, chain });

  const upstreamFor = (server: string): string | undefined =>
    options.upstreams?.[server] ?? engine?.registry.server(server)?.config.upstreams[0];

  const outlierConfig: OutlierDetectionConfig | undefined =
    options.outlier === false
      ? undefined
      : {
          ...outlierDetectionOf(
            outlierDetection(engine?.config.edge.breaker ?? { consecutiveFailures: 5, cooldown: "10s" }),
          ),
          ...options.outlier,
        };
  /** One detector per server's cluster, its host the upstream URL (one endpoint per cluster). */
  const outliers = new Map<string, OutlierDetector>();
  const outlierFor = (server: string, host: string): OutlierDetector | undefined => {
    if (!outlierConfig) return undefined;
    let detector = outliers.get(server);
    if (!detector) {
      detector = new OutlierDetector(outlierConfig, [host]);
      detector.start();
      outliers.set(server, detector);
    }
    detector.addHost(host);
    return detector;
  };

  /** The router and the server's cluster: prefix_rewrite to the upstream URL, auto_host_rewrite. */
  const cluster = (server: string | undefined) =>
    async function send(
      request: { method: string; path: string; headers: Record<string, string>; body: Buffer },
      signal: AbortSignal,
    ): Promise<UpstreamAnswer> {
      const target = server ? upstreamFor(server) : undefined;
      if (!target) throw new Error(`no upstream for ${request.path}`);
      const url = new URL(target);
      // The load balancer picks among the hosts outlier detection has not ejected.
      const detector = outlierFor(server!, target);
      if (detector?.isEjected(target)) throw UpstreamLocalReply.noHealthyUpstream();
      const q = request.path.indexOf("?");
      if (q >= 0) url.search = request.path.slice(q);
      const headers = { ...request.headers };
      delete headers.host;
      delete headers["content-length"];
      // Envoy resets the upstream request only while it is in progress: the abort is unhooked
      // once the response body has been read.
      const upstreamAbort = new AbortController();
      const onAbort = () => upstreamAbort.abort();
      signal.addEventListener("abort", onAbort, { once: true });
      const done = () => signal.removeEventListener("abort", onAbort);
      let res: Awaited<ReturnType<typeof undiciRequest>>;
      try {
        res = await undiciRequest(url, {
          method: request.method as "POST",
          headers,
          body: request.body.byteLength > 0 ? request.body : undefined,
          signal: upstreamAbort.signal,
        });
      } catch (err) {
        done();
        // The client left: Envoy resets the upstream request and charges the host nothing.
        if (signal.aborted) throw err;
        const reply = resetOf(err);
        // A connection that was made and then closed: the pool handed it over first
        // (LocalOriginConnectSuccess, which clears the local-origin count), then the reset counts
        // one failure. So a server that accepts and drops every connection is never ejected for
        // it, as in Envoy with split_external_local_origin_errors; one that refuses them is.
        if (reply.flags.includes("UC")) detector?.connectSuccess(target);
        detector?.localOriginFailure(target);
        throw reply;
      }
      detector?.connectSuccess(target);
      detector?.httpStatus(target, res.statusCode);
      const responseHeaders = headerRecord(res.headers);
      const length = responseHeaders["content-length"];
      const contentLength = length === undefined ? undefined : Number(length);
      const hasBody =
        request.method !== "HEAD" && res.statusCode !== 204 && res.statusCode !== 304 && contentLength !== 0;
      if (!hasBody) {
        done();
        res.body.resume();
      }
      return {
        status: res.statusCode,
        headers: responseHeaders,
        hasBody,
        body: framesOf(res.body, contentLength, done),
      };
    };

  let brokerUrls: string[] = [];
  let brokerAt = new Map<string, string>();
  let brokerRing = new RingHash<string>([]);
  const setBrokers = (urls: string[]): void => {
    brokerUrls = urls;
    // Envoy keys each endpoint on the ring by its address ("ip:port").
    brokerAt = new Map(urls.map((url) => [new URL(url).host, url.replace(/\/$/, "")]));
    brokerRing = new RingHash([...brokerAt.keys()]);
  };
  setBrokers([options.broker ?? extService?.brokerUrl ?? []].flat());
  /** The broker replica for a request: RING_HASH on mcp-session-id (one endpoint: that one). */
  const brokerFor = (req: IncomingMessage): string => {
    if (brokerUrls.length === 1) return brokerUrls[0]!;
    const session = req.headers["mcp-session-id"];
    return brokerAt.get(brokerRing.pickFor(typeof session === "string" ? session : undefined)!)!;
  };

  /**
   * The broker routes: ext_authz and ext_proc are disabled on them (typed_per_filter_config in
   * routes.yaml; the broker authenticates the agent and each hop comes back through the filter
   * chain on its server's route), so Envoy only proxies, streaming both ways.
   */
  const proxyToBroker = (req: IncomingMessage, res: ServerResponse): void => {
    const abort = new AbortController();
    res.on("close", () => abort.abort());
    const headers = headerRecord(req.headers);
    delete headers.host;
    delete headers.connection;
    undiciRequest(`${brokerFor(req)}${req.url ?? "/mcp"}`, {
      method: (req.method ?? "GET") as "POST",
      headers,
      body: hasRequestBody(req) ? req : undefined,
      signal: abort.signal,
    }).then(
      async (upstream) => {
        const out = headerRecord(upstream.headers);
        delete out.connection;
        delete out["transfer-encoding"];
        res.writeHead(upstream.statusCode, out);
        res.flushHeaders();
        try {
          for await (const chunk of upstream.body) res.write(chunk);
          res.end();
        } catch {
          res.destroy();
        }
      },
      (err: unknown) => {
        if (abort.signal.aborted) return;
        if (!res.headersSent) {
          res.writeHead(503, { "content-type": "text/plain" });
          res.end(`envoy-role front: broker unavailable (${String(err)})`);
        } else res.destroy();
      },
    );
  };

  const handle = (req: IncomingMessage, res: ServerResponse, http2 = false): void => {
    // The HTTP/1 codec, before any route or filter: headers over max_request_headers_kb.
    const tooLarge = http2 ? undefined : client.model.headersTooLarge(req.rawHeaders);
    if (tooLarge) {
      res.shouldKeepAlive = false;
      req.resume();
      res.writeHead(tooLarge.status, tooLarge.headers).end(tooLarge.body);
      return;
    }
    if (brokerUrls.length > 0 && brokerRoute(req.url ?? "/")) return proxyToBroker(req, res);
    const abort = new AbortController();
    let ended = false;
    res.on("close", () => {
      if (!ended) abort.abort();
    });
    const downstreamRequest: DownstreamRequest = {
      method: req.method ?? "GET",
      path: req.url ?? "/",
      authority: req.headers.host ?? (req.headers[":authority"] as string | undefined),
      headers: headerRecord(req.headers),
      body: hasRequestBody(req) ? (req as AsyncIterable<Buffer>) : undefined,
      remoteAddress: req.socket.remoteAddress?.replace(/^::ffff:/, ""),
      localAddress: req.socket.localAddress?.replace(/^::ffff:/, ""),
    };
    delete downstreamRequest.headers.host;
    const server = routedServer(downstreamRequest.path);
    downstreamRequest.routed = server !== undefined;
    client.model
      .handle(
        downstreamRequest,
        cluster(server),
        {
          headers(status, headers, end) {
            res.writeHead(status, headers);
            // SSE and other streamed bodies: headers go out now, not with the first chunk.
            if (!end) res.flushHeaders();
            if (end) {
              ended = true;
              res.end();
            }
          },
          data(chunk, end) {
            if (chunk.byteLength > 0) res.write(chunk);
            if (end) {
              ended = true;
              res.end();
            }
          },
          reset() {
            ended = true;
            res.destroy();
          },
        },
        abort.signal,
      )
      .then(
        (trace) => {
          if (!res.writableEnded && !res.destroyed) {
            // The chain ended without a complete answer (the client left): nothing more will come.
            res.destroy();
          }
          options.onExchange?.(trace, { method: downstreamRequest.method, path: downstreamRequest.path });
        },
        (err: unknown) => {
          if (!res.headersSent) {
            res.writeHead(500, { "content-type": "text/plain" });
            res.end(`envoy-role front: ${String(err)}`);
          } else res.destroy();
        },
      );
  };

  // Node's parser must not decide before the model does: it counts the request line too, and
  // Envoy's limit is the model's (max_request_headers_kb). Beyond this, the same 431.
  const http: Server = createServer(
    { maxHeaderSize: client.model.config.maxRequestHeadersKb * 1024 + FRONT_HEADER_SLACK },
    handle,
  );
  http.on("clientError", (err: NodeJS.ErrnoException, socket: Socket) => {
    if (err.code === "HPE_HEADER_OVERFLOW") {
      const reply = client.model.headersTooLargeReply();
      answerHeaderOverflow(socket, reply.status, reply.headers, reply.body);
      return;
    }
    if (err.code !== "ECONNRESET" && socket.writable)
      socket.end("HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    socket.destroySoon();
  });
  // Long-lived SSE streams: no Node timeouts of its own (the model has Envoy's idle timeout).
  http.requestTimeout = 0;
  http.headersTimeout = 0;
  http.keepAliveTimeout = 5000;
  http.listen(options.port ?? 0, options.host ?? "127.0.0.1");
  await once(http, "listening");
  const { port } = http.address() as AddressInfo;
  const host = options.host ?? "127.0.0.1";
  frontOrigin = `http://${host}:${port}`;

  // HTTP/2: Node's own limits opened wide, so that the model's codec check decides.
  let h2Server: Http2Server | undefined;
  let h2Url: string | undefined;
  const h2Sessions = new Set<ServerHttp2Session>();
  if (options.http2) {
    const headerBytes = client.model.config.maxRequestHeadersKb * 1024;
    h2Server = createH2Server(
      {
        maxHeaderListPairs: client.model.config.maxHeadersCount * 4 + 64,
        settings: { maxHeaderListSize: headerBytes * 2 + FRONT_HEADER_SLACK },
      },
      (req, res) => {
        const overflow = client.model.http2HeadersOverflow(req.rawHeaders);
        if (overflow) {
          options.onCodecReset?.(overflow, { path: req.url });
          req.stream.close(h2.NGHTTP2_INTERNAL_ERROR);
          return;
        }
        handle(req as unknown as IncomingMessage, res as unknown as ServerResponse, true);
      },
    );
    h2Server.on("session", (session) => {
      h2Sessions.add(session);
      session.on("close", () => h2Sessions.delete(session));
    });
    h2Server.listen(0, host);
    await once(h2Server, "listening");
    h2Url = `http://${host}:${(h2Server.address() as AddressInfo).port}`;
  }
  return {
    url: `http://${host}:${port}`,
    port,
    ...(h2Url ? { h2Url } : {}),
    client,
    extService,
    setBrokers,
    outlier: (server) => outliers.get(server),
    async close() {
      for (const detector of outliers.values()) detector.stop();
      if (h2Server) {
        const h2Closed = new Promise<void>((resolve) => h2Server.close(() => resolve()));
        for (const session of h2Sessions) session.destroy();
        await h2Closed;
      }
      const closed = new Promise<void>((resolve) => http.close(() => resolve()));
      http.closeAllConnections();
      await closed;
      client.close();
      await extService?.close(0);
    },
  };
}
