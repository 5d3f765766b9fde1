import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { isInitializeRequest } from "@modelcontextprotocol/sdk/types.js";

/** A running demo MCP server. */
export interface RunningServer {
  port: number;
  url: string;
  close(): Promise<void>;
}

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

/**
 * Serves MCP Streamable HTTP on `/mcp` with stateful sessions: each `initialize` creates a
 * session with its own McpServer (built by `create`), later requests carry `Mcp-Session-Id`,
 * `GET` opens the server-to-client stream and `DELETE` ends the session.
 */
export function serveMcp(create: () => McpServer, port: number, host = "127.0.0.1"): Promise<RunningServer> {
  const sessions = new Map<string, { transport: StreamableHTTPServerTransport; server: McpServer }>();

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? "/").split("?")[0];
    if (path !== "/mcp") return sendJsonError(res, 404, "Not found");
    const sessionId = req.headers["mcp-session-id"];
    const existing = typeof sessionId === "string" ? sessions.get(sessionId) : undefined;
    if (req.method === "POST") {
      let body: unknown;
      try {
        body = await readJson(req);
      } catch {
        return sendJsonError(res, 400, "Invalid JSON body");
      }
      if (existing) return existing.transport.handleRequest(req, res, body);
      if (sessionId !== undefined) return sendJsonError(res, 404, "Session not found");
      if (!isInitializeRequest(body)) return sendJsonError(res, 400, "No session: send initialize first");
      const server = create();
      const transport = new StreamableHTTPServerTransport({
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

  const http: Server = createServer((req, res) => {
    handle(req, res).catch(() => sendJsonError(res, 500, "Internal server error"));
  });

  return new Promise((resolve, reject) => {
    http.once("error", reject);
    http.listen(port, host, () => {
      http.off("error", reject);
      const bound = (http.address() as AddressInfo).port;
      resolve({
        port: bound,
        url: `http://${host}:${bound}/mcp`,
        async close() {
          const open = [...sessions.values()];
          sessions.clear();
          await Promise.allSettled(open.map((s) => s.server.close()));
          await new Promise<void>((done) => {
            http.close(() => done());
            http.closeAllConnections();
          });
        },
      });
    });
  });
}
