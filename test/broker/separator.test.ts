import { McpServer } from "@modelcontextprotocol/server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { serveBothEras } from "../../examples/servers/dual-era.js";
import type { RunningServer } from "../../examples/servers/http.js";
import { startEnvoyRoleFront, type EnvoyRoleFront } from "../../ext-service/src/envoy/envoy-role-front.js";
import { connectClient, startGateway, type Gateway } from "../e2e/harness.js";
import { connectModern } from "./support.js";

/**
 * A non-default `broker.separator` end to end through /mcp: tools and prompts are listed as
 * `<server><separator><name>`, and a call, a prompt and a completion under those names reach the
 * right server with its own name, including a name that itself holds the separator's characters
 * (`v1.greet`). Two servers, the separators "." and "___", SDK 1.x (2025) and v2 (2026-07-28)
 * clients, both planes.
 */

function namedServer(server: string): () => McpServer {
  return () => {
    const mcp = new McpServer({ name: server, version: "1.0.0" });
    for (const tool of ["greet", "v1.greet"])
      mcp.registerTool(
        tool,
        { description: `Greets, from ${server}.`, inputSchema: z.object({ name: z.string() }) },
        ({ name }) => ({ content: [{ type: "text", text: `${server}/${tool}: hello ${name}` }] }),
      );
    mcp.registerPrompt(
      "brief",
      { description: `A brief, from ${server}.`, argsSchema: z.object({ topic: z.string() }) },
      ({ topic }) => ({
        messages: [{ role: "user", content: { type: "text", text: `${server}/brief on ${topic}` } }],
      }),
    );
    return mcp;
  };
}

const SEPARATORS = [".", "___"] as const;

describe.each(
  SEPARATORS.flatMap((sep) => (["edge", "envoy"] as const).map((plane) => [sep, plane] as const)),
)("aggregated endpoint with the separator %j, %s plane", (sep, plane) => {
  let north: RunningServer;
  let south: RunningServer;
  let gw: Gateway;
  let front: EnvoyRoleFront | undefined;
  beforeAll(async () => {
    [north, south] = await Promise.all([
      serveBothEras(namedServer("north"), 0),
      serveBothEras(namedServer("south"), 0),
    ]);
    const tools = [{ name: "greet" }, { name: "v1.greet" }];
    gw = await startGateway({
      servers: [
        { name: "north", upstreams: [north.url], tools },
        { name: "south", upstreams: [south.url], tools },
      ],
      security: { pins: { enforce: false, verifyBeforeCall: false } },
      config: { broker: { separator: sep } },
    });
    if (plane === "envoy")
      front = await startEnvoyRoleFront({
        extService: { engine: gw.engine, logger: gw.log.logger, metrics: gw.metrics },
      });
  });
  afterAll(async () => {
    await front?.close();
    await gw?.close();
    await Promise.allSettled([north?.close(), south?.close()]);
  });
  const url = () => `${front?.url ?? gw.edge.url}/mcp`;
  const names = (server: string) => [`${server}${sep}greet`, `${server}${sep}v1.greet`];
  const text = (content: unknown) => (content as { text?: string }[])[0]?.text;

  /** What both clients are asked to do, through their own SDK's calls. */
  interface Asks {
    tools(): Promise<string[]>;
    prompts(): Promise<string[]>;
    call(name: string): Promise<unknown>;
    prompt(name: string): Promise<string | undefined>;
  }

  async function exercise(asks: Asks): Promise<void> {
    expect((await asks.tools()).sort()).toEqual([...names("north"), ...names("south")].sort());
    expect((await asks.prompts()).sort()).toEqual([`north${sep}brief`, `south${sep}brief`]);
    for (const server of ["north", "south"]) {
      expect(text(await asks.call(`${server}${sep}greet`))).toBe(`${server}/greet: hello ada`);
      expect(text(await asks.call(`${server}${sep}v1.greet`))).toBe(`${server}/v1.greet: hello ada`);
      expect(await asks.prompt(`${server}${sep}brief`)).toBe(`${server}/brief on names`);
    }
    // The default separator names nothing here.
    await expect(asks.call("north__greet")).rejects.toMatchObject({
      data: { reason: expect.stringMatching(/_unknown$|_not_registered$/) },
    });
  }

  it("SDK 1.x client, 2025 session", async () => {
    const mcp = await connectClient(url(), await gw.token("tester"));
    try {
      await exercise({
        tools: async () => (await mcp.client.listTools()).tools.map((t) => t.name),
        prompts: async () => (await mcp.client.listPrompts()).prompts.map((p) => p.name),
        call: async (name) => (await mcp.client.callTool({ name, arguments: { name: "ada" } })).content,
        prompt: async (name) => {
          const r = await mcp.client.getPrompt({ name, arguments: { topic: "names" } });
          return (r.messages[0]?.content as { text?: string }).text;
        },
      });
    } finally {
      await mcp.close();
    }
  });

  it("SDK 2.x client, 2026-07-28", async () => {
    const client = await connectModern(url(), await gw.token("tester"));
    try {
      await exercise({
        tools: async () => (await client.listTools()).tools.map((t) => t.name),
        prompts: async () => (await client.listPrompts()).prompts.map((p) => p.name),
        call: async (name) => (await client.callTool({ name, arguments: { name: "ada" } })).content,
        prompt: async (name) => {
          const r = await client.getPrompt({ name, arguments: { topic: "names" } });
          return (r.messages[0]?.content as { text?: string }).text;
        },
      });
    } finally {
      await client.close();
    }
  });
});
