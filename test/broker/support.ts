import { readFileSync } from "node:fs";
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
