import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { LoggingMessageNotificationSchema } from "@modelcontextprotocol/sdk/types.js";
import { decodeJwt } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor, type Gateway } from "../e2e/harness.js";
import { startCredentialMcpServers, type CredentialMcpServers } from "../upstream/credential-mcp-servers.js";
import type { TokenEndpoint } from "../upstream/token-endpoint.js";
import {
  startTokenExchangeFixture,
  tokenExchangeServers,
  type TokenExchangeFixture,
} from "../upstream/token-exchange-fixture.js";
import { cuttableProxy } from "./support.js";

/**
 * An agent whose token expires in the middle of a 2025 session through `/mcp`, on both planes:
 * the servers' GET streams behind the session (the broker's hops to token-exchange servers, each
 * carrying the agent's token sealed for the exchange) must reopen with the agent's current token,
 * the one of its latest request, never the expired one the stream opened with. A real 1.x SDK
 * client renews its token (its fetch presents whatever token is current), real MCP servers (v2
 * SDK) behind cuttable TCP proxies check the credential the exchange issued, and the test token
 * endpoint records the subject token of every exchange.
 */

const SECRET_ENV = "MCPGW_TEST_BROKER_TOKEN_RENEWAL_SECRET";
const SERVERS = ["jira", "wiki"] as const;

const portOf = (url: string) => Number(new URL(url).port);
const expiryOf = (token: string) => (decodeJwt(token).exp ?? 0) * 1000;

describe.each(["edge", "envoy"] as const)(
  "agent token renewed mid-session through /mcp, %s plane",
  (plane) => {
    let fx: TokenExchangeFixture<CredentialMcpServers>;
    let gw: Gateway;
    let endpoint: TokenEndpoint;
    let servers: CredentialMcpServers;
    const upstream: Partial<Record<(typeof SERVERS)[number], Awaited<ReturnType<typeof cuttableProxy>>>> = {};

    beforeAll(async () => {
      fx = await startTokenExchangeFixture({
        secretEnv: SECRET_ENV,
        agents: ["renewer", "lapsed"],
        startServers: startCredentialMcpServers,
        registry: async (endpoint, servers) => {
          // Each server behind a proxy the test can cut: the servers' streams then end, and the
          // broker's hops reopen them.
          for (const name of SERVERS) upstream[name] = await cuttableProxy(portOf(servers.urls[name]));
          return tokenExchangeServers(
            endpoint,
            { jira: `${upstream.jira!.url}/mcp`, wiki: `${upstream.wiki!.url}/mcp` },
            SECRET_ENV,
          );
        },
        envoyFront: plane === "envoy",
      });
      ({ gw, endpoint, servers } = fx);
      // Issued credentials are not kept: every hop's exchange shows the subject token it carried.
      endpoint.expiresIn = 1;
    });
    afterAll(async () => {
      await fx?.close();
      await Promise.all(Object.values(upstream).map((p) => p.close()));
    });

    const base = () => fx.front?.url ?? gw.edge.url;

    /**
     * A 1.x client of `/mcp` (through a proxy the test can cut) whose every request, its GET stream
     * too, presents `holder.token` as it is at the time; the log messages relayed from the servers,
     * as `<logger>:<data>`; and the token and status of each GET it made.
     */
    async function renewingClient(holder: { token: string }) {
      const agentSide = await cuttableProxy(portOf(base()));
      const logs: string[] = [];
      const gets: { token: string; status: number }[] = [];
      const client = new Client({ name: "renewing", version: "1.0.0" }, { capabilities: {} });
      client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
        logs.push(`${n.params.logger}:${String(n.params.data)}`);
      });
      const transport = new StreamableHTTPClientTransport(new URL(`${agentSide.url}/mcp`), {
        fetch: async (url, init) => {
          const token = holder.token;
          const headers = new Headers(init?.headers);
          headers.set("authorization", `Bearer ${token}`);
          const res = await fetch(url, { ...init, headers });
          if (init?.method === "GET") gets.push({ token, status: res.status });
          return res;
        },
      });
      await client.connect(transport);
      return {
        client,
        logs,
        gets,
        agentSide,
        close: async () => {
          await client.close();
          await agentSide.close();
        },
      };
    }

    /** The servers' GET streams opened for `agent` since `mark`, with a credential issued for it. */
    const streamsOpened = (mark: number, agent: string) =>
      SERVERS.every((s) =>
        servers.seen.slice(mark).some((r) => r.server === s && r.httpMethod === "GET" && r.holder === agent),
      );

    /** Each server sends `text`; resolves once the client heard it from both. */
    async function notificationsArrive(logs: string[], text: string) {
      for (const s of SERVERS) await servers.notify(s, text);
      await waitFor(
        () => SERVERS.every((s) => logs.includes(`${s}__ping:${text}`)),
        5_000,
        `"${text}" from both servers`,
      );
    }

    /** Refusals of hop identities since `mark` (an expired agent token presented on a hop). */
    const hopRefusals = (mark: number) =>
      gw.log.audits.slice(mark).filter((a) => a.reasons.includes("hop_token_invalid"));

    it("the agent reconnects its GET stream with a fresh token: the servers' streams reopen with it, notifications still arrive", async () => {
      const agent = "renewer";
      const first = await gw.token(agent, { ttl: "3s" });
      const holder = { token: first };
      const seenMark = servers.seen.length;
      const auditMark = gw.log.audits.length;
      const mcp = await renewingClient(holder);
      try {
        await waitFor(() => streamsOpened(seenMark, agent), 5_000, "the servers' GET streams");
        await notificationsArrive(mcp.logs, "before");
        // The first token expires; the agent's client renews it.
        await waitFor(() => Date.now() > expiryOf(first), 10_000, "the first token's expiry");
        const fresh = await gw.token(agent);
        holder.token = fresh;
        // The agent's connection drops; its client reopens its GET stream with the fresh token.
        const getsBefore = mcp.gets.length;
        mcp.agentSide.cut();
        mcp.agentSide.resume();
        await waitFor(
          () => mcp.gets.slice(getsBefore).some((g) => g.token === fresh && g.status === 200),
          10_000,
          "the client's GET stream reopened with the fresh token",
        );
        // Then the servers' streams end: the broker's hops reopen them.
        const subjectsMark = endpoint.subjects.length;
        const reopenMark = servers.seen.length;
        for (const s of SERVERS) {
          upstream[s]!.cut();
          upstream[s]!.resume();
        }
        await waitFor(() => streamsOpened(reopenMark, agent), 10_000, "the servers' GET streams reopened");
        // Each reopened stream's exchange carried the fresh token, never the expired one.
        const subjects = endpoint.subjects.slice(subjectsMark);
        expect(subjects).toContain(fresh);
        expect(subjects).not.toContain(first);
        await notificationsArrive(mcp.logs, "after");
        expect(hopRefusals(auditMark)).toEqual([]);
      } finally {
        await mcp.close();
      }
    });

    it("a server's stream that ends while the agent's token has expired is not reopened with it: it reopens with the agent's next request", async () => {
      const agent = "lapsed";
      const first = await gw.token(agent, { ttl: "3s" });
      const holder = { token: first };
      const seenMark = servers.seen.length;
      const auditMark = gw.log.audits.length;
      const mcp = await renewingClient(holder);
      try {
        await waitFor(() => streamsOpened(seenMark, agent), 5_000, "the servers' GET streams");
        await notificationsArrive(mcp.logs, "before");
        await waitFor(() => Date.now() > expiryOf(first), 10_000, "the first token's expiry");
        // The servers' streams end while the session's only token has expired: held back, failing
        // closed (nothing presented, nothing exchanged).
        const subjectsMark = endpoint.subjects.length;
        const reopenMark = servers.seen.length;
        const logMark = gw.log.lines.length;
        for (const s of SERVERS) {
          upstream[s]!.cut();
          upstream[s]!.resume();
        }
        await waitFor(
          () =>
            gw.log.lines.slice(logMark).filter((l) => String(l.msg).includes("the agent's token has expired"))
              .length >= SERVERS.length,
          10_000,
          "both reopenings held back",
        );
        // (The earlier test's session may still hold lingering streams: only this agent's count.)
        expect(
          servers.seen.slice(reopenMark).filter((r) => r.httpMethod === "GET" && r.holder === agent),
        ).toEqual([]);
        expect(endpoint.subjects.slice(subjectsMark).filter((t) => decodeJwt(t).sub === agent)).toEqual([]);
        // The agent's next request, with a fresh token, reopens them.
        const fresh = await gw.token(agent);
        holder.token = fresh;
        expect((await mcp.client.listTools()).tools.map((t) => t.name).sort()).toEqual([
          "jira__echo",
          "wiki__echo",
        ]);
        await waitFor(() => streamsOpened(reopenMark, agent), 10_000, "the servers' GET streams reopened");
        expect(endpoint.subjects.slice(subjectsMark)).not.toContain(first);
        await notificationsArrive(mcp.logs, "after");
        expect(hopRefusals(auditMark)).toEqual([]);
      } finally {
        await mcp.close();
      }
    });
  },
);
