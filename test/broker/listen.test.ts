import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { toNodeHandler } from "@modelcontextprotocol/node";
import { McpServer as McpServerV2, createMcpHandler } from "@modelcontextprotocol/server";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { serveMcp, type RunningServer } from "../../examples/servers/http.js";
import { startGateway, waitFor, type Gateway } from "../e2e/harness.js";
import { connectModern } from "./support.js";

/**
 * 2026-07-28 `subscriptions/listen` on the aggregated endpoint: the broker listens on each server
 * of the subscriber's view, as that agent (a 2026-07-28 server with its own listen, a 2025 server
 * with a session and its GET stream), and a server's list_changed reaches the subscribers whose
 * view holds that server, and no one else.
 */
/** A 2025 server (a McpServer per session) whose add_tool adds a tool to every session's server. */
const adders = new Set<(n: number) => void>();
let added = 0;
function legacyServer(): McpServer {
  const server = new McpServer({ name: "legacy", version: "1.0.0" });
  const extra = (n: number) =>
    server.registerTool(`extra_${n}`, { description: "An added tool" }, () => ({
      content: [{ type: "text", text: "extra" }],
    }));
  for (let n = 1; n <= added; n++) extra(n);
  server.registerTool("add_tool", { description: "Adds a tool" }, () => {
    added++;
    // Each session's server announces it on its own GET stream (the SDK does on registering).
    for (const add of adders) add(added);
    return { content: [{ type: "text", text: `added extra_${added}` }] };
  });
  adders.add(extra);
  return server;
}

describe("aggregated endpoint: subscriptions/listen relays the servers' list_changed (2026-07-28)", () => {
  let http: Server;
  let legacy: RunningServer;
  let gw: Gateway;
  beforeAll(async () => {
    const handler = createMcpHandler(
      () => {
        const server = new McpServerV2(
          { name: "modern", version: "1.0.0" },
          { capabilities: { tools: { listChanged: true } } },
        );
        server.registerTool("bump", { description: "Announces a change of its tools." }, () => {
          handler.notify.toolsChanged();
          return { content: [{ type: "text", text: "bumped" }] };
        });
        return server;
      },
      { legacy: "reject" },
    );
    const serve = toNodeHandler(handler);
    http = createServer((req, res) => void serve(req, res).catch(() => res.destroy()));
    await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
    legacy = await serveMcp(legacyServer, 0);
    gw = await startGateway({
      servers: [
        {
          name: "modern",
          upstreams: [`http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp`],
          tools: [{ name: "bump" }],
        },
        {
          name: "legacy",
          upstreams: [legacy.url],
          tools: ["add_tool", "extra_1", "extra_2", "extra_3"].map((name) => ({ name })),
        },
      ],
      security: { pins: { enforce: false, verifyBeforeCall: false } },
      config: { broker: { views: { "modern-only": { servers: ["modern"] } } } },
    });
  });
  afterAll(async () => {
    await gw?.close();
    http?.closeAllConnections();
    await new Promise((resolve) => http?.close(resolve));
    await legacy?.close();
  });

  async function subscriber(path: string) {
    const changes: unknown[] = [];
    const client = await connectModern(`${gw.edge.url}${path}`, await gw.token("tester"), {
      setup: (c) =>
        c.setNotificationHandler("notifications/tools/list_changed", (n) => {
          changes.push(n);
        }),
    });
    const subscription = await client.listen({ toolsListChanged: true });
    expect(subscription.honoredFilter).toEqual({ toolsListChanged: true });
    return { client, changes, close: () => subscription.close().then(() => client.close()) };
  }

  it("a change on either server reaches /mcp; only the view's server reaches the view", async () => {
    const all = await subscriber("/mcp");
    const view = await subscriber("/mcp/views/modern-only");
    try {
      await all.client.callTool({ name: "modern__bump", arguments: {} });
      await waitFor(() => all.changes.length === 1 && view.changes.length === 1, 10_000, "the modern change");

      await all.client.callTool({ name: "legacy__add_tool", arguments: {} });
      await waitFor(() => all.changes.length === 2, 10_000, "the legacy change");
      // The view does not hold the 2025 server: nothing of it reaches its subscriber.
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(view.changes).toHaveLength(1);
      // The kept list was dropped: the new tool is listed at once.
      const tools = (await all.client.listTools()).tools.map((t) => t.name);
      expect(tools).toContain("legacy__extra_1");
    } finally {
      await Promise.allSettled([all.close(), view.close()]);
    }
  });
});
