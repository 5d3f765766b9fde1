import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import {
  connectClient,
  startGateway,
  startSdkUpstream,
  type Gateway,
  type SdkUpstream,
} from "../e2e/harness.js";

/**
 * A 2025 server that opens no session (stateless, as the SDK's `sessionIdGenerator: undefined`
 * and the bench's reference server are) behind the aggregated endpoint: it is not asked to
 * initialize again on every hop, and its calls and lists work like a stateful server's.
 */
describe("aggregated endpoint: a stateless 2025 server", () => {
  let upstream: SdkUpstream;
  let gw: Gateway;
  const methods: string[] = [];
  beforeAll(async () => {
    upstream = await startSdkUpstream(
      () => {
        const mcp = new McpServer({ name: "echo", version: "1.0.0" });
        mcp.registerTool("echo", { description: "Echoes.", inputSchema: { text: z.string() } }, (a) => ({
          content: [{ type: "text", text: `echo: ${a.text}` }],
        }));
        return mcp;
      },
      {
        onRequest: (_req, body) => {
          const method = (body as { method?: unknown } | undefined)?.method;
          if (typeof method === "string") methods.push(method);
        },
      },
    );
    gw = await startGateway({
      servers: [{ name: "echo", upstreams: [upstream.url], tools: [{ name: "echo" }] }],
      security: { pins: { enforce: false, verifyBeforeCall: false } },
    });
  });
  afterAll(async () => {
    await gw?.close();
    await upstream?.close();
  });

  it("initializes once per client session; calls and lists hop without a session", async () => {
    const mcp = await connectClient(`${gw.edge.url}/mcp`, await gw.token("tester"));
    try {
      const listed = await mcp.client.listTools();
      expect(listed.tools.map((t) => t.name)).toEqual(["echo__echo"]);
      // Caching hints are 2026-07-28's: a 2025 session's lists carry none.
      expect(listed).not.toHaveProperty("ttlMs");
      for (const text of ["one", "two"]) {
        const r = await mcp.client.callTool({ name: "echo__echo", arguments: { text } });
        expect(r.content).toEqual([{ type: "text", text: `echo: ${text}` }]);
      }
    } finally {
      await mcp.close();
    }
    expect(methods.filter((m) => m === "initialize")).toHaveLength(1);
    expect(methods.filter((m) => m === "tools/call")).toHaveLength(2);
  });
});
