import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { toNodeHandler } from "@modelcontextprotocol/node";
import { McpServer, createMcpHandler, type McpHttpHandler } from "@modelcontextprotocol/server";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { startEnvoyRoleFront, type EnvoyRoleFront } from "../../ext-service/src/envoy/envoy-role-front.js";
import { connectClient, startGateway, type Gateway } from "./harness.js";

/**
 * In-band approval for 2026-07-28 clients (issue 17): where the rule lets the caller's own user
 * decide, a v2 SDK client gets `input_required` with an elicitation describing the call and a
 * gateway-sealed requestState; its retry with the user's answer is checked and forwarded (without
 * the gateway's round), once. A 2025 client gets the out-of-band flow instead.
 */

interface Received {
  args: Record<string, unknown>;
  requestState: unknown;
  inputResponses: unknown;
}

function releaseServer(received: Received[]): McpServer {
  const mcp = new McpServer({ name: "release", version: "1.0.0" });
  mcp.registerTool(
    "deploy_service",
    {
      description: "Deploy a service to an environment.",
      inputSchema: z.object({ service: z.string(), environment: z.string() }),
    },
    async (args, ctx) => {
      received.push({
        args,
        requestState: ctx.mcpReq.requestState(),
        inputResponses: ctx.mcpReq.inputResponses,
      });
      return { content: [{ type: "text", text: `deployed ${args.service} to ${args.environment}` }] };
    },
  );
  return mcp;
}

describe("in-band approval (MCP 2026-07-28), both planes", () => {
  const received: Received[] = [];
  let handler: McpHttpHandler;
  let upstream: Server;
  let gw: Gateway;
  let front: EnvoyRoleFront;
  beforeAll(async () => {
    handler = createMcpHandler(() => releaseServer(received), { legacy: "stateless", keepAliveMs: 0 });
    const node = toNodeHandler(handler);
    upstream = createServer((req, res) => void node(req, res));
    await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/mcp`;
    gw = await startGateway({
      servers: [{ name: "release", upstreams: [url], tools: [{ name: "deploy_service", risk: "critical" }] }],
      // Registered by name only: this file is about approvals, pins have their own tests.
      security: { pins: { verifyBeforeCall: false } },
      roles: { deployer: { rules: [{ effect: "allow", tools: ["release/*"] }] }, approver: { rules: [] } },
      agents: { "release-bot": { roles: ["deployer"] }, alice: { roles: ["approver"] } },
      config: {
        approvals: {
          approvers: [{ roles: ["approver"] }],
          rules: [{ name: "own-user", risk: ["critical"], inBand: true }],
        },
      },
    });
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

  const urlOf = (plane: "edge" | "envoy", aggregated = false) =>
    aggregated
      ? `${plane === "edge" ? gw.edge.url : front.url}/mcp`
      : plane === "edge"
        ? gw.url("release")
        : `${front.url}/mcp/release`;

  /** A v2 client pinned to 2026-07-28 that records the requests it sends. */
  async function connect(plane: "edge" | "envoy", approve: boolean, aggregated = false) {
    const elicited: string[] = [];
    const sent: { headers: Record<string, string>; body: string }[] = [];
    const client = new Client(
      { name: "approvals-in-band", version: "1.0.0" },
      { versionNegotiation: { mode: { pin: "2026-07-28" } }, capabilities: { elicitation: { form: {} } } },
    );
    client.setRequestHandler("elicitation/create", async (req) => {
      elicited.push(String(req.params.message));
      return { action: "accept" as const, content: { approve } };
    });
    const recording: typeof fetch = async (input, init) => {
      if (init?.method === "POST" && typeof init.body === "string") {
        sent.push({ headers: Object.fromEntries(new Headers(init.headers).entries()), body: init.body });
      }
      return fetch(input, init);
    };
    await client.connect(
      new StreamableHTTPClientTransport(new URL(urlOf(plane, aggregated)), {
        requestInit: { headers: { authorization: `Bearer ${await gw.token("release-bot")}` } },
        fetch: recording,
      }),
    );
    return { client, elicited, sent };
  }

  for (const plane of ["edge", "envoy"] as const) {
    it(`${plane}: the user approves in the client; the retry is forwarded once, without the gateway's round`, async () => {
      const before = received.length;
      const c = await connect(plane, true);
      try {
        const args = { service: `billing-${plane}`, environment: "production" };
        const result = await c.client.callTool({ name: "deploy_service", arguments: args });
        expect(JSON.stringify(result.content)).toContain(`deployed billing-${plane} to production`);
        expect(c.elicited).toHaveLength(1);
        expect(c.elicited[0]).toContain("release/deploy_service");
        expect(c.elicited[0]).toContain(`billing-${plane}`);
        expect(received.length).toBe(before + 1);
        expect(received.at(-1)).toMatchObject({ args, requestState: undefined });
        expect(JSON.stringify(received.at(-1)!.inputResponses ?? {})).not.toContain("mcp_gateway_approval");

        // The retry the client sent, replayed as is: its approval was used.
        const retry = c.sent.find((s) => s.body.includes('"requestState":"mcpgw-approval.'));
        expect(retry).toBeDefined();
        const replay = async (body: string) => {
          const res = await request(urlOf(plane), { method: "POST", headers: retry!.headers, body });
          const text = await res.body.text();
          return JSON.parse(text.startsWith("{") ? text : text.replace(/^[\s\S]*?data: /, "")) as {
            error?: { data?: { reason?: string } };
          };
        };
        expect((await replay(retry!.body)).error?.data?.reason).toBe("approval_invalid");
        // The same approval for changed arguments does not open.
        const changed = retry!.body.replace(`billing-${plane}`, `payments-${plane}`);
        expect((await replay(changed)).error?.data?.reason).toBe("approval_invalid");
        expect(received.length).toBe(before + 1);
      } finally {
        await c.client.close();
      }
    });

    it(`${plane}, through the aggregated endpoint /mcp: the same round, the gateway's sealed state carried back to the hop`, async () => {
      const before = received.length;
      const c = await connect(plane, true, true);
      try {
        const args = { service: `ledger-${plane}`, environment: "production" };
        const result = await c.client.callTool({ name: "release__deploy_service", arguments: args });
        expect(JSON.stringify(result.content)).toContain(`deployed ledger-${plane} to production`);
        // The elicitation came from the hop's per-server path, which names the unprefixed tool.
        expect(c.elicited).toHaveLength(1);
        expect(c.elicited[0]).toContain("release/deploy_service");
        expect(received.length).toBe(before + 1);
        expect(received.at(-1)).toMatchObject({ args, requestState: undefined });
        const retry = c.sent.find((s) => s.body.includes('"requestState":"mcpgw-approval.'));
        expect(retry).toBeDefined();
        // Replayed through /mcp, the used approval is refused by the hop's per-server path.
        const res = await request(urlOf(plane, true), {
          method: "POST",
          headers: retry!.headers,
          body: retry!.body,
        });
        const text = await res.body.text();
        expect(text).toContain("approval_invalid");
        expect(received.length).toBe(before + 1);
      } finally {
        await c.client.close();
      }
    });

    it(`${plane}: the user declines; nothing is forwarded`, async () => {
      const before = received.length;
      const c = await connect(plane, false);
      try {
        const err = await c.client
          .callTool({ name: "deploy_service", arguments: { service: "search", environment: "production" } })
          .then(
            () => undefined,
            (e: unknown) => e as { data?: { reason?: string } },
          );
        expect(err?.data?.reason).toBe("approval_denied");
        expect(received.length).toBe(before);
      } finally {
        await c.client.close();
      }
    });
  }

  it("a 2025 client is not asked in band: it gets approval_required for an approver", async () => {
    const c = await connectClient(gw.url("release"), await gw.token("release-bot"));
    try {
      const err = await c.client
        .callTool({ name: "deploy_service", arguments: { service: "search", environment: "production" } })
        .then(
          () => undefined,
          (e: unknown) => e as { data?: { reason?: string; approval_id?: string } },
        );
      expect(err?.data?.reason).toBe("approval_required");
      expect(err?.data?.approval_id).toMatch(/^[0-9a-f-]{36}$/);
    } finally {
      await c.close();
    }
  });
});
