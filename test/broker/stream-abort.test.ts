import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTicketsServer } from "../../examples/servers/index.js";
import type { RunningServer } from "../../examples/servers/http.js";
import { sendResponse } from "../../ext-service/src/broker/web.js";
import { startEnvoyRoleFront, type EnvoyRoleFront } from "../../ext-service/src/envoy/envoy-role-front.js";
import { startGateway, unusedPort, waitFor, type Gateway } from "../e2e/harness.js";
import { connect2025, recordingProxy, registryServer } from "./support.js";

/**
 * The client's stream of /mcp dies (it went away, or the response was destroyed): the stream the
 * SDK transport feeds behind it is cancelled at once, so the session's GET stream is free for the
 * client's next GET, and the servers' streams behind it start lingering at once.
 */
describe("a client stream of /mcp that dies", () => {
  let server: Server;
  let serving: ((res: ServerResponse) => void) | undefined;
  beforeAll(async () => {
    server = createServer((_req: IncomingMessage, res: ServerResponse) => serving?.(res));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it("an event that comes after the response was destroyed, before it closed, still cancels the body", async () => {
    let cancelled = false;
    let source!: ReadableStreamDefaultController<Uint8Array>;
    const body = new ReadableStream<Uint8Array>({
      start: (controller) => void (source = controller),
      cancel: () => void (cancelled = true),
    });
    const served = new Promise<ServerResponse>((resolve) => (serving = resolve));
    const opened = new Promise<IncomingMessage>((resolve, reject) => {
      const req = request(`http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`, resolve);
      req.on("error", reject);
      req.end();
    });
    const res = await served;
    const sending = sendResponse(
      res,
      new Response(body, { headers: { "content-type": "text/event-stream" } }),
    );
    const answer = await opened;
    answer.on("error", () => undefined);
    answer.resume();
    // Destroyed (destroyed is true now, its close event comes later), and an event in between.
    res.destroy();
    source.enqueue(new TextEncoder().encode("data: {}\n\n"));
    await sending;
    await waitFor(() => cancelled, 2_000, "the body cancelled");
  });
});

describe.each(["edge", "envoy"] as const)(
  "a client that aborts its GET stream of /mcp, %s plane",
  (plane) => {
    let tickets: RunningServer;
    let proxy: Awaited<ReturnType<typeof recordingProxy>>;
    let gw: Gateway;
    let front: EnvoyRoleFront | undefined;
    beforeAll(async () => {
      const port = await unusedPort();
      tickets = await startTicketsServer(port);
      proxy = await recordingProxy(port);
      gw = await startGateway({
        servers: [registryServer("tickets", proxy.url)],
        security: { pins: { listTimeout: "10s" } },
        // Far longer than the test: what lingers is seen lingering, not gone.
        config: { broker: { streams: { linger: "60s" } } },
      });
      if (plane === "envoy")
        front = await startEnvoyRoleFront({
          extService: { engine: gw.engine, logger: gw.log.logger, metrics: gw.metrics },
        });
    });
    afterAll(async () => {
      await front?.close();
      await gw?.close();
      await proxy?.close();
      await tickets?.close();
    });

    const streams = async (state: "attached" | "lingering") => {
      const text = await gw.metrics.registry.metrics();
      const line = text
        .split("\n")
        .find((l) => l.startsWith(`mcp_gateway_broker_upstream_streams{state="${state}"}`));
      return Number(line?.split(" ").pop());
    };

    it("the servers' streams linger at once, and the next GET is the session's stream", async () => {
      const url = `${front?.url ?? gw.edge.url}/mcp`;
      const token = await gw.token("tester");
      const client = await connect2025("1.x", url, token);
      // The SDK client's own GET stream goes with it; the session stays.
      await client.close();
      let lingering = 0;
      const linger = () => {
        lingering = 0;
        return waitFor(
          () => {
            void streams("lingering").then((n) => (lingering = n));
            return lingering === 1;
          },
          2_000,
          "the server's stream lingering",
        );
      };
      await linger();
      const headers = {
        authorization: `Bearer ${token}`,
        accept: "text/event-stream",
        "mcp-session-id": client.sessionId,
        "mcp-protocol-version": client.protocolVersion,
      };
      for (let i = 0; i < 3; i++) {
        const abort = new AbortController();
        const res = await fetch(url, { headers, signal: abort.signal });
        expect(res.status).toBe(200);
        void res
          .body!.getReader()
          .read()
          .catch(() => undefined);
        let attached = 0;
        await waitFor(
          () => {
            void streams("attached").then((n) => (attached = n));
            return attached === 1;
          },
          5_000,
          "the server's stream attached to the client's",
        );
        abort.abort();
        const since = Date.now();
        await linger();
        expect(Date.now() - since).toBeLessThan(2_000);
      }
      // One server stream all along: each GET took the lingering one back.
      expect(proxy.seen.filter((r) => r.method === "GET" && r.open)).toHaveLength(1);
    });
  },
);
