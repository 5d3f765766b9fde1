/**
 * The conformance suite has no option to send an Authorization header (its server leg connects with bare fetch,
 * undici and SDK transports), and the gateway requires a bearer token. This hop stands where an agent's HTTP client
 * would add its token: it forwards each request byte for byte to one gateway URL, with every header the suite sent
 * (Host and Origin included, so the DNS rebinding probe reaches the gateway as sent), plus `Authorization`.
 * Responses stream back unchanged (status, headers, SSE chunks as they arrive).
 */
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface TokenHop {
  /** The hop's own origin: where the suite, like an agent, reaches the gateway (the gateway's `publicUrl`). */
  origin: string;
  /** Sends what arrives from now on to `targetUrl` with `token`; returns the URL to give the suite (same path). */
  forwardTo(targetUrl: string, token: string): string;
  close(): Promise<void>;
}

/** Hop-by-hop headers (RFC 9110 7.6.1) belong to one connection and are not forwarded. */
const HOP_BY_HOP = new Set(["connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade"]);

function forwardedHeaders(
  incoming: IncomingMessage["headers"],
  token: string,
): Record<string, string | string[]> {
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(incoming)) {
    if (value === undefined || HOP_BY_HOP.has(name) || name === "authorization") continue;
    headers[name] = value;
  }
  headers.authorization = `Bearer ${token}`;
  return headers;
}

export async function startTokenHop(): Promise<TokenHop> {
  let target: URL | undefined;
  let token = "";
  const relay = (req: IncomingMessage, res: ServerResponse): void => {
    if (!target) {
      res.writeHead(502).end();
      return;
    }
    const path = new URL(req.url ?? "/", "http://hop").search;
    const upstream = request(
      {
        host: target.hostname,
        port: target.port,
        method: req.method,
        path: `${target.pathname}${path}`,
        headers: forwardedHeaders(req.headers, token),
      },
      (answer) => {
        const headers = Object.fromEntries(
          Object.entries(answer.headers).filter(([name]) => !HOP_BY_HOP.has(name)),
        ) as Record<string, string | string[]>;
        res.writeHead(answer.statusCode ?? 502, headers);
        res.flushHeaders();
        answer.pipe(res);
        answer.on("error", () => res.destroy());
      },
    );
    upstream.on("error", () => {
      if (!res.headersSent) res.writeHead(502).end();
      else res.destroy();
    });
    res.on("close", () => upstream.destroy());
    req.pipe(upstream);
  };
  const server: Server = createServer(relay);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  const origin = `http://127.0.0.1:${port}`;
  return {
    origin,
    forwardTo(targetUrl, bearer) {
      target = new URL(targetUrl);
      token = bearer;
      return `${origin}${target.pathname}`;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
