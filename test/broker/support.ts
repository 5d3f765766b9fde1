import { readFileSync } from "node:fs";
import { createServer as createHttpServer, request as httpRequest } from "node:http";
import { connect, createServer, type AddressInfo, type Socket } from "node:net";
import { join } from "node:path";
import { parse } from "yaml";
import { startDemoServers, type RunningServer } from "../../examples/servers/index.js";
import type { GatewaySpec } from "../e2e/harness.js";

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
      try {
        const parsed = JSON.parse(body.toString("utf8")) as { method?: unknown } | { method?: unknown }[];
        const first = Array.isArray(parsed) ? parsed[0] : parsed;
        rpc = typeof first?.method === "string" ? first.method : undefined;
      } catch {
        rpc = undefined;
      }
      const session = req.headers["mcp-session-id"];
      const lastEventId = req.headers["last-event-id"];
      const entry: Recorded = {
        method: req.method ?? "",
        session: typeof session === "string" ? session : undefined,
        rpc,
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
