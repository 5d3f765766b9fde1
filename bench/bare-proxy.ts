import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Pool, type Dispatcher } from "undici";

/**
 * The floor under the local edge: a reverse proxy on the same stack (node:http in, an undici
 * pool out) with no policy, no audit, no metrics. `/mcp/<server>` goes to the reference server's
 * `/mcp` (or `/mcp-sse` for `ref-sse`). The body is read whole and the answer relayed whole, as
 * the edge does for JSON. Shows how much of the edge's cost is the proxying itself: CPU per
 * request with bench/cpu.ts (`--side bare-proxy`), throughput against direct with the optional
 * bench target (`npm run bench -- --targets direct,edge,bare-proxy`, bench/targets/bare-proxy.ts).
 *
 * Not a gateway: no header filtering, no limits, no timeouts.
 */

const HOP = new Set(["connection", "keep-alive", "transfer-encoding", "host", "content-length"]);

class Collect implements Dispatcher.DispatchHandler {
  private chunks: Buffer[] = [];
  private size = 0;
  private status = 0;
  private headers: Record<string, string> = {};

  constructor(private readonly res: ServerResponse) {}

  onRequestStart(): void {}
  onResponseStart(
    _controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | string[] | undefined>,
  ): void {
    this.status = statusCode;
    for (const name in headers) {
      const v = headers[name];
      if (typeof v === "string" && !HOP.has(name)) this.headers[name] = v;
    }
  }
  onResponseData(_controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
  }
  onResponseEnd(): void {
    const body = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.size);
    this.headers["content-length"] = String(body.length);
    this.res.writeHead(this.status, this.headers);
    this.res.end(body);
  }
  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    if (!this.res.headersSent) this.res.writeHead(502).end(err.message);
    else this.res.destroy();
  }
}

export async function serveBareProxy(params: {
  origin: string;
  api?: "request" | "dispatch";
  port?: number;
}) {
  const pool = new Pool(params.origin, { connections: 64, pipelining: 1, keepAliveTimeout: 4_000 });
  const useDispatch = params.api === "dispatch";

  function handle(req: IncomingMessage, res: ServerResponse): void {
    const server = (req.url ?? "").slice("/mcp/".length);
    const path = server === "ref-sse" ? "/mcp-sse" : "/mcp";
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
      const headers: Record<string, string> = {};
      for (const name in req.headers) {
        const v = req.headers[name];
        if (typeof v === "string" && !HOP.has(name)) headers[name] = v;
      }
      headers["content-length"] = String(body.length);
      if (useDispatch) {
        pool.dispatch({ path, method: "POST", headers, body }, new Collect(res));
        return;
      }
      pool.request({ path, method: "POST", headers, body }).then(
        async (r) => {
          const out: Buffer[] = [];
          for await (const c of r.body) out.push(c as Buffer);
          const whole = Buffer.concat(out);
          const h: Record<string, string> = {};
          for (const name in r.headers) {
            const v = r.headers[name];
            if (typeof v === "string" && !HOP.has(name)) h[name] = v;
          }
          h["content-length"] = String(whole.length);
          res.writeHead(r.statusCode, h);
          res.end(whole);
        },
        (err: Error) => res.writeHead(502).end(err.message),
      );
    });
  }

  const http = createServer({ keepAliveTimeout: 5_000 }, handle);
  await new Promise<void>((resolve) => http.listen(params.port ?? 0, "127.0.0.1", resolve));
  return {
    ports: { http: (http.address() as AddressInfo).port },
    close: async () => {
      http.closeAllConnections();
      await new Promise<void>((resolve) => http.close(() => resolve()));
      await pool.destroy();
    },
  };
}
