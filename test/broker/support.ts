import { readFileSync } from "node:fs";
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
