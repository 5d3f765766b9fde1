import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { SubscribeRequestSchema, UnsubscribeRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { toNodeHandler } from "@modelcontextprotocol/node";
import {
  McpServer as McpServerV2,
  createMcpHandler,
  type McpHttpHandler,
} from "@modelcontextprotocol/server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEnvoyRoleFront, type EnvoyRoleFront } from "../../ext-service/src/envoy/envoy-role-front.js";
import { serveMcp, type RunningServer } from "../../examples/servers/http.js";
import { startGateway, waitFor, type Gateway } from "../e2e/harness.js";
import { connect2025, connectModern } from "./support.js";

/**
 * A server's notifications/resources/updated through the aggregated endpoint (/mcp): to a
 * 2026-07-28 client's subscriptions/listen for the resources it listed in resourceSubscriptions
 * (from a 2026-07-28 server's listen and from a 2025 server's session), and to a 2025 client's GET
 * stream after resources/subscribe; always under the URI the client knows (`<server>.<uri>`), and
 * only to the subscriber that asked for that resource.
 */

const A = "notes://a";
const B = "notes://b";

/** 2025 sessions' servers by the URIs they subscribed to: an update goes to each. */
const subscribers = new Map<string, Set<McpServer>>();

function legacyNotes(): McpServer {
  const server = new McpServer({ name: "notes25", version: "1.0.0" });
  for (const uri of [A, B])
    server.registerResource(uri, uri, { mimeType: "text/plain" }, (u) => ({
      contents: [{ uri: u.href, text: "a note" }],
    }));
  server.server.registerCapabilities({ resources: { subscribe: true } });
  server.server.setRequestHandler(SubscribeRequestSchema, (request) => {
    let set = subscribers.get(request.params.uri);
    if (!set) subscribers.set(request.params.uri, (set = new Set()));
    set.add(server);
    return {};
  });
  server.server.setRequestHandler(UnsubscribeRequestSchema, (request) => {
    subscribers.get(request.params.uri)?.delete(server);
    return {};
  });
  return server;
}

async function updateLegacy(uri: string): Promise<void> {
  await Promise.allSettled(
    [...(subscribers.get(uri) ?? [])].map((server) => server.server.sendResourceUpdated({ uri })),
  );
}

describe.each(["edge", "envoy"] as const)("resources/updated through /mcp, %s plane", (plane) => {
  let handler: McpHttpHandler;
  let http: Server;
  let legacy: RunningServer;
  let gw: Gateway;
  let front: EnvoyRoleFront | undefined;
  beforeAll(async () => {
    handler = createMcpHandler(
      () => {
        const server = new McpServerV2(
          { name: "notes26", version: "1.0.0" },
          { capabilities: { resources: { subscribe: true } } },
        );
        for (const uri of [A, B])
          server.registerResource(uri, uri, { mimeType: "text/plain" }, async (u) => ({
            contents: [{ uri: u.href, text: "a note" }],
          }));
        return server;
      },
      { legacy: "reject" },
    );
    const serve = toNodeHandler(handler);
    http = createServer((req, res) => void serve(req, res).catch(() => res.destroy()));
    await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
    legacy = await serveMcp(legacyNotes, 0);
    gw = await startGateway({
      servers: [
        { name: "notes26", upstreams: [`http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp`] },
        { name: "notes25", upstreams: [legacy.url] },
      ],
      security: { pins: { enforce: false, verifyBeforeCall: false } },
    });
    if (plane === "envoy")
      front = await startEnvoyRoleFront({
        extService: { engine: gw.engine, logger: gw.log.logger, metrics: gw.metrics },
      });
  });
  afterAll(async () => {
    await front?.close();
    await gw?.close();
    http?.closeAllConnections();
    await new Promise((resolve) => http?.close(resolve));
    await legacy?.close();
  });
  const url = () => `${front?.url ?? gw.edge.url}/mcp`;

  async function listener(agent: string, resourceSubscriptions: string[]) {
    const updated: string[] = [];
    const client = await connectModern(url(), await gw.token(agent), {
      setup: (c) =>
        c.setNotificationHandler("notifications/resources/updated", (n) => {
          updated.push(n.params.uri);
        }),
    });
    const subscription = await client.listen({ resourceSubscriptions });
    expect(subscription.honoredFilter).toEqual({ resourceSubscriptions });
    return { updated, close: () => subscription.close().then(() => client.close()) };
  }

  it("2026-07-28: subscriptions/listen gets the updates of the resources it listed, under its URIs, and no one else's", async () => {
    const tester = await listener("tester", [`notes26.${A}`, `notes25.${A}`]);
    const other = await listener("other", [`notes26.${B}`]);
    try {
      handler.notify.resourceUpdated(A);
      await updateLegacy(A);
      await waitFor(() => tester.updated.length === 2, 10_000, "both servers' updates of a");
      expect(tester.updated.sort()).toEqual([`notes25.${A}`, `notes26.${A}`]);
      handler.notify.resourceUpdated(B);
      await updateLegacy(B);
      await waitFor(() => other.updated.length === 1, 10_000, "notes26's update of b");
      expect(other.updated).toEqual([`notes26.${B}`]);
      // Nothing of b reaches the subscriber of a, nothing of a the subscriber of b.
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(tester.updated).toHaveLength(2);
      expect(other.updated).toHaveLength(1);
    } finally {
      await Promise.allSettled([tester.close(), other.close()]);
    }
  });

  for (const sdk of ["1.x", "2.x"] as const) {
    it(`${sdk} (2025): resources/subscribe, then the server's update arrives on the GET stream under the aggregate's URI`, async () => {
      const updated: string[] = [];
      const client = await connect2025(sdk, url(), await gw.token("tester"), {
        onResourceUpdated: (uri) => updated.push(uri),
      });
      try {
        const before = subscribers.get(A)?.size ?? 0;
        await client.subscribe(`notes25.${A}`);
        expect(subscribers.get(A)?.size).toBe(before + 1);
        // The GET stream behind the client's opens after initialize: update until one arrives.
        for (let i = 0; i < 10 && updated.length === 0; i++) {
          await updateLegacy(A);
          await waitFor(() => updated.length > 0, 500).catch(() => undefined);
        }
        expect(updated[0]).toBe(`notes25.${A}`);
      } finally {
        await client.close();
      }
    });
  }
});
