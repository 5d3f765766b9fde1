import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { repoRoot } from "../../ext-service/src/commands/dev.js";
import { loadConfig } from "../../ext-service/src/config/load.js";
import { startDemoServers, type RunningServer } from "../../examples/servers/index.js";
import { connectClient } from "../e2e/harness.js";

/**
 * The registry pins the demo servers' tool definitions; the gateway compares what servers
 * announce against it. This keeps registry/registry.yaml and examples/servers/ from drifting.
 */
describe("registry/registry.yaml matches the demo servers", () => {
  const loaded = loadConfig(join(repoRoot(), "examples", "gateway.yaml"));
  let servers: Record<string, RunningServer>;
  beforeAll(async () => {
    servers = await startDemoServers({ kb: 0, tickets: 0, deploy: 0 });
  });
  afterAll(async () => {
    await Promise.all(Object.values(servers ?? {}).map((s) => s.close()));
  });

  it("names exactly the demo servers", () => {
    expect(loaded.registry.servers.map((s) => s.name).sort()).toEqual(Object.keys(servers).sort());
  });

  for (const server of loaded.registry.servers) {
    it(`${server.name}: every tool's title, description, inputSchema, outputSchema and annotations`, async () => {
      const { client, close } = await connectClient(servers[server.name]!.url, undefined);
      try {
        const { tools } = await client.listTools();
        const announced = tools.map((t) => ({
          name: t.name,
          title: t.title,
          description: t.description,
          inputSchema: t.inputSchema,
          outputSchema: t.outputSchema,
          annotations: t.annotations,
        }));
        const registered = server.tools.map((t) => ({
          name: t.name,
          title: t.title,
          description: t.description,
          inputSchema: t.inputSchema,
          outputSchema: t.outputSchema,
          annotations: t.annotations,
        }));
        expect(registered).toEqual(announced);
      } finally {
        await close();
      }
    });
  }

  it("points each demo server at its default port", () => {
    const ports = Object.fromEntries(loaded.registry.servers.map((s) => [s.name, s.upstreams]));
    expect(ports).toEqual({
      kb: ["http://127.0.0.1:3101/mcp"],
      tickets: ["http://127.0.0.1:3102/mcp"],
      deploy: ["http://127.0.0.1:3103/mcp"],
    });
  });
});
