import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
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
 * an agent speaking JSON-RPC itself, and so does a content part of a kind the v2 SDK's 2026-07-28
 * wire schema does not know (the hop's SDK client refused the whole result before:
 * upstream_invalid_response while /mcp/<server> relayed it). Both planes.
 */

const RESULT = {
  content: [{ type: "text", text: "hello", annotations: { audience: ["user"] }, "x-vendor-part": 7 }],
  structuredContent: { answer: 42, deep: { list: [1, { two: 2 }] } },
  _meta: { "example.com/trace": "t-1" },
  vendorField: { kept: true, list: ["a", "b"] },
};

/** A content part of a kind no SDK schema knows (a newer revision's, or a vendor's). */
const FUTURE = {
  content: [
    { type: "text", text: "a chart follows" },
    { type: "x-vendor/chart", series: [{ x: 1, y: 2 }] },
  ],
  _meta: { "example.com/trace": "t-2" },
};

/**
 * In front of the v2 server: its answers to tools/call of the tool `future` carry FUTURE as their
 * result, as a server on another SDK (or none) may send it; the v2 SDK's own server would not
 * send such a part.
 */
async function futureProxy(target: string): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      const headers = new Headers();
      for (const [name, value] of Object.entries(req.headers))
        if (typeof value === "string" && name !== "host" && name !== "content-length")
          headers.set(name, value);
      void fetch(`${target}${req.url ?? ""}`, {
        method: req.method ?? "GET",
        headers,
        ...(req.method === "POST" ? { body } : {}),
      }).then(async (answer) => {
        let text = await answer.text();
        const asked = body ? (JSON.parse(body) as { method?: string; params?: { name?: string } }) : {};
        if (asked.method === "tools/call" && asked.params?.name === "future")
          text = JSON.stringify({
            ...(JSON.parse(text) as object),
            result: { ...FUTURE, resultType: "complete" },
          });
        const out: Record<string, string> = {};
        answer.headers.forEach((value, name) => {
          if (!["content-length", "content-encoding", "transfer-encoding"].includes(name)) out[name] = value;
        });
        res.writeHead(answer.status, out).end(text);
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

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
  server.registerTool(
    "future",
    { description: "Answers; rewritten in front.", inputSchema: z.object({}) },
    () => ({
      content: [{ type: "text", text: "rewritten in front of the server" }],
    }),
  );
  return server;
}

describe.each(["edge", "envoy"] as const)(
  "tools/call results through a 2026-07-28 hop, %s plane",
  (plane) => {
    let upstream: RunningServer;
    let proxy: Awaited<ReturnType<typeof futureProxy>>;
    let gw: Gateway;
    let front: EnvoyRoleFront | undefined;
    beforeAll(async () => {
      upstream = await serveBothEras(richServer, 0);
      proxy = await futureProxy(new URL(upstream.url).origin);
      gw = await startGateway({
        servers: [
          {
            name: "rich",
            upstreams: [`${proxy.url}${new URL(upstream.url).pathname}`],
            tools: [{ name: "rich" }, { name: "future" }],
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
      await proxy?.close();
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
      // A content part no SDK schema knows: the server's route relays it, and so does /mcp (the
      // hop's SDK client schema would refuse the whole result: upstream_invalid_response).
      const future = await call("/mcp/rich", "future");
      expect(future).toEqual({ ...FUTURE, resultType: "complete" });
      expect(await call("/mcp", "rich__future")).toEqual(future);
    });
  },
);
