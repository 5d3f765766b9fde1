import { McpServer } from "@modelcontextprotocol/server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { serveBothEras } from "../../examples/servers/dual-era.js";
import type { RunningServer } from "../../examples/servers/http.js";
import { startEnvoyRoleFront, type EnvoyRoleFront } from "../../ext-service/src/envoy/envoy-role-front.js";
import { startGateway, waitFor, type Gateway } from "../e2e/harness.js";
import { connect2025, connectModern } from "./support.js";

/**
 * Through the aggregated endpoint, with a server on the v2 SDK in both eras: the server asks the
 * client for its roots and for a sampling during a call (2025 sessions, SDK 1.x and 2.x clients),
 * each relayed to the client whose call asked and answered back; and the v2 client cancelling a
 * call, in a 2025 session and pinned to 2026-07-28, reaches the server (the handler's signal is
 * aborted) while the client's session keeps working. Both planes.
 */

/** What the server saw: the calls that started and those whose signal was aborted, by tag. */
interface Seen {
  started: Set<string>;
  aborted: Set<string>;
}

function clientRequestServer(seen: Seen): () => McpServer {
  return () => {
    const server = new McpServer({ name: "asks", version: "1.0.0" });
    server.registerTool(
      "roots",
      { description: "Lists the client's roots.", inputSchema: z.object({}) },
      async (_args, ctx) => {
        const result = (await ctx.mcpReq.send({ method: "roots/list" } as never)) as {
          roots: { uri: string }[];
        };
        return { content: [{ type: "text", text: `roots: ${result.roots.map((r) => r.uri).join(" ")}` }] };
      },
    );
    server.registerTool(
      "sample",
      { description: "Asks the client's model.", inputSchema: z.object({ prompt: z.string() }) },
      async ({ prompt }, ctx) => {
        const result = (await ctx.mcpReq.send({
          method: "sampling/createMessage",
          params: { messages: [{ role: "user", content: { type: "text", text: prompt } }], maxTokens: 50 },
        } as never)) as { content: { type: string; text?: string } };
        return { content: [{ type: "text", text: `model said: ${result.content.text ?? ""}` }] };
      },
    );
    server.registerTool(
      "wait",
      { description: "Waits until cancelled (at most 20 s).", inputSchema: z.object({ tag: z.string() }) },
      async ({ tag }, ctx) => {
        seen.started.add(tag);
        const signal = ctx.mcpReq.signal;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 20_000);
          signal.addEventListener(
            "abort",
            () => {
              seen.aborted.add(tag);
              clearTimeout(timer);
              resolve();
            },
            { once: true },
          );
        });
        return { content: [{ type: "text", text: `waited ${tag}` }] };
      },
    );
    server.registerTool("ping", { description: "Answers.", inputSchema: z.object({}) }, () => ({
      content: [{ type: "text", text: "pong" }],
    }));
    return server;
  };
}

describe.each(["edge", "envoy"] as const)(
  "aggregated endpoint, %s plane: roots, sampling and cancellation",
  (plane) => {
    const seen: Seen = { started: new Set(), aborted: new Set() };
    let upstream: RunningServer;
    let gw: Gateway;
    let front: EnvoyRoleFront | undefined;
    beforeAll(async () => {
      upstream = await serveBothEras(clientRequestServer(seen), 0);
      gw = await startGateway({
        servers: [
          {
            name: "asks",
            upstreams: [upstream.url],
            tools: [{ name: "roots" }, { name: "sample" }, { name: "wait" }, { name: "ping" }],
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
    const url = () => `${front?.url ?? gw.edge.url}/mcp`;
    const text = (r: { content?: unknown }) => (r.content as { text?: string }[] | undefined)?.[0]?.text;

    it.each(["1.x", "2.x"] as const)(
      "SDK %s client: the server's roots/list reaches the client",
      async (sdk) => {
        let asked = 0;
        const client = await connect2025(sdk, url(), await gw.token("tester"), {
          capabilities: { roots: { listChanged: true } },
          onRoots: () => {
            asked++;
            return [{ uri: `file:///work/${sdk}`, name: "project" }];
          },
        });
        try {
          const r = await client.call("asks__roots", {}, { timeout: 15_000 });
          expect(text(r)).toBe(`roots: file:///work/${sdk}`);
          expect(asked).toBe(1);
        } finally {
          await client.close();
        }
      },
    );

    it("SDK 2.x client: the server's sampling/createMessage reaches the client", async () => {
      const prompts: string[] = [];
      const client = await connect2025("2.x", url(), await gw.token("tester"), {
        capabilities: { sampling: {} },
        onSample: (prompt) => {
          prompts.push(prompt);
          return `an answer to ${prompt}`;
        },
      });
      try {
        const r = await client.call("asks__sample", { prompt: "say hi" }, { timeout: 15_000 });
        expect(text(r)).toBe("model said: an answer to say hi");
        expect(prompts).toEqual(["say hi"]);
      } finally {
        await client.close();
      }
    });

    it("SDK 2.x client in a 2025 session: cancelling a call cancels it on the server", async () => {
      const tag = `${plane}-2025`;
      const client = await connect2025("2.x", url(), await gw.token("tester"));
      try {
        const abort = new AbortController();
        const call = client.call("asks__wait", { tag }, { signal: abort.signal, timeout: 30_000 });
        await waitFor(() => seen.started.has(tag), 10_000, "the call to reach the server");
        abort.abort("no longer needed");
        await expect(call).rejects.toThrow();
        await waitFor(() => seen.aborted.has(tag), 10_000, "the server's handler to be cancelled");
        expect(text(await client.call("asks__ping"))).toBe("pong");
      } finally {
        await client.close();
      }
    });

    it("SDK 2.x client pinned to 2026-07-28: cancelling a call cancels it on the server", async () => {
      const tag = `${plane}-2026`;
      const client = await connectModern(url(), await gw.token("tester"));
      try {
        const abort = new AbortController();
        const call = client.callTool(
          { name: "asks__wait", arguments: { tag } },
          { signal: abort.signal, timeout: 30_000 },
        );
        await waitFor(() => seen.started.has(tag), 10_000, "the call to reach the server");
        abort.abort("no longer needed");
        await expect(call).rejects.toThrow();
        await waitFor(() => seen.aborted.has(tag), 10_000, "the server's handler to be cancelled");
        const r = await client.callTool({ name: "asks__ping", arguments: {} });
        expect(text(r)).toBe("pong");
      } finally {
        await client.close();
      }
    });
  },
);
