import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { ToolListChangedNotificationSchema } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { serveMcp, type RunningServer } from "../../examples/servers/http.js";
import { startKbServer } from "../../examples/servers/kb.js";
import { connectClient, startGateway, waitFor, type Gateway } from "../e2e/harness.js";

/**
 * The merged GET stream and failures: a server's tools/list_changed reaches the client on its one
 * stream; a server killed mid-session drops out of the view while the others keep working.
 */
function dynamicServer(): McpServer {
  const server = new McpServer({ name: "dyn", version: "1.0.0" });
  let added = 0;
  server.registerTool("add_tool", { description: "Adds a tool" }, () => {
    added++;
    server.registerTool(`extra_${added}`, { description: "An added tool" }, () => ({
      content: [{ type: "text", text: "extra" }],
    }));
    return { content: [{ type: "text", text: `added extra_${added}` }] };
  });
  return server;
}

describe("aggregated endpoint: merged stream and failing servers", () => {
  let dyn: RunningServer;
  let kb: RunningServer;
  let gw: Gateway;
  beforeAll(async () => {
    [dyn, kb] = await Promise.all([serveMcp(dynamicServer, 0), startKbServer(0)]);
    gw = await startGateway({
      servers: [
        {
          name: "dyn",
          upstreams: [dyn.url],
          tools: ["add_tool", "extra_1", "extra_2", "extra_3"].map((name) => ({ name })),
        },
        { name: "kb", upstreams: [kb.url], tools: [{ name: "search_articles" }, { name: "get_article" }] },
      ],
      security: { pins: { enforce: false, verifyBeforeCall: false } },
    });
  });
  afterAll(async () => {
    await gw?.close();
    await Promise.allSettled([dyn?.close(), kb?.close()]);
  });

  it("relays a server's tools/list_changed on the client's GET stream", async () => {
    let changed = 0;
    const mcp = await connectClient(`${gw.edge.url}/mcp`, await gw.token("tester"), {}, (client) => {
      client.setNotificationHandler(ToolListChangedNotificationSchema, () => {
        changed++;
      });
    });
    try {
      // A kept list first: the change on the GET stream must drop it (broker/list-cache.ts).
      expect((await mcp.client.listTools()).tools.map((t) => t.name)).not.toContain("dyn__extra_1");
      // The client's GET stream and the broker's GET on each server open after initialize:
      // add tools until a change arrives.
      for (let i = 0; i < 3 && changed === 0; i++) {
        await mcp.client.callTool({ name: "dyn__add_tool", arguments: {} });
        await waitFor(() => changed > 0, 1_000).catch(() => undefined);
      }
      expect(changed).toBeGreaterThan(0);
      const tools = (await mcp.client.listTools()).tools.map((t) => t.name);
      expect(tools).toContain("dyn__extra_1");
    } finally {
      await mcp.close();
    }
  });

  it("a server killed mid-session drops out while the others keep working", async () => {
    const mcp = await connectClient(`${gw.edge.url}/mcp`, await gw.token("tester"));
    try {
      expect((await mcp.client.listTools()).tools.map((t) => t.name)).toContain("kb__search_articles");
      await kb.close();
      // The lists are kept (list-cache.ts): the call that finds kb down drops what is kept of it.
      await expect(
        mcp.client.callTool({ name: "kb__search_articles", arguments: { query: "x" } }),
      ).rejects.toMatchObject({ data: { reason: expect.stringMatching(/^upstream_|breaker_open/) } });
      const tools = (await mcp.client.listTools()).tools.map((t) => t.name);
      expect(tools).not.toContain("kb__search_articles");
      expect(tools).toContain("dyn__add_tool");
      const r = await mcp.client.callTool({ name: "dyn__add_tool", arguments: {} });
      expect(JSON.stringify(r.content)).toContain("added extra_");
      const dropped = await gw.metrics.registry.getSingleMetricAsString("mcp_gateway_upstream_errors_total");
      expect(dropped).toMatch(/reason="broker_dropped",server="kb"|server="kb",reason="broker_dropped"/);
    } finally {
      await mcp.close();
    }
  });

  it("a down server's breaker reaches the agent as the per-server path's breaker_open, with its record's id", async () => {
    // kb was closed by the test before: each call's hop fails to connect until the edge's breaker
    // for kb opens (edge.breaker.consecutiveFailures, 5 by default) and answers 503 itself.
    const mcp = await connectClient(`${gw.edge.url}/mcp`, await gw.token("tester"));
    try {
      const seen: { reason?: unknown; request_id?: unknown }[] = [];
      for (let i = 0; i < 8 && seen.at(-1)?.reason !== "breaker_open"; i++) {
        const err = await mcp.client
          .callTool({ name: "kb__search_articles", arguments: { query: "x" } })
          .then(
            () => undefined,
            (e: unknown) => e as { data?: { reason?: unknown; request_id?: unknown } },
          );
        seen.push(err?.data ?? {});
      }
      expect(seen.map((d) => d.reason)).toContain("breaker_open");
      const open = seen.find((d) => d.reason === "breaker_open")!;
      // The per-server path's own refusal: its request id names the hop's audit record.
      expect(open.request_id).toEqual(expect.any(String));
    } finally {
      await mcp.close();
    }
  });
});
