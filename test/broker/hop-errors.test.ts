import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { McpError } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { serveMcp, type RunningServer } from "../../examples/servers/http.js";
import type { ExchangeTrace } from "../../ext-service/src/envoy/envoy-model.js";
import { startEnvoyRoleFront, type EnvoyRoleFront } from "../../ext-service/src/envoy/envoy-role-front.js";
import {
  connectClient,
  fakeUpstream,
  httpCall,
  MCP_HEADERS,
  rpc,
  startGateway,
  waitFor,
  type Gateway,
} from "../e2e/harness.js";
import { cuttableProxy } from "./support.js";

/**
 * Issue 14 (robustness): a fresh-clone CI run passed every test and still exited 1 on three
 * unhandled rejections, undici's `SocketError: other side closed`. A server whose connection
 * closes in the middle of a streamed answer must cost the agent one clear JSON-RPC error and an
 * audit record, on both planes and on both routes (the server's own and the aggregated endpoint,
 * whose hops run through the server's route): never an unhandled rejection (the gateway has no
 * handler for one: it would end the process) and never a call left hanging.
 */

/** Calls of `steps` that ran to their end. */
let completedCalls = 0;

/** A 2025 server with a call that reports progress in steps, slowly, then answers. */
function slow(): McpServer {
  const mcp = new McpServer({ name: "slow", version: "1.0.0" });
  mcp.registerTool(
    "steps",
    {
      description: "Reports progress in steps, then answers.",
      inputSchema: { count: z.number().int(), gapMs: z.number().int() },
    },
    async ({ count, gapMs }, extra) => {
      const token = extra._meta?.progressToken;
      for (let i = 1; i <= count; i++) {
        if (extra.signal.aborted) break;
        if (token !== undefined)
          await extra.sendNotification({
            method: "notifications/progress",
            params: { progressToken: token, progress: i, total: count },
          });
        await new Promise((resolve) => setTimeout(resolve, gapMs));
      }
      if (!extra.signal.aborted) completedCalls += 1;
      return { content: [{ type: "text", text: `done ${count}` }] };
    },
  );
  return mcp;
}

/** Long enough that a hang shows as this timeout, short enough for the test's own limit. */
const CALL_TIMEOUT_MS = 10_000;

describe.each(["edge", "envoy"] as const)("a server's connection cut mid-answer, %s plane", (plane) => {
  let upstream: RunningServer;
  let proxy: Awaited<ReturnType<typeof cuttableProxy>>;
  let gw: Gateway;
  let front: EnvoyRoleFront | undefined;
  const traces: ExchangeTrace[] = [];
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => void unhandled.push(reason);

  beforeAll(async () => {
    process.on("unhandledRejection", onUnhandled);
    upstream = await serveMcp(slow, 0);
    proxy = await cuttableProxy(Number(new URL(upstream.url).port));
    gw = await startGateway({
      servers: [{ name: "slow", upstreams: [`${proxy.url}/mcp`], tools: [{ name: "steps" }] }],
      security: { pins: { enforce: false, verifyBeforeCall: false } },
    });
    if (plane === "envoy")
      front = await startEnvoyRoleFront({
        extService: { engine: gw.engine, logger: gw.log.logger, metrics: gw.metrics },
        onExchange: (trace) => traces.push(trace),
      });
  });
  afterEach(() => proxy.resume());
  afterAll(async () => {
    await front?.close();
    await gw?.close();
    await proxy?.close();
    await upstream?.close();
    process.off("unhandledRejection", onUnhandled);
  });

  const origin = () => front?.url ?? gw.edge.url;

  // Behind Envoy, the server's own route can only reset the agent's stream (the next test).
  const failing: [string, string][] =
    plane === "edge"
      ? [
          ["/mcp", "slow__steps"],
          ["/mcp/slow", "steps"],
        ]
      : [["/mcp", "slow__steps"]];

  it.each(failing)(
    "%s: the call fails with a JSON-RPC error and an audit record, nothing unhandled",
    async (path, name) => {
      const mcp = await connectClient(`${origin()}${path}`, await gw.token("tester"));
      try {
        let progress = 0;
        const err = await mcp.client
          .callTool({ name, arguments: { count: 100, gapMs: 50 } }, undefined, {
            timeout: CALL_TIMEOUT_MS,
            onprogress: () => {
              // The answer's stream is open and has carried an event: cut the server off now.
              if (++progress === 1) proxy.cut();
            },
          })
          .then(
            (result) => result,
            (e: unknown) => e,
          );
        expect(progress).toBeGreaterThan(0);
        expect(unhandled).toEqual([]);
        expect(err, "the call ended with an error, not a result").toBeInstanceOf(McpError);
        const data = (err as McpError).data as { reason?: string; request_id?: string } | undefined;
        // The gateway's error with its reason, not the client's own timeout (a hang).
        expect(data?.reason, String(err)).toBe("upstream_unavailable");
        const records = await gw.log.auditFor(data!.request_id!);
        expect(records).toHaveLength(1);
        expect(records[0]).toMatchObject({ plane, decision: "error", reasons: ["upstream_unavailable"] });
      } finally {
        proxy.resume();
        await mcp.close();
      }
      await expectServed(path, name);
    },
  );

  it.runIf(plane === "envoy")(
    "/mcp/slow: the stream is reset (UC), as Envoy resets it, nothing unhandled",
    async () => {
      const mcp = await connectClient(`${origin()}/mcp/slow`, await gw.token("tester"));
      try {
        const disconnected = new Promise<unknown>((resolve) => (mcp.client.onerror = resolve));
        let progress = 0;
        const call = mcp.client.callTool({ name: "steps", arguments: { count: 100, gapMs: 50 } }, undefined, {
          onprogress: () => {
            if (++progress === 1) proxy.cut();
          },
        });
        call.catch(() => undefined);
        // Once the server is cut off, Envoy can only reset the stream (router.cc onUpstreamReset):
        // the client sees its stream cut, not an answer that looks complete.
        expect(String(await disconnected)).toContain("SSE stream disconnected");
        await waitFor(() => traces.some((t) => t.flags.includes("UC")), 5_000, "the reset exchange");
        expect(traces.find((t) => t.flags.includes("UC"))).toMatchObject({
          reset: true,
          details: "upstream_reset_after_response_started{connection_termination}",
        });
        expect(unhandled).toEqual([]);
      } finally {
        proxy.resume();
        await mcp.close();
      }
      await expectServed("/mcp/slow", "steps");
    },
  );

  it("/mcp: a client that leaves mid-call, nothing unhandled; the call runs on for it to resume", async () => {
    // The agent's side of the connection is cut this time: a client that goes away mid-answer.
    // A 2025 stream that drops is not a cancellation (the client may resume it): the server's
    // call runs to its end, its answer kept for the client, with nobody reading meanwhile.
    const agentSide = await cuttableProxy(Number(new URL(origin()).port));
    const mcp = await connectClient(`${agentSide.url}/mcp`, await gw.token("tester"));
    mcp.client.onerror = () => undefined; // its stream breaks: expected here
    try {
      const before = completedCalls;
      let progress = 0;
      const call = mcp.client.callTool(
        { name: "slow__steps", arguments: { count: 20, gapMs: 25 } },
        undefined,
        {
          onprogress: () => {
            if (++progress === 1) agentSide.cut();
          },
        },
      );
      call.catch(() => undefined);
      await waitFor(() => completedCalls > before, 10_000, "the server's call to end");
      expect(unhandled).toEqual([]);
    } finally {
      await mcp.close();
      await agentSide.close();
    }
    await expectServed("/mcp", "slow__steps");
  });

  /** The server is reachable again: the next call is served, and nothing went unhandled. */
  async function expectServed(path: string, name: string): Promise<void> {
    const again = await connectClient(`${origin()}${path}`, await gw.token("tester"));
    try {
      const result = await again.client.callTool({ name, arguments: { count: 1, gapMs: 0 } });
      expect(JSON.stringify(result.content)).toContain("done 1");
    } finally {
      await again.close();
    }
    expect(unhandled).toEqual([]);
  }
});

describe.each(["edge", "envoy"] as const)("a server's JSON answer cut mid-body, %s plane", (plane) => {
  let upstream: Awaited<ReturnType<typeof fakeUpstream>>;
  let gw: Gateway;
  let front: EnvoyRoleFront | undefined;
  const traces: ExchangeTrace[] = [];
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => void unhandled.push(reason);

  beforeAll(async () => {
    process.on("unhandledRejection", onUnhandled);
    // Promises 400 bytes of JSON, sends a few, then closes its connection.
    upstream = await fakeUpstream((req, res) => {
      req.resume();
      req.once("end", () => {
        res.writeHead(200, { "content-type": "application/json", "content-length": "400" });
        res.write('{"jsonrpc":"2.0","id":1,"result":{', () => res.socket?.destroy());
      });
    });
    gw = await startGateway({
      servers: [{ name: "cut", upstreams: [upstream.url], tools: [{ name: "x" }] }],
      security: { pins: { enforce: false, verifyBeforeCall: false } },
    });
    if (plane === "envoy")
      front = await startEnvoyRoleFront({
        extService: { engine: gw.engine, logger: gw.log.logger, metrics: gw.metrics },
        onExchange: (trace) => traces.push(trace),
      });
  });
  afterAll(async () => {
    await front?.close();
    await gw?.close();
    await upstream?.close();
    process.off("unhandledRejection", onUnhandled);
  });

  it("503 with the JSON-RPC upstream_unavailable error, nothing unhandled", async () => {
    const r = await httpCall(`${front?.url ?? gw.edge.url}/mcp/cut`, {
      headers: { ...MCP_HEADERS, authorization: `Bearer ${await gw.token("tester")}` },
      body: rpc("initialize", {
        protocolVersion: "2025-11-25",
        capabilities: {},
        clientInfo: { name: "t", version: "1" },
      }),
    });
    expect(r.status).toBe(503);
    const body = JSON.parse(r.text) as { error?: { data?: { reason?: string } } };
    expect(body.error?.data?.reason).toBe("upstream_unavailable");
    // Behind Envoy the answer's headers were still held (BUFFERED): its local reply, flag UC.
    if (plane === "envoy")
      expect(traces.at(-1)).toMatchObject({
        answeredBy: "envoy",
        flags: expect.arrayContaining(["UC"]) as unknown,
        details: "upstream_reset_after_response_started{connection_termination}",
      });
    expect(unhandled).toEqual([]);
  });
});
