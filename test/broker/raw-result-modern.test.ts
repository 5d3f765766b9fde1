import { McpServer } from "@modelcontextprotocol/server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { serveBothEras } from "../../examples/servers/dual-era.js";
import type { RunningServer } from "../../examples/servers/http.js";
import { startEnvoyRoleFront, type EnvoyRoleFront } from "../../ext-service/src/envoy/envoy-role-front.js";
import { startGateway, type Gateway } from "../e2e/harness.js";
import { connectModern } from "./support.js";

/**
 * b1055ea's raw relay of tools/call results, when the hop itself speaks 2026-07-28 (a v2-SDK
 * server serving that era): the result reaches a client of /mcp as a client of /mcp/<server> gets
 * it, structuredContent, _meta and the result's extra fields included, for the v2 client and for
 * an agent speaking JSON-RPC itself. Both planes. (A content part of a kind the v2 SDK's 2026-07-28
 * wire schema does not know is refused by the hop's codec: docs/design/broker.md, item 4.)
 */

const RESULT = {
  content: [{ type: "text", text: "hello", annotations: { audience: ["user"] }, "x-vendor-part": 7 }],
  structuredContent: { answer: 42, deep: { list: [1, { two: 2 }] } },
  _meta: { "example.com/trace": "t-1" },
  vendorField: { kept: true, list: ["a", "b"] },
};

function richServer(): McpServer {
  const server = new McpServer({ name: "rich", version: "1.0.0" });
  server.registerTool(
    "rich",
    {
      description: "Answers with a rich result.",
      inputSchema: z.object({}),
      outputSchema: z.object({ answer: z.number(), deep: z.object({ list: z.array(z.unknown()) }) }),
    },
    () => structuredClone(RESULT) as never,
  );
  return server;
}

describe.each(["edge", "envoy"] as const)(
  "tools/call results through a 2026-07-28 hop, %s plane",
  (plane) => {
    let upstream: RunningServer;
    let gw: Gateway;
    let front: EnvoyRoleFront | undefined;
    beforeAll(async () => {
      upstream = await serveBothEras(richServer, 0);
      gw = await startGateway({
        servers: [
          {
            name: "rich",
            upstreams: [upstream.url],
            tools: [{ name: "rich" }],
          },
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
      await upstream?.close();
    });
    const origin = () => front?.url ?? gw.edge.url;

    it("v2 client pinned to 2026-07-28: what a client of /mcp/rich gets, extra fields and all", async () => {
      const client = await connectModern(`${origin()}/mcp`, await gw.token("tester"));
      const direct = await connectModern(`${origin()}/mcp/rich`, await gw.token("tester"));
      try {
        expect(direct.getProtocolEra()).toBe("modern");
        const viaHop = (await client.callTool({ name: "rich__rich", arguments: {} })) as Record<
          string,
          unknown
        >;
        const own = (await direct.callTool({ name: "rich", arguments: {} })) as Record<string, unknown>;
        // Each answer's own serverInfo (the aggregate's, the server's) aside.
        const withoutInfo = (r: Record<string, unknown>) => {
          const meta = { ...(r._meta as Record<string, unknown>) };
          delete meta["io.modelcontextprotocol/serverInfo"];
          return { ...r, _meta: meta };
        };
        expect(withoutInfo(viaHop)).toEqual(withoutInfo(own));
        expect(viaHop.structuredContent).toEqual(RESULT.structuredContent);
        expect((viaHop._meta as Record<string, unknown>)["example.com/trace"]).toBe("t-1");
      } finally {
        await Promise.allSettled([client.close(), direct.close()]);
      }
    });

    it("an agent speaking JSON-RPC itself (2026-07-28) gets the result as the server's route gives it", async () => {
      const token = await gw.token("tester");
      const envelope = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": { name: "raw", version: "1.0.0" },
        "io.modelcontextprotocol/clientCapabilities": {},
      };
      const call = async (path: string, name: string) => {
        const res = await fetch(`${origin()}${path}`, {
          method: "POST",
          headers: {
            authorization: `Bearer ${token}`,
            "content-type": "application/json",
            accept: "application/json, text/event-stream",
            "mcp-protocol-version": "2026-07-28",
            "mcp-method": "tools/call",
            "mcp-name": name,
          },
          body: JSON.stringify({
            jsonrpc: "2.0",
            id: 3,
            method: "tools/call",
            params: { name, arguments: {}, _meta: envelope },
          }),
        });
        const text = await res.text();
        const json = text.startsWith("{")
          ? text
          : text
              .split("\n")
              .filter((l) => l.startsWith("data: "))
              .map((l) => l.slice(6))
              .find((l) => l.includes('"id":3'))!;
        const result = (JSON.parse(json) as { result: Record<string, unknown> }).result;
        const meta = { ...(result._meta as Record<string, unknown>) };
        delete meta["io.modelcontextprotocol/serverInfo"];
        return { ...result, _meta: meta };
      };
      const direct = await call("/mcp/rich", "rich");
      expect(direct).toMatchObject({
        vendorField: RESULT.vendorField,
        structuredContent: RESULT.structuredContent,
      });
      expect(await call("/mcp", "rich__rich")).toEqual(direct);
    });
  },
);
