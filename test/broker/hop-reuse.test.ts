import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { startEnvoyRoleFront, type EnvoyRoleFront } from "../../ext-service/src/envoy/envoy-role-front.js";
import { connectClient, startGateway, waitFor, type Gateway } from "../e2e/harness.js";
import { connectModern } from "./support.js";

/**
 * The broker keeps its hop clients between requests (broker/hop-pool.ts) instead of building one
 * per request: what a 2025 server with sessions sees of that. A 2025 session's calls ride one
 * kept hop and one hop identity; a 2026-07-28 client's calls share one hop session per agent
 * (and client capabilities) instead of initializing and ending one per call; another agent never
 * gets that hop; the client's DELETE closes the kept hops of its session. On both planes: behind
 * the Envoy-role front the broker is the ext-service's, and each kept hop's requests come back
 * through the front's per-server route (ext_authz + ext_proc) as a new hop's would.
 */

interface Seen {
  http: string;
  method: string | undefined;
  session: string | undefined;
  agent: string | undefined;
}

/** A 2025 server with sessions (SDK 1.x) that records every request it gets. */
async function startSessionServer(seen: Seen[]): Promise<{ url: string; close(): Promise<void> }> {
  const transports = new Map<string, StreamableHTTPServerTransport>();
  const record = (req: IncomingMessage, body: unknown) => {
    const session = req.headers["mcp-session-id"];
    const agent = req.headers["x-mcp-agent"];
    seen.push({
      http: req.method ?? "",
      method: (body as { method?: string } | undefined)?.method,
      session: typeof session === "string" ? session : undefined,
      agent: typeof agent === "string" ? agent : undefined,
    });
  };
  const http: Server = createServer((req, res) => {
    let raw = "";
    req.on("data", (c: Buffer) => (raw += c.toString()));
    req.on("end", () => {
      const body: unknown = raw ? JSON.parse(raw) : undefined;
      record(req, body);
      const id = req.headers["mcp-session-id"];
      let transport = typeof id === "string" ? transports.get(id) : undefined;
      if (!transport) {
        if (typeof id === "string" || (body as { method?: string } | undefined)?.method !== "initialize") {
          res.writeHead(404).end();
          return;
        }
        const created = new StreamableHTTPServerTransport({
          sessionIdGenerator: () => randomUUID(),
          onsessioninitialized: (sid) => void transports.set(sid, created),
          onsessionclosed: (sid) => void transports.delete(sid),
        });
        const mcp = new McpServer({ name: "counter", version: "1.0.0" });
        mcp.registerTool("echo", { description: "Echoes.", inputSchema: { text: z.string() } }, (a) => ({
          content: [{ type: "text", text: `echo: ${a.text}` }],
        }));
        void mcp.connect(created);
        transport = created;
      }
      void transport.handleRequest(req, res, body);
    });
  });
  await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp`,
    close: () =>
      new Promise<void>((done) => {
        http.close(() => done());
        http.closeAllConnections();
      }),
  };
}

describe.each(["edge", "envoy"] as const)(
  "aggregated endpoint, %s plane: hop clients kept between requests",
  (plane) => {
    const seen: Seen[] = [];
    let upstream: Awaited<ReturnType<typeof startSessionServer>>;
    let gw: Gateway;
    let front: EnvoyRoleFront | undefined;
    let minted = 0;
    beforeAll(async () => {
      upstream = await startSessionServer(seen);
      gw = await startGateway({
        servers: [{ name: "echo", upstreams: [upstream.url], tools: [{ name: "echo" }] }],
        security: { pins: { enforce: false, verifyBeforeCall: false } },
      });
      if (plane === "envoy")
        front = await startEnvoyRoleFront({
          extService: { engine: gw.engine, logger: gw.log.logger, metrics: gw.metrics },
        });
      // Counts the hop identities the broker mints (the real ones: the call goes through).
      const tokens = gw.engine.hopTokens;
      const mint = tokens.mint.bind(tokens);
      tokens.mint = (principal, server, agentToken) => {
        minted++;
        return mint(principal, server, agentToken);
      };
    });
    afterAll(async () => {
      await front?.close();
      await gw?.close();
      await upstream?.close();
    });
    beforeEach(() => {
      seen.length = 0;
    });
    const url = () => `${front?.url ?? gw.edge.url}/mcp`;
    /** The broker of the plane: the edge's own, or the ext-service's behind the front. */
    const broker = () => front?.extService?.broker ?? gw.edge.broker;

    const calls = (agent?: string) =>
      seen.filter((s) => s.method === "tools/call" && (agent === undefined || s.agent === agent));

    it("2025 session: every call rides the kept hop, with one hop identity, on the session of initialize", async () => {
      const mcp = await connectClient(url(), await gw.token("tester"));
      try {
        await mcp.client.callTool({ name: "echo__echo", arguments: { text: "first" } });
        // The session the broker's initialize opened on the server.
        const hopSession = calls()[0]!.session;
        const mintedBefore = minted;
        for (const text of ["two", "three", "four"]) {
          const r = await mcp.client.callTool({ name: "echo__echo", arguments: { text } });
          expect(r.content).toEqual([{ type: "text", text: `echo: ${text}` }]);
        }
        expect(minted - mintedBefore).toBe(0);
        expect(seen.filter((s) => s.method === "initialize")).toHaveLength(1);
        expect(hopSession).toBeDefined();
        expect(calls().map((s) => s.session)).toEqual(Array(4).fill(hopSession));
        expect(broker().keptHops).toBe(1);
        // Each call on the kept hop was decided on the plane's own per-server path, as this agent.
        await waitFor(
          () =>
            gw.log.audits.filter(
              (a) =>
                a.plane === plane &&
                a.server === "echo" &&
                a.tools.includes("echo") &&
                a.agent === "tester" &&
                a.counters.via_broker === 1,
            ).length === 4,
        );
      } finally {
        await mcp.close();
      }
    });

    it("the client's DELETE ends the hop session and closes the kept hop", async () => {
      const mcp = await connectClient(url(), await gw.token("tester"));
      const kept = broker().keptHops;
      await mcp.client.callTool({ name: "echo__echo", arguments: { text: "x" } });
      expect(broker().keptHops).toBe(kept + 1);
      const hopSession = calls()[0]!.session;
      await mcp.transport.terminateSession();
      await mcp.close();
      expect(broker().keptHops).toBe(kept);
      await waitFor(() => seen.some((s) => s.http === "DELETE" && s.session === hopSession));
    });

    it("2026-07-28 clients: one hop session per agent and capabilities, never shared with another agent", async () => {
      const v2 = async (agent: string, capabilities: Record<string, unknown> = {}) => {
        return connectModern(url(), await gw.token(agent), { name: agent, capabilities });
      };
      const tester = await v2("tester");
      const other = await v2("other");
      const eliciting = await v2("tester", { elicitation: {} });
      try {
        for (const text of ["a", "b", "c"])
          await tester.callTool({ name: "echo__echo", arguments: { text } });
        for (const text of ["d", "e"]) await other.callTool({ name: "echo__echo", arguments: { text } });
        await eliciting.callTool({ name: "echo__echo", arguments: { text: "f" } });
        // The server speaks only 2025: each hop initialized a session of its own, once.
        const inits = seen.filter((s) => s.method === "initialize");
        expect(inits.map((s) => s.agent).sort()).toEqual(["other", "tester", "tester"]);
        const sessionsOf = (agent: string) => new Set(calls(agent).map((s) => s.session));
        expect(calls("tester")).toHaveLength(4);
        expect(sessionsOf("tester").size).toBe(2);
        expect(sessionsOf("other").size).toBe(1);
        for (const session of sessionsOf("other")) expect(sessionsOf("tester").has(session)).toBe(false);
        // No session ended between calls: the kept hops end theirs when they are closed.
        expect(seen.filter((s) => s.http === "DELETE")).toHaveLength(0);
      } finally {
        await Promise.all([tester.close(), other.close(), eliciting.close()]);
      }
    });
  },
);
