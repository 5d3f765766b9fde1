import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { toNodeHandler } from "@modelcontextprotocol/node";
import { McpServer, createMcpHandler, type McpHttpHandler } from "@modelcontextprotocol/server";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { startEnvoyRoleFront, type EnvoyRoleFront } from "../../ext-service/src/envoy/envoy-role-front.js";
import { startGateway, waitFor, type Gateway, type GatewaySpec } from "../e2e/harness.js";
import { describeWithRedis, startRedis, type TestRedis } from "./redis-server.js";

/**
 * The 2026-07-28 caching hints (ttlMs, cacheScope) on both planes, with the v2 SDK on both ends:
 * the gateway reuses a list or resources/read result for as long as the server said, shares a
 * public one across agents but judges each hit for its agent (RBAC view, security checks), keeps
 * a private one per agent, sends what is left of ttlMs, marks every per-agent list private, and
 * drops what it kept of a server when that server says its lists or resources changed.
 */

const TTL = 60_000;
const PUBLIC = { ttlMs: TTL, cacheScope: "public" } as const;
/** The v2 client keeps results per their hints itself: every call here must reach the gateway. */
const FETCH = { cacheMode: "bypass" } as const;

function notesServer(reads: Record<string, number>): McpServer {
  const mcp = new McpServer(
    { name: "notes", version: "1.0.0" },
    {
      capabilities: { tools: { listChanged: true }, resources: { listChanged: true } },
      cacheHints: { "tools/list": PUBLIC, "resources/list": PUBLIC },
    },
  );
  for (const name of ["public_tool", "secret_tool"]) {
    mcp.registerTool(name, { description: `The ${name}.`, inputSchema: z.object({}) }, async () => ({
      content: [{ type: "text", text: name }],
    }));
  }
  const resource = (
    name: string,
    uri: string,
    cacheHint: { ttlMs: number; cacheScope: "public" | "private" },
  ) =>
    mcp.registerResource(name, uri, { mimeType: "text/plain", cacheHint }, async (u) => {
      reads[u.href] = (reads[u.href] ?? 0) + 1;
      return { contents: [{ uri: u.href, text: `${name} #${reads[u.href]}` }] };
    });
  resource("handbook", "notes://handbook", PUBLIC);
  resource("mine", "notes://mine", { ttlMs: TTL, cacheScope: "private" });
  resource("now", "notes://now", { ttlMs: 0, cacheScope: "public" });
  return mcp;
}

describe("2026-07-28 caching hints, both planes", () => {
  let handler: McpHttpHandler;
  let upstream: Server;
  let gw: Gateway;
  let front: EnvoyRoleFront;
  let spec: GatewaySpec;
  /** Requests the server received, by their Mcp-Method header. */
  const received: Record<string, number> = {};
  const reads: Record<string, number> = {};

  beforeAll(async () => {
    handler = createMcpHandler(() => notesServer(reads), { legacy: "reject", keepAliveMs: 0 });
    const node = toNodeHandler(handler);
    upstream = createServer((req, res) => {
      const method = String(req.headers["mcp-method"] ?? "");
      received[method] = (received[method] ?? 0) + 1;
      void node(req, res);
    });
    await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/mcp`;
    // The registry pins the server's own definitions: a list whose tools drifted from their pins
    // is changed by the gateway, and a changed answer is never kept.
    const direct = new Client(
      { name: "pinning", version: "1.0.0" },
      { versionNegotiation: { mode: { pin: "2026-07-28" } } },
    );
    await direct.connect(new StreamableHTTPClientTransport(new URL(url)));
    const { tools } = await direct.listTools();
    await direct.close();
    spec = {
      servers: [
        {
          name: "notes",
          upstreams: [url],
          tools: tools.map((t) =>
            Object.fromEntries(
              Object.entries(t).filter(
                ([k, v]) =>
                  ["name", "title", "description", "inputSchema", "outputSchema", "annotations"].includes(
                    k,
                  ) && v !== undefined,
              ),
            ),
          ),
        },
      ],
      roles: {
        all: { rules: [{ effect: "allow", tools: ["*/*"], resources: ["*/**"] }] },
        limited: { rules: [{ effect: "allow", tools: ["notes/public_tool"], resources: ["notes/**"] }] },
      },
      agents: { tester: { roles: ["all"] }, other: { roles: ["limited"] } },
      security: { pins: { verifyBeforeCall: false } },
    };
    gw = await startGateway(spec);
    front = await startEnvoyRoleFront({
      extService: { engine: gw.engine, logger: gw.log.logger, metrics: gw.metrics },
    });
  });
  afterAll(async () => {
    await front?.close();
    await gw?.close();
    upstream?.closeAllConnections();
    await new Promise<void>((resolve) => upstream?.close(() => resolve()));
    await handler?.close();
  });
  beforeEach(() => {
    for (const k of Object.keys(received)) delete received[k];
    for (const k of Object.keys(reads)) delete reads[k];
  });

  async function connect(plane: "edge" | "envoy" | Gateway, agent: string): Promise<Client> {
    const client = new Client(
      { name: "hints-test", version: "1.0.0" },
      { versionNegotiation: { mode: { pin: "2026-07-28" } } },
    );
    const via = typeof plane === "string" ? gw : plane;
    const url = plane === "envoy" ? `${front.url}/mcp/notes` : via.url("notes");
    await client.connect(
      new StreamableHTTPClientTransport(new URL(url), {
        requestInit: { headers: { authorization: `Bearer ${await via.token(agent)}` } },
      }),
    );
    return client;
  }

  /** Makes the server announce a tools/list change on a subscriptions/listen stream of `plane`. */
  async function invalidateLists(plane: "edge" | "envoy" | Gateway): Promise<void> {
    const c = await connect(plane, "tester");
    try {
      let changed = 0;
      c.setNotificationHandler("notifications/tools/list_changed", () => void changed++);
      const subscription = await c.listen({ toolsListChanged: true });
      handler.notify.toolsChanged();
      await waitFor(() => changed === 1, 5_000, "list_changed");
      await subscription.close();
    } finally {
      await c.close();
    }
    for (const k of Object.keys(received)) delete received[k];
  }

  for (const plane of ["edge", "envoy"] as const) {
    it(`${plane}: a public tools/list is fetched once, each agent gets its own view of it, marked private`, async () => {
      await invalidateLists(plane);
      const tester = await connect(plane, "tester");
      const other = await connect(plane, "other");
      try {
        const first = await tester.listTools(undefined, FETCH);
        const again = await tester.listTools(undefined, FETCH);
        const limited = await other.listTools(undefined, FETCH);
        expect(received["tools/list"]).toBe(1);
        expect(first.tools.map((t) => t.name).sort()).toEqual(["public_tool", "secret_tool"]);
        expect(again.tools.map((t) => t.name).sort()).toEqual(["public_tool", "secret_tool"]);
        expect(limited.tools.map((t) => t.name)).toEqual(["public_tool"]);
        // The gateway's view depends on the agent: never marked shareable downstream.
        for (const r of [first, again, limited]) expect(r.cacheScope).toBe("private");
        expect(first.ttlMs).toBe(TTL);
        expect(again.ttlMs).toBeLessThanOrEqual(TTL);
        expect(again.ttlMs).toBeGreaterThan(TTL - 10_000);
        const lists = () => gw.log.audits.filter((a) => a.plane === plane && a.methods[0] === "tools/list");
        await waitFor(() => lists().length >= 3);
        const audits = lists();
        expect(audits.slice(-3).map((a) => a.counters["cache:hit"] ?? 0)).toEqual([0, 1, 1]);
      } finally {
        await tester.close();
        await other.close();
      }
    });

    it(`${plane}: resources/read: public shared by agents, private kept per agent, ttlMs 0 never kept`, async () => {
      const tester = await connect(plane, "tester");
      const other = await connect(plane, "other");
      try {
        const text = async (c: Client, uri: string) => {
          const r = await c.readResource({ uri }, FETCH);
          return { text: (r.contents[0] as { text: string }).text, scope: r.cacheScope };
        };
        // Each plane has its own cache (the edge's, the ext-service's): one read per plane.
        const handbook = await text(tester, "notes://handbook");
        expect(await text(other, "notes://handbook")).toEqual(handbook);
        expect(handbook.scope).toBe("public");
        expect(reads["notes://handbook"]).toBe(1);

        const mine = await text(tester, "notes://mine");
        expect(await text(tester, "notes://mine")).toEqual(mine);
        const theirs = await text(other, "notes://mine");
        expect(theirs.text).not.toBe(mine.text);
        expect(mine.scope).toBe("private");

        await text(tester, "notes://now");
        await text(tester, "notes://now");
        expect(reads["notes://now"]).toBe(2);
      } finally {
        await tester.close();
        await other.close();
      }
    });

    it(`${plane}: a list_changed notification drops the kept lists of that server`, async () => {
      await invalidateLists(plane);
      const tester = await connect(plane, "tester");
      try {
        await tester.listTools(undefined, FETCH);
        await tester.listTools(undefined, FETCH);
        expect(received["tools/list"]).toBe(1);
      } finally {
        await tester.close();
      }
      await invalidateLists(plane);
      const again = await connect(plane, "tester");
      try {
        await again.listTools(undefined, FETCH);
        expect(received["tools/list"]).toBe(1);
      } finally {
        await again.close();
      }
    });
  }

  describeWithRedis("with cache.shared on one Redis, two edges", () => {
    let redis: TestRedis;
    const edges: Gateway[] = [];
    beforeAll(async () => {
      redis = await startRedis();
      const shared = {
        state: { store: "redis", redis: { url: redis.url, keyPrefix: `hints${Date.now()}:` } },
        cache: { shared: true },
      };
      for (let i = 0; i < 2; i++) edges.push(await startGateway({ ...spec, config: shared }));
      for (const e of edges) await waitFor(() => e.edge.ready(), 5_000, "edge sees Redis");
    });
    afterAll(async () => {
      for (const e of edges) await e.close();
      await redis?.close();
    });

    it("keeps a public list once for both replicas, and a change seen by one is seen by both", async () => {
      const [a, b] = edges as [Gateway, Gateway];
      const first = await connect(a, "tester");
      const second = await connect(b, "other");
      try {
        await first.listTools(undefined, FETCH);
        const limited = await second.listTools(undefined, FETCH);
        expect(received["tools/list"]).toBe(1);
        expect(limited.tools.map((t) => t.name)).toEqual(["public_tool"]);
        await invalidateLists(a);
        await second.listTools(undefined, FETCH);
        expect(received["tools/list"]).toBe(1);
      } finally {
        await first.close();
        await second.close();
      }
    });
  });
});
