import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Metrics } from "./metrics.js";

export interface AdminState {
  /** False while starting and while draining on shutdown. */
  ready(): boolean;
}

/** An API mounted on the admin port: answers its own paths (returns true) and leaves the rest. */
export type AdminRoutes = (req: IncomingMessage, res: ServerResponse) => boolean;

/**
 * Admin HTTP: /metrics (Prometheus), /healthz (process alive), /readyz (accepting traffic), and
 * the APIs in `routes` (the approvals API), which authenticate their callers themselves.
 */
export function startAdminServer(
  metrics: Metrics,
  state: AdminState,
  host: string,
  port: number,
  routes: readonly AdminRoutes[] = [],
): Promise<Server> {
  const server = createServer((req, res) => {
    for (const route of routes) if (route(req, res)) return;
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
      return;
    }
    if (path === "/healthz") {
      res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
    } else if (path === "/readyz") {
      const ready = state.ready();
      res
        .writeHead(ready ? 200 : 503, { "content-type": "text/plain" })
        .end(ready ? "ready\n" : "not ready\n");
    } else if (path === "/metrics") {
      metrics.registry.metrics().then(
        (body) => res.writeHead(200, { "content-type": metrics.registry.contentType }).end(body),
        () => res.writeHead(500).end(),
      );
    } else {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
    }
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve(server);
    });
  });
}

export function boundPort(server: { address(): AddressInfo | string | null }): number {
  const addr = server.address();
  return typeof addr === "object" && addr ? addr.port : 0;
}

/** http://host:port of the admin server, with a wildcard host shown as loopback. */
export function adminBaseUrl(host: string, port: number): string {
  const shown = host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host.includes(":") ? `[${host}]` : host;
  return `http://${shown}:${port}`;
}
