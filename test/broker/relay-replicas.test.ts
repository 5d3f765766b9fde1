import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ElicitRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import {
  Client as ClientV2,
  StreamableHTTPClientTransport as TransportV2,
} from "@modelcontextprotocol/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEdge, type Edge } from "../../ext-service/src/edge/index.js";
import { Metrics } from "../../ext-service/src/telemetry/metrics.js";
import { prepareGatewayConfig, type GatewayConfig } from "../conformance/gateway.js";
import { startServer2025, type RunningServer } from "../conformance/server-2025.js";
import { LogCapture } from "../e2e/harness.js";

/**
 * A server-to-client request relayed through /mcp waits for the client's answer on the replica
 * that sent it. Two edge replicas (same sessions.keys) serve one session; the client's transport
 * sends its POSTed answers to the other replica, as a balancer without Mcp-Session-Id affinity
 * would: that replica refuses the answer with 409 answer_not_pending instead of accepting it
 * (202) and dropping it. The same answer on the right replica completes the call.
 */
const ELICIT = { name: "conformance-2025__test_elicitation", arguments: { message: "Your name?" } };
const ANSWER = { action: "accept", content: { response: "from the client" } } as const;

/** The client's fetch: answers (POSTs of JSON-RPC responses only) go to `answers`, all else as asked. */
function splitFetch(primary: () => string, answers: () => string, seen: { status: number; body: string }[]) {
  return async (url: string | URL, init?: RequestInit): Promise<Response> => {
    let target = new URL(String(url));
    const body = typeof init?.body === "string" ? init.body : undefined;
    if (init?.method === "POST" && body !== undefined) {
      const parsed = JSON.parse(body) as Record<string, unknown>;
      if (!("method" in parsed) && "id" in parsed) target = new URL(target.pathname, answers());
      const response = await fetch(target, init);
      if (!("method" in parsed)) seen.push({ status: response.status, body: await response.clone().text() });
      return response;
    }
    target = new URL(target.pathname, primary());
    return fetch(target, init);
  };
}

const clients = {
  "SDK 1.x": async (url: string, token: string, fetchFn: ReturnType<typeof splitFetch>) => {
    const client = new Client({ name: "v1", version: "1.0.0" }, { capabilities: { elicitation: {} } });
    client.setRequestHandler(ElicitRequestSchema, () => ANSWER);
    const transport = new StreamableHTTPClientTransport(new URL(url), {
      requestInit: { headers: { authorization: `Bearer ${token}` } },
      fetch: fetchFn,
    });
    await client.connect(transport);
    return {
      call: (timeout: number) => client.callTool(ELICIT, undefined, { timeout }),
      close: () => client.close(),
    };
  },
  "SDK 2.x (2025 era)": async (url: string, token: string, fetchFn: ReturnType<typeof splitFetch>) => {
    const client = new ClientV2({ name: "v2", version: "1.0.0" }, { capabilities: { elicitation: {} } });
    client.setRequestHandler("elicitation/create", () => ANSWER);
    const transport = new TransportV2(new URL(url), {
      requestInit: { headers: { authorization: `Bearer ${token}` } },
      fetch: fetchFn,
    });
    await client.connect(transport);
    return {
      call: (timeout: number) => client.callTool(ELICIT, { timeout }),
      close: () => client.close(),
    };
  },
};

describe("an answer to a relayed request on another replica (2025, two edges)", () => {
  let server: RunningServer;
  let config: GatewayConfig;
  let a: Edge;
  let b: Edge;
  const log = new LogCapture();
  beforeAll(async () => {
    server = await startServer2025();
    config = await prepareGatewayConfig({ "2025-11-25": server.url });
    const edge = () =>
      startEdge({
        engine: config.engine,
        logger: log.logger,
        metrics: new Metrics(false),
        host: "127.0.0.1",
        port: 0,
      });
    [a, b] = await Promise.all([edge(), edge()]);
  });
  afterAll(async () => {
    await Promise.allSettled([a?.close(0), b?.close(0)]);
    await server?.close();
    config?.remove();
  });

  describe.each(Object.entries(clients))("%s", (_, connect) => {
    it("is refused with 409 answer_not_pending, not accepted and dropped", async () => {
      const seen: { status: number; body: string }[] = [];
      const mcp = await connect(
        `${a.url}/mcp`,
        config.token,
        splitFetch(
          () => a.url,
          () => b.url,
          seen,
        ),
      );
      try {
        // The client hears its answer refused; its call ends at its own timeout, not the hop's.
        await expect(mcp.call(3_000)).rejects.toThrow();
        expect(seen).toHaveLength(1);
        expect(seen[0]!.status).toBe(409);
        expect(JSON.parse(seen[0]!.body)).toMatchObject({
          jsonrpc: "2.0",
          id: null,
          error: { data: { reason: "answer_not_pending" } },
        });
      } finally {
        await mcp.close();
      }
    });

    it("on the replica that relayed it, completes the call", async () => {
      const seen: { status: number; body: string }[] = [];
      const mcp = await connect(
        `${a.url}/mcp`,
        config.token,
        splitFetch(
          () => a.url,
          () => a.url,
          seen,
        ),
      );
      try {
        const result = await mcp.call(30_000);
        expect(JSON.stringify(result.content)).toContain("from the client");
        expect(seen.map((s) => s.status)).toEqual([202]);
      } finally {
        await mcp.close();
      }
    });
  });
});
