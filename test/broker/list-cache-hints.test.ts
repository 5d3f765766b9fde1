import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { toNodeHandler } from "@modelcontextprotocol/node";
import { McpServer, createMcpHandler } from "@modelcontextprotocol/server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startGateway, type Gateway } from "../e2e/harness.js";
import { connectModern } from "./support.js";

/**
 * A 2026-07-28 server's caching hints decide how long the aggregated endpoint keeps its list
 * (broker/list-cache.ts), as they do on the per-server path: `ttlMs: 0` keeps nothing, a positive
 * ttlMs keeps it that long. The server counts the tools/list requests it answers (the revision
 * names the method in the Mcp-Method header).
 */
describe("aggregated endpoint: a 2026-07-28 server's ttlMs bounds the kept list", () => {
  let http: Server;
  let gw: Gateway;
  let lists = 0;
  /** The ttlMs the next server instance puts on its lists. */
  let ttlMs = 0;
  beforeAll(async () => {
    const handler = createMcpHandler(
      () => {
        const server = new McpServer(
          { name: "hinted", version: "1.0.0" },
          {
            capabilities: { tools: { listChanged: true } },
            cacheHints: { "tools/list": { ttlMs, cacheScope: "private" } },
          },
        );
        server.registerTool("ping", { description: "Answers pong." }, () => ({
          content: [{ type: "text", text: "pong" }],
        }));
        return server;
      },
      { legacy: "reject" },
    );
    const serve = toNodeHandler(handler);
    http = createServer((req, res) => {
      if (req.headers["mcp-method"] === "tools/list") lists++;
      serve(req, res).catch(() => res.destroy());
    });
    await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp`;
    gw = await startGateway({
      servers: [{ name: "hinted", upstreams: [url], tools: [{ name: "ping" }] }],
      security: { pins: { enforce: false, verifyBeforeCall: false } },
    });
  });
  afterAll(async () => {
    await gw?.close();
    http?.closeAllConnections();
    await new Promise((resolve) => http?.close(resolve));
  });

  /** The caching hints of each aggregated list the client got. */
  const hints: { ttlMs?: unknown; cacheScope?: unknown }[] = [];

  async function listTwice(token: string): Promise<number> {
    const client = await connectModern(`${gw.edge.url}/mcp`, token);
    try {
      const before = lists;
      for (let i = 0; i < 2; i++) {
        // Straight requests: the client's own response cache would answer the second one itself.
        const result = (await client.request({ method: "tools/list", params: {} })) as {
          tools: { name: string }[];
          ttlMs?: unknown;
          cacheScope?: unknown;
        };
        expect(result.tools.map((t) => t.name)).toEqual(["hinted__ping"]);
        hints.push({ ttlMs: result.ttlMs, cacheScope: result.cacheScope });
      }
      return lists - before;
    } finally {
      await client.close();
    }
  }

  it("ttlMs 0: every list asks the server", async () => {
    ttlMs = 0;
    const token = await gw.token("tester");
    // The first lists record the tool's live definition against its (empty) registry entry, a
    // drift change that keeps an answer fetched meanwhile out of the cache: not what is tested.
    await listTwice(token);
    hints.length = 0;
    expect(await listTwice(token)).toBe(2);
    // Relayed to the client: the aggregate is no fresher than its part.
    expect(hints).toEqual([
      { ttlMs: 0, cacheScope: "private" },
      { ttlMs: 0, cacheScope: "private" },
    ]);
  });

  it("a positive ttlMs: kept that long, then asked again", async () => {
    ttlMs = 1_500;
    const token = await gw.token("other");
    hints.length = 0;
    expect(await listTwice(token)).toBe(1);
    // The server's ttlMs, then what is left of it for the kept list; private, as the agent's view.
    expect(hints.map((h) => h.cacheScope)).toEqual(["private", "private"]);
    const [fetched, kept] = hints.map((h) => h.ttlMs as number);
    expect(fetched).toBeGreaterThan(0);
    expect(fetched).toBeLessThanOrEqual(1_500);
    expect(kept).toBeLessThanOrEqual(fetched!);
    await new Promise((resolve) => setTimeout(resolve, 1_700));
    expect(await listTwice(token)).toBe(1);
    const counted = await gw.metrics.registry.getSingleMetricAsString("mcp_gateway_broker_list_cache_total");
    expect(counted).toMatch(/kind="tools",result="hit"} 2/);
  });
});
