import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { ToolListChangedNotificationSchema } from "@modelcontextprotocol/sdk/types.js";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  Client as ClientV2,
  StreamableHTTPClientTransport as TransportV2,
} from "@modelcontextprotocol/client";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { serveMcp, type RunningServer } from "../../examples/servers/http.js";
import { startKbServer } from "../../examples/servers/kb.js";
import { startEnvoyRoleFront, type EnvoyRoleFront } from "../../ext-service/src/envoy/envoy-role-front.js";
import { startGateway, waitFor, type Gateway } from "../e2e/harness.js";
import { connectModern, cuttableProxy } from "./support.js";

/**
 * Issue 14, found by a user trial: an agent that listed once never saw a server that was down
 * when it connected, nor learned that one went away; nothing told it. Now a server dropping out
 * of the view (a hop finds it down) or coming back (a hop to it, or the broker's probe of it,
 * answers) sends the agents listening `notifications/tools/list_changed`: a 2025 session on its
 * GET stream, a 2026-07-28 client on its `subscriptions/listen`.
 */

/** Every session's server of the notes server: a tool added is added (and announced) on each. */
const notesSessions = new Set<McpServer>();
let added = 0;

function notesServer(): McpServer {
  const server = new McpServer({ name: "notes", version: "1.0.0" });
  notesSessions.add(server);
  server.server.onclose = () => notesSessions.delete(server);
  server.registerTool("add_note", { description: "Adds a note" }, () => ({
    content: [{ type: "text", text: "noted" }],
  }));
  server.registerTool("add_tool", { description: "Adds a tool to every session" }, () => {
    added++;
    // Each session's server announces it with tools/list_changed on that session's GET stream.
    for (const session of notesSessions)
      session.registerTool(`extra_${added}`, { description: "An added tool" }, () => ({
        content: [{ type: "text", text: "extra" }],
      }));
    return { content: [{ type: "text", text: `added extra_${added}` }] };
  });
  return server;
}

type Kind = "1.x" | "2.x (2025)" | "2.x (2026-07-28)";

/** A client of `url` that counts the tools/list_changed it hears, on its GET stream or listen. */
async function listening(
  kind: Kind,
  url: string,
  token: string,
): Promise<{
  changes(): number;
  tools(): Promise<string[]>;
  call(name: string): Promise<unknown>;
  close(): Promise<void>;
}> {
  let changes = 0;
  const requestInit = { headers: { authorization: `Bearer ${token}` } };
  if (kind === "1.x") {
    const client = new Client({ name: "v1", version: "1.0.0" });
    client.onerror = () => undefined;
    client.setNotificationHandler(ToolListChangedNotificationSchema, () => void changes++);
    // The 1.x transport opens the session's GET stream itself once initialized.
    await client.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit }));
    return {
      changes: () => changes,
      tools: async () => (await client.listTools()).tools.map((t) => t.name),
      call: (name) => client.callTool({ name, arguments: {} }),
      close: () => client.close(),
    };
  }
  if (kind === "2.x (2025)") {
    const client = new ClientV2({ name: "v2", version: "1.0.0" });
    client.onerror = () => undefined;
    client.setNotificationHandler("notifications/tools/list_changed", () => void changes++);
    await client.connect(new TransportV2(new URL(url), { requestInit }));
    expect(client.getProtocolEra()).not.toBe("modern");
    return {
      changes: () => changes,
      tools: async () => (await client.listTools()).tools.map((t) => t.name),
      call: (name) => client.callTool({ name, arguments: {} }),
      close: () => client.close(),
    };
  }
  const client = await connectModern(url, token, {
    setup: (c) => c.setNotificationHandler("notifications/tools/list_changed", () => void changes++),
  });
  const subscription = await client.listen({ toolsListChanged: true });
  return {
    changes: () => changes,
    tools: async () => (await client.listTools()).tools.map((t) => t.name),
    call: (name) => client.callTool({ name, arguments: {} }),
    close: async () => {
      await subscription.close?.();
      await client.close();
    },
  };
}

describe.each(["edge", "envoy"] as const)("servers leaving and rejoining the view, %s plane", (plane) => {
  let notes: RunningServer;
  let kb: RunningServer;
  let proxy: Awaited<ReturnType<typeof cuttableProxy>>;
  let gw: Gateway;
  let front: EnvoyRoleFront | undefined;

  beforeAll(async () => {
    [notes, kb] = await Promise.all([serveMcp(notesServer, 0), startKbServer(0)]);
    proxy = await cuttableProxy(Number(new URL(notes.url).port));
    gw = await startGateway({
      servers: [
        {
          name: "notes",
          upstreams: [`${proxy.url}/mcp`],
          tools: [{ name: "add_note" }, { name: "add_tool" }],
        },
        { name: "kb", upstreams: [kb.url], tools: [{ name: "search_articles" }, { name: "get_article" }] },
      ],
      security: { pins: { enforce: false, verifyBeforeCall: false } },
      // A short breaker cooldown: the probes that find notes down open it.
      edge: { breaker: { consecutiveFailures: 5, cooldown: "200ms" } },
      config: { broker: { probeInterval: "100ms", views: { kbonly: { servers: ["kb"] } } } },
    });
    if (plane === "envoy")
      front = await startEnvoyRoleFront({
        extService: { engine: gw.engine, logger: gw.log.logger, metrics: gw.metrics },
      });
  });
  afterEach(() => proxy.resume());
  afterAll(async () => {
    await front?.close();
    await gw?.close();
    await proxy?.close();
    await Promise.allSettled([notes?.close(), kb?.close()]);
  });

  const url = () => `${front?.url ?? gw.edge.url}/mcp`;

  it.each(["1.x", "2.x (2025)", "2.x (2026-07-28)"] as const)(
    "%s: a server down when the client connected is announced when it answers again, and again when it goes",
    async (kind) => {
      proxy.cut();
      const client = await listening(kind, url(), await gw.token("tester"));
      // A client whose view does not hold notes is told nothing of it.
      const kbOnly = await listening(
        kind,
        url().replace(/\/mcp$/, "/mcp/views/kbonly"),
        await gw.token("tester"),
      );
      try {
        // Listed once while notes is down: kb only.
        const before = await client.tools();
        expect(before).toContain("kb__search_articles");
        expect(before).not.toContain("notes__add_note");
        const heard = client.changes();
        // notes answers again: the broker's probe finds it, and the client is told.
        proxy.resume();
        await waitFor(() => client.changes() > heard, 10_000, "list_changed for notes rejoining");
        expect(await client.tools()).toContain("notes__add_note");
        // Its stream behind the client's was opened when it joined: its own changes reach the
        // client. The stream opens as the client is told: add tools until a change arrives.
        const joined = client.changes();
        for (let i = 0; i < 3 && client.changes() === joined; i++) {
          await client.call("notes__add_tool");
          await waitFor(() => client.changes() > joined, 1_500).catch(() => undefined);
        }
        expect(client.changes(), "notes' own list_changed").toBeGreaterThan(joined);
        // notes goes away: the hop that finds it down tells the client too.
        const seen = client.changes();
        proxy.cut();
        await expect(client.call("notes__add_note")).rejects.toMatchObject({
          data: { reason: expect.stringMatching(/^upstream_|^breaker_open$/) },
        });
        await waitFor(() => client.changes() > seen, 5_000, "list_changed for notes leaving");
        expect(await client.tools()).not.toContain("notes__add_note");
        expect(kbOnly.changes()).toBe(0);
      } finally {
        await kbOnly.close();
        await client.close();
      }
    },
  );
});
