import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
  LoggingMessageNotificationSchema,
  ResourceUpdatedNotificationSchema,
} from "@modelcontextprotocol/sdk/types.js";
import {
  Client as ClientV2,
  StreamableHTTPClientTransport as TransportV2,
} from "@modelcontextprotocol/client";
import { readFileSync } from "node:fs";
import { createServer as createHttpServer, request as httpRequest } from "node:http";
import { connect, createServer, type AddressInfo, type Socket } from "node:net";
import { join } from "node:path";
import { parse } from "yaml";
import { startDemoServers, type RunningServer } from "../../examples/servers/index.js";
import { afterAll, beforeAll, expect } from "vitest";
import type { GatewayEngine } from "../../ext-service/src/config/compile.js";
import { startEnvoyRoleFront, type EnvoyRoleFront } from "../../ext-service/src/envoy/envoy-role-front.js";
import { startExtService, type ExtService } from "../../ext-service/src/envoy/server.js";
import type { GatewayState } from "../../ext-service/src/runtime/gateway-state.js";
import type { Logger } from "../../ext-service/src/telemetry/logger.js";
import type { Metrics } from "../../ext-service/src/telemetry/metrics.js";
import { startDemoGateway, type DemoGateway, type GatewaySpec } from "../e2e/harness.js";

/** registry/registry.yaml's servers, pointed at demo servers started on free ports. */
export async function demoRegistry(): Promise<{
  servers: GatewaySpec["servers"];
  running: Record<"kb" | "tickets" | "deploy", RunningServer>;
  close(): Promise<void>;
}> {
  const running = await startDemoServers({ kb: 0, tickets: 0, deploy: 0 });
  const registry = parse(readFileSync(join(import.meta.dirname, "../../registry/registry.yaml"), "utf8")) as {
    servers: (GatewaySpec["servers"][number] & { name: "kb" | "tickets" | "deploy" })[];
  };
  const servers = registry.servers.map((s) => ({ ...s, upstreams: [running[s.name].url] }));
  return {
    servers,
    running,
    close: async () => {
      await Promise.allSettled(Object.values(running).map((r) => r.close()));
    },
  };
}

/**
 * A TCP proxy in front of `port` whose connections the test can cut: `cut()` destroys every
 * connection and refuses new ones until `resume()`, as a network that drops for a while.
 */
export async function cuttableProxy(port: number): Promise<{
  url: string;
  cut(): void;
  resume(): void;
  close(): Promise<void>;
}> {
  const sockets = new Set<Socket>();
  let refusing = false;
  const server = createServer((client) => {
    if (refusing) return void client.destroy();
    const upstream = connect(port, "127.0.0.1");
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.once("close", () => sockets.delete(s));
      s.on("error", () => undefined);
    }
    client.pipe(upstream).pipe(client);
    client.once("close", () => upstream.destroy());
    upstream.once("close", () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    cut() {
      refusing = true;
      for (const s of sockets) s.destroy();
    },
    resume() {
      refusing = false;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** One request an MCP server got through recordingProxy. */
export interface Recorded {
  method: string;
  /** The request's Mcp-Session-Id. */
  session: string | undefined;
  /** The JSON-RPC method of a POST's body (the first of a batch). */
  rpc: string | undefined;
  /** An initialize's clientInfo.name (the broker's hops: mcp-gateway-broker). */
  clientName: string | undefined;
  /** The request's Last-Event-ID (a GET resuming a stream). */
  lastEventId: string | undefined;
  /** 0 until the server answered (or 502 when it could not be reached). */
  status: number;
  /** The Mcp-Session-Id the answer opened (initialize). */
  opened: string | undefined;
  /** The answer's stream is still open. */
  open: boolean;
}

/**
 * An HTTP proxy in front of `127.0.0.1:<port>` (which may be down, or restarted, meanwhile) that
 * records what the MCP server behind it was asked and which answers are still streaming.
 */
export async function recordingProxy(port: number): Promise<{
  url: string;
  seen: Recorded[];
  close(): Promise<void>;
}> {
  const seen: Recorded[] = [];
  const server = createHttpServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      let rpc: string | undefined;
      let clientName: string | undefined;
      try {
        type Message = { method?: unknown; params?: { clientInfo?: { name?: unknown } } };
        const parsed = JSON.parse(body.toString("utf8")) as Message | Message[];
        const first = Array.isArray(parsed) ? parsed[0] : parsed;
        rpc = typeof first?.method === "string" ? first.method : undefined;
        const name = first?.params?.clientInfo?.name;
        clientName = typeof name === "string" ? name : undefined;
      } catch {
        rpc = undefined;
      }
      const session = req.headers["mcp-session-id"];
      const lastEventId = req.headers["last-event-id"];
      const entry: Recorded = {
        method: req.method ?? "",
        session: typeof session === "string" ? session : undefined,
        rpc,
        clientName,
        lastEventId: typeof lastEventId === "string" ? lastEventId : undefined,
        status: 0,
        opened: undefined,
        open: true,
      };
      seen.push(entry);
      const upstream = httpRequest(
        { host: "127.0.0.1", port, path: req.url, method: req.method, headers: req.headers, agent: false },
        (answer) => {
          entry.status = answer.statusCode ?? 0;
          const opened = answer.headers["mcp-session-id"];
          entry.opened = typeof opened === "string" ? opened : undefined;
          res.writeHead(entry.status, answer.headers);
          res.flushHeaders();
          answer.pipe(res);
          answer.once("close", () => res.end());
        },
      );
      upstream.on("error", () => {
        if (entry.status === 0) entry.status = 502;
        if (!res.headersSent) res.writeHead(502).end();
        else res.destroy();
      });
      res.once("close", () => {
        entry.open = false;
        upstream.destroy();
      });
      upstream.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** registry/registry.yaml's entry for `name`, pointed at `url`. */
export function registryServer(name: string, url: string): GatewaySpec["servers"][number] {
  const registry = parse(readFileSync(join(import.meta.dirname, "../../registry/registry.yaml"), "utf8")) as {
    servers: GatewaySpec["servers"];
  };
  const server = registry.servers.find((s) => s.name === name);
  if (!server) throw new Error(`registry.yaml has no server ${name}`);
  return { ...server, upstreams: [url] };
}

/** The two SDK majors' clients in the 2025 era, by the names the tests give them. */
export type Sdk2025 = "1.x" | "2.x";

export interface LegacyClientOptions {
  capabilities?: {
    elicitation?: Record<string, never>;
    sampling?: Record<string, never>;
    roots?: { listChanged?: boolean };
  };
  /** The transport's fetch (a test that routes or records requests). */
  fetch?: (url: string | URL, init?: RequestInit) => Promise<Response>;
  /** The transport's SSE reconnection: a test resuming cut streams asks for prompt retries. */
  reconnection?: {
    initialReconnectionDelay: number;
    maxReconnectionDelay: number;
    reconnectionDelayGrowFactor: number;
    maxRetries: number;
  };
  /** Each notifications/message's data. */
  onLog?: (data: unknown) => void;
  /** Each notifications/resources/updated's URI. */
  onResourceUpdated?: (uri: string) => void;
  /** The client's answer to an elicitation/create, given the request's id and its message. */
  onElicit?: (
    requestId: string | number,
    message: string,
  ) => Promise<{ action: "accept"; content: Record<string, string> }>;
  /** The client's roots, answered to a roots/list. */
  onRoots?: () => { uri: string; name?: string }[];
  /** The client's model's text, answered to a sampling/createMessage given its first message's text. */
  onSample?: (prompt: string) => string;
}

/** One connected 2025-era client, whichever SDK major: what the broker tests do with it. */
export interface LegacyClient {
  /** The session's id and revision as the client had them once connected. */
  readonly sessionId: string;
  readonly protocolVersion: string;
  call(
    name: string,
    args?: Record<string, unknown>,
    options?: {
      timeout?: number;
      onprogress?: (progress: { progress: number; total?: number; message?: string }) => void;
      signal?: AbortSignal;
    },
  ): Promise<{ isError?: boolean; content?: unknown }>;
  tools(): Promise<string[]>;
  /** The URIs of resources/list, and the URI templates of resources/templates/list. */
  resourceUris(): Promise<{ resources: string[]; templates: string[] }>;
  read(uri: string): Promise<{ contents: { uri: string }[] }>;
  prompt(name: string, args?: Record<string, string>): Promise<{ messages: { content: unknown }[] }>;
  subscribe(uri: string): Promise<unknown>;
  unsubscribe(uri: string): Promise<unknown>;
  terminate(): Promise<void>;
  close(): Promise<void>;
}

/** A sampling/createMessage answer: `onSample` given the first message's text. */
function sampled(onSample: (prompt: string) => string, messages: { content: unknown }[]) {
  const content = messages[0]?.content as { type?: string; text?: string } | undefined;
  const prompt = content?.type === "text" ? (content.text ?? "") : "";
  return {
    model: "test-model",
    role: "assistant" as const,
    content: { type: "text" as const, text: onSample(prompt) },
  };
}

/**
 * An SDK client of major `sdk` in a 2025 session on `url` with `token`; the 2.x client is checked
 * to have negotiated a 2025 revision. Errors the client reports on its own (a refused GET stream)
 * are dropped, as the SDKs do with no onerror set.
 */
export async function connect2025(
  sdk: Sdk2025,
  url: string,
  token: string,
  options: LegacyClientOptions = {},
): Promise<LegacyClient> {
  const init = {
    requestInit: { headers: { authorization: `Bearer ${token}` } },
    ...(options.fetch ? { fetch: options.fetch } : {}),
    ...(options.reconnection ? { reconnectionOptions: options.reconnection } : {}),
  };
  const capabilities = options.capabilities ?? {};
  if (sdk === "1.x") {
    const client = new Client({ name: "v1", version: "1.0.0" }, { capabilities });
    client.onerror = () => undefined;
    const { onLog, onResourceUpdated, onElicit, onRoots, onSample } = options;
    if (onLog) client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => onLog(n.params.data));
    if (onRoots) client.setRequestHandler(ListRootsRequestSchema, () => ({ roots: onRoots() }));
    if (onSample)
      client.setRequestHandler(CreateMessageRequestSchema, (request) =>
        sampled(onSample, request.params.messages),
      );
    if (onResourceUpdated)
      client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) =>
        onResourceUpdated(n.params.uri),
      );
    if (onElicit)
      client.setRequestHandler(ElicitRequestSchema, (request, extra) =>
        onElicit(extra.requestId, request.params.message),
      );
    const transport = new StreamableHTTPClientTransport(new URL(url), init);
    await client.connect(transport);
    return {
      sessionId: transport.sessionId!,
      protocolVersion: transport.protocolVersion!,
      call: (name, args = {}, { timeout, onprogress, signal } = {}) =>
        client.callTool({ name, arguments: args }, undefined, {
          ...(timeout !== undefined ? { timeout } : {}),
          ...(onprogress ? { onprogress } : {}),
          ...(signal ? { signal } : {}),
        }) as never,
      tools: async () => (await client.listTools()).tools.map((t) => t.name),
      resourceUris: async () => ({
        resources: (await client.listResources()).resources.map((r) => r.uri),
        templates: (await client.listResourceTemplates()).resourceTemplates.map((t) => t.uriTemplate),
      }),
      read: (uri) => client.readResource({ uri }),
      prompt: (name, args = {}) => client.getPrompt({ name, arguments: args }),
      subscribe: (uri) => client.subscribeResource({ uri }),
      unsubscribe: (uri) => client.unsubscribeResource({ uri }),
      terminate: () => transport.terminateSession(),
      close: () => client.close(),
    };
  }
  const client = new ClientV2({ name: "v2", version: "1.0.0" }, { capabilities });
  client.onerror = () => undefined;
  const { onLog, onResourceUpdated, onElicit, onRoots, onSample } = options;
  if (onLog) client.setNotificationHandler("notifications/message", (n) => onLog(n.params.data));
  if (onRoots) client.setRequestHandler("roots/list", () => ({ roots: onRoots() }));
  if (onSample)
    client.setRequestHandler("sampling/createMessage", (request) =>
      sampled(onSample, request.params.messages as { content: unknown }[]),
    );
  if (onResourceUpdated)
    client.setNotificationHandler("notifications/resources/updated", (n) => onResourceUpdated(n.params.uri));
  if (onElicit)
    client.setRequestHandler("elicitation/create", (request, ctx) =>
      onElicit(ctx.mcpReq.id, (request.params as { message: string }).message),
    );
  const transport = new TransportV2(new URL(url), init);
  await client.connect(transport);
  expect(client.getProtocolEra()).not.toBe("modern");
  return {
    sessionId: transport.sessionId!,
    protocolVersion: transport.protocolVersion!,
    call: (name, args = {}, { timeout, onprogress, signal } = {}) =>
      client.callTool(
        { name, arguments: args },
        {
          ...(timeout !== undefined ? { timeout } : {}),
          ...(onprogress ? { onprogress } : {}),
          ...(signal ? { signal } : {}),
        },
      ) as never,
    tools: async () => (await client.listTools()).tools.map((t) => t.name),
    resourceUris: async () => ({
      resources: (await client.listResources()).resources.map((r) => r.uri),
      templates: (await client.listResourceTemplates()).resourceTemplates.map((t) => t.uriTemplate),
    }),
    read: (uri) => client.readResource({ uri }),
    prompt: (name, args = {}) => client.getPrompt({ name, arguments: args }),
    subscribe: (uri) => client.subscribeResource({ uri }),
    unsubscribe: (uri) => client.unsubscribeResource({ uri }),
    terminate: () => transport.terminateSession(),
    close: () => client.close(),
  };
}

/**
 * An SDK 2.x client pinned to 2026-07-28 on `url` with `token`. `setup` runs before it connects
 * (notification handlers).
 */
export async function connectModern(
  url: string,
  token: string,
  options: {
    name?: string;
    capabilities?: Record<string, unknown>;
    setup?: (client: ClientV2) => void;
    /** The transport's fetch (a test that records requests or answers). */
    fetch?: (url: string | URL, init?: RequestInit) => Promise<Response>;
  } = {},
): Promise<ClientV2> {
  const client = new ClientV2(
    { name: options.name ?? "v2", version: "1.0.0" },
    {
      ...(options.capabilities ? { capabilities: options.capabilities } : {}),
      versionNegotiation: { mode: { pin: "2026-07-28" } },
    },
  );
  options.setup?.(client);
  await client.connect(
    new TransportV2(new URL(url), {
      requestInit: { headers: { authorization: `Bearer ${token}` } },
      ...(options.fetch ? { fetch: options.fetch } : {}),
    }),
  );
  return client;
}

/**
 * The demo gateway (`mcp-gateway dev`: kb, tickets, deploy) for the tests of a describe block, on
 * `plane`: `origin()` is the edge, or an Envoy-role front over the same engine, and `url()` its /mcp.
 */
export function demoPlane(plane: "edge" | "envoy"): {
  readonly gw: DemoGateway;
  /** Where clients reach the plane: the edge, or the front. */
  origin(): string;
  url(): string;
} {
  let gw: DemoGateway | undefined;
  let front: EnvoyRoleFront | undefined;
  beforeAll(async () => {
    gw = await startDemoGateway();
    if (plane === "envoy")
      front = await startEnvoyRoleFront({
        extService: { engine: gw.dev.engine, logger: gw.log.logger, metrics: gw.metrics },
      });
  });
  afterAll(async () => {
    await front?.close();
    await gw?.close();
  });
  return {
    get gw() {
      return gw!;
    },
    origin: () => front?.url ?? gw!.dev.edge.url,
    url: () => `${front?.url ?? gw!.dev.edge.url}/mcp`,
  };
}

/** One ext-service broker replica behind the Envoy-role front (brokerReplica). */
export interface BrokerReplica {
  ext: ExtService;
  /** What reached its broker listener, and with which session. */
  seen: Recorded[];
  /** Its broker listener's origin, through the recording proxy: an endpoint of the front's broker cluster. */
  url: string;
  /** Closes the recording proxy, then the ext-service. */
  close(): Promise<void>;
}

/**
 * An ext-service on free local ports whose broker's hops come back through `hopOrigin()` (the
 * Envoy-role front's origin, as they go through Envoy's listener), with a recordingProxy in front
 * of its broker listener.
 */
export async function brokerReplica(options: {
  engine: GatewayEngine;
  logger: Logger;
  hopOrigin: () => string;
  metrics?: Metrics;
  state?: GatewayState;
}): Promise<BrokerReplica> {
  const ext = await startExtService({
    engine: options.engine,
    logger: options.logger,
    ...(options.metrics ? { metrics: options.metrics } : {}),
    ...(options.state ? { state: options.state } : {}),
    grpcHost: "127.0.0.1",
    grpcPort: 0,
    adminHost: "127.0.0.1",
    adminPort: 0,
    brokerHost: "127.0.0.1",
    brokerPort: 0,
    brokerHopOrigin: options.hopOrigin,
  });
  const proxy = await recordingProxy(Number(new URL(ext.brokerUrl).port));
  return {
    ext,
    seen: proxy.seen,
    url: proxy.url.replace(/\/mcp$/, ""),
    async close() {
      await proxy.close();
      await ext.close(0);
    },
  };
}

/**
 * An HTTP proxy in front of `127.0.0.1:<port>` that holds each JSON-RPC request (a POST whose
 * body has an id) for `delay` ms before passing it on, as a slow MCP server; notifications, GET
 * and DELETE pass at once. With `down`, every connection is dropped, as a server that is down.
 * `answered` counts the requests of each JSON-RPC method the server answered through it.
 */
export async function slowProxy(port: number): Promise<{
  url: string;
  delay: number;
  down: boolean;
  answered: Record<string, number>;
  close(): Promise<void>;
}> {
  const state = { delay: 0, down: false, answered: {} as Record<string, number> };
  const server = createHttpServer((req, res) => {
    if (state.down) return void req.socket.destroy();
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      let rpc: { method?: unknown; id?: unknown } | undefined;
      try {
        rpc = JSON.parse(body.toString("utf8")) as typeof rpc;
      } catch {
        rpc = undefined;
      }
      const method = typeof rpc?.method === "string" ? rpc.method : undefined;
      const held = req.method === "POST" && rpc?.id !== undefined ? state.delay : 0;
      setTimeout(() => {
        if (res.destroyed) return;
        const upstream = httpRequest(
          { host: "127.0.0.1", port, path: req.url, method: req.method, headers: req.headers, agent: false },
          (answer) => {
            res.writeHead(answer.statusCode ?? 502, answer.headers);
            res.flushHeaders();
            answer.pipe(res);
            answer.once("end", () => {
              if (method !== undefined) state.answered[method] = (state.answered[method] ?? 0) + 1;
            });
          },
        );
        upstream.on("error", () => (res.headersSent ? res.destroy() : res.writeHead(502).end()));
        res.once("close", () => upstream.destroy());
        upstream.end(body);
      }, held);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return Object.assign(state, {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  });
}
