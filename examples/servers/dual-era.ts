import { randomUUID } from "node:crypto";
import {
  createServer,
  type IncomingMessage,
  type Server as HttpServer,
  type ServerResponse,
} from "node:http";
import type { AddressInfo } from "node:net";
import { NodeStreamableHTTPServerTransport, toNodeHandler } from "@modelcontextprotocol/node";
import { createMcpHandler, isLegacyRequest, type McpServer, type Server } from "@modelcontextprotocol/server";
import type { RunningServer } from "./http.js";

const MAX_BODY = 1_048_576;

function sendJsonError(res: ServerResponse, status: number, message: string): void {
  if (res.headersSent) return;
  res
    .writeHead(status, { "content-type": "application/json" })
    .end(JSON.stringify({ jsonrpc: "2.0", id: null, error: { code: -32000, message } }));
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new Error("body too large");
    chunks.push(chunk as Buffer);
  }
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

function webRequest(req: IncomingMessage, url: string): Request {
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (value !== undefined) headers.set(name, Array.isArray(value) ? value.join(", ") : value);
  }
  return new Request(url, { method: req.method ?? "GET", headers });
}

/** Serves MCP on `/mcp` in both eras: node requests in, `close` ends every session. */
export interface BothErasHandler {
  handle(req: IncomingMessage, res: ServerResponse): Promise<void>;
  close(): Promise<void>;
}

/**
 * Serves one MCP server definition on `/mcp` in both protocol eras (the v2 SDK):
 * - 2026-07-28 requests (per-request `_meta` envelope) go to the SDK's stateless
 *   `createMcpHandler` (`server/discover`, `subscriptions/listen`, input_required results);
 * - 2025 traffic keeps stateful sessions: `initialize` creates a session with its own server
 *   over the SDK's Streamable HTTP transport, `GET` opens its stream and `DELETE` ends it.
 * The SDK's own `isLegacyRequest` routes, so the split is exactly the one the SDK makes.
 * `origin()` is the origin the requests arrive at. A `req.auth` set before `handle` reaches the
 * handlers as `ctx.http.authInfo` in both eras.
 */
export function bothErasHandler(create: () => McpServer | Server, origin: () => string): BothErasHandler {
  const modern = createMcpHandler(() => create(), { legacy: "reject" });
  const modernNode = toNodeHandler(modern);
  const sessions = new Map<
    string,
    { transport: NodeStreamableHTTPServerTransport; server: McpServer | Server }
  >();

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? "/").split("?")[0];
    if (path !== "/mcp") return sendJsonError(res, 404, "Not found");
    const url = `${origin()}${req.url ?? "/mcp"}`;
    let body: unknown;
    if (req.method === "POST") {
      try {
        body = await readJson(req);
      } catch {
        return sendJsonError(res, 400, "Invalid JSON body");
      }
    }
    if (!(await isLegacyRequest(webRequest(req, url), body))) return modernNode(req, res, body);

    const sessionId = req.headers["mcp-session-id"];
    const existing = typeof sessionId === "string" ? sessions.get(sessionId) : undefined;
    if (req.method === "POST") {
      if (existing) return existing.transport.handleRequest(req, res, body);
      if (sessionId !== undefined) return sendJsonError(res, 404, "Session not found");
      const server = create();
      const transport = new NodeStreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (id) => {
          sessions.set(id, { transport, server });
        },
        onsessionclosed: (id) => {
          sessions.delete(id);
        },
      });
      transport.onclose = () => {
        if (transport.sessionId) sessions.delete(transport.sessionId);
      };
      await server.connect(transport);
      return transport.handleRequest(req, res, body);
    }
    if (req.method === "GET" || req.method === "DELETE") {
      if (!existing) return sendJsonError(res, sessionId === undefined ? 400 : 404, "Session not found");
      return existing.transport.handleRequest(req, res);
    }
    res.writeHead(405, { allow: "GET, POST, DELETE" }).end();
  };

  return {
    handle,
    async close() {
      const open = [...sessions.values()];
      sessions.clear();
      await Promise.allSettled([...open.map((s) => s.server.close()), modern.close()]);
    },
  };
}

/** Serves `create`'s server on `http://host:port/mcp` in both protocol eras (bothErasHandler). */
export function serveBothEras(
  create: () => McpServer,
  port: number,
  host = "127.0.0.1",
): Promise<RunningServer> {
  const handler = bothErasHandler(create, () => `http://${host}:${port}`);
  const http: HttpServer = createServer((req, res) => {
    handler.handle(req, res).catch(() => sendJsonError(res, 500, "Internal server error"));
  });

  return new Promise((resolve, reject) => {
    http.once("error", reject);
    http.listen(port, host, () => {
      http.off("error", reject);
      const bound = (http.address() as AddressInfo).port;
      port = bound;
      resolve({
        port: bound,
        url: `http://${host}:${bound}/mcp`,
        async close() {
          await handler.close();
          await new Promise<void>((done) => {
            http.close(() => done());
            http.closeAllConnections();
          });
        },
      });
    });
  });
}
