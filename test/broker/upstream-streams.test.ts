import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { startEnvoyRoleFront, type EnvoyRoleFront } from "../../ext-service/src/envoy/envoy-role-front.js";
import { startKbServer, startTicketsServer } from "../../examples/servers/index.js";
import type { RunningServer } from "../../examples/servers/http.js";
import { startGateway, waitFor, type Gateway } from "../e2e/harness.js";
import { connect2025, connectModern, recordingProxy, registryServer, type LegacyClient } from "./support.js";

/**
 * The servers' streams the broker holds behind the clients' streams of /mcp, counted where they
 * end: at the MCP servers (a recording proxy in front of each sees every GET stream and whether
 * it is still open). A 2025 client's GET stream makes the broker open one on each server, kept a
 * while after the client's closes (broker.streams.linger); an agent holds at most
 * broker.streams.maxPerAgent such sets: over it, its oldest lingering set is closed, and when
 * every set is behind an open client stream the new stream is refused (429
 * upstream_streams_limited). A 2026-07-28 subscriptions/listen counts the same way. Both planes,
 * SDK 1.x and 2.x clients.
 */

type Proxy = Awaited<ReturnType<typeof recordingProxy>>;

/** A raw GET stream on a session: its status, its JSON body when refused, and how to end it. */
async function rawStream(
  url: string,
  token: string,
  s: LegacyClient,
): Promise<{ status: number; body: unknown; close(): void }> {
  const abort = new AbortController();
  const response = await fetch(url, {
    method: "GET",
    headers: {
      authorization: `Bearer ${token}`,
      accept: "text/event-stream",
      "mcp-session-id": s.sessionId,
      "mcp-protocol-version": s.protocolVersion,
    },
    signal: abort.signal,
  });
  const body: unknown = response.ok ? undefined : await response.json();
  return { status: response.status, body, close: () => abort.abort() };
}

describe.each(["edge", "envoy"] as const)("the servers' streams behind /mcp, %s plane", (plane) => {
  let tickets: RunningServer;
  let kb: RunningServer;
  let proxies: Proxy[];
  let gw: Gateway;
  let front: EnvoyRoleFront | undefined;
  const open: { close(): unknown }[] = [];
  beforeAll(async () => {
    [tickets, kb] = await Promise.all([startTicketsServer(0), startKbServer(0)]);
    proxies = await Promise.all([recordingProxy(tickets.port), recordingProxy(kb.port)]);
    gw = await startGateway({
      servers: [registryServer("tickets", proxies[0]!.url), registryServer("kb", proxies[1]!.url)],
      security: { pins: { listTimeout: "10s" } },
      // One agent per test: the limit is per agent, and what one test leaves lingering is not
      // the next one's.
      agents: {
        "agent-1.x": { roles: ["all"] },
        "agent-2.x": { roles: ["all"] },
        "agent-2026": { roles: ["all"] },
      },
      // Lingering far longer than the tests: only the limit closes a lingering set here.
      config: { broker: { streams: { maxPerAgent: 2, linger: "2m" } } },
    });
    if (plane === "envoy")
      front = await startEnvoyRoleFront({
        extService: { engine: gw.engine, logger: gw.log.logger, metrics: gw.metrics },
      });
  });
  afterEach(async () => {
    await Promise.allSettled(open.splice(0).map((o) => o.close()));
  });
  afterAll(async () => {
    await front?.close();
    await gw?.close();
    await Promise.allSettled([...(proxies ?? []).map((p) => p.close()), tickets?.close(), kb?.close()]);
  });
  const url = () => `${front?.url ?? gw.edge.url}/mcp`;
  /**
   * The servers' streams opened since `from` (per proxy, an index into its log): GET streams, and
   * the 2026-07-28 listens of kb (a server of both eras).
   */
  const streams = (from: number[]) =>
    proxies.flatMap((p, i) =>
      p.seen
        .slice(from[i])
        .filter((r) => r.status === 200 && (r.method === "GET" || r.rpc === "subscriptions/listen")),
    );
  const mark = () => proxies.map((p) => p.seen.length);
  const openAtServers = (from: number[]) => streams(from).filter((r) => r.open).length;
  const lingering = async () => {
    const gauge = await gw.metrics.registry.getSingleMetricAsString("mcp_gateway_broker_upstream_streams");
    return Number(/state="lingering"} (\d+)/.exec(gauge)?.[1] ?? "NaN");
  };

  for (const sdk of ["1.x", "2.x"] as const) {
    it(`${sdk}: over the agent's limit the oldest lingering streams close at the servers, then new ones are refused`, async () => {
      const token = await gw.token(`agent-${sdk}`);
      const before = mark();
      const a = await connect2025(sdk, url(), token);
      open.push(a);
      await waitFor(() => streams(before).length === 2, 10_000, "a's streams at both servers");
      const aStreams = streams(before);
      // The client's stream closes (no DELETE): the servers' streams linger for it to resume.
      await a.close();
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(aStreams.every((r) => r.open)).toBe(true);

      const afterA = mark();
      const b = await connect2025(sdk, url(), token);
      open.push(b);
      await waitFor(() => streams(afterA).length === 2, 10_000, "b's streams");
      const afterB = mark();
      const c = await connect2025(sdk, url(), token);
      open.push(c);
      await waitFor(() => streams(afterB).length === 2, 10_000, "c's streams");
      // Two sets is the limit: c's made room by closing a's, the lingering one, at the servers.
      await waitFor(() => aStreams.every((r) => !r.open), 10_000, "a's streams to close");
      expect(openAtServers(before)).toBe(4);

      // b and c are both behind open client streams: a third session's stream is refused, and
      // nothing more opens at the servers; the session itself still works.
      const afterC = mark();
      const d = await connect2025(sdk, url(), token);
      open.push(d);
      const refused = await rawStream(url(), token, d);
      expect(refused.status).toBe(429);
      expect(refused.body).toMatchObject({
        error: { code: -32029, data: { reason: "upstream_streams_limited" } },
      });
      expect(await d.tools()).toContain("tickets__list_tickets");
      expect(streams(afterC)).toHaveLength(0);
      expect(openAtServers(before)).toBe(4);
      const counted = await gw.metrics.registry.getSingleMetricAsString(
        "mcp_gateway_broker_stream_limit_total",
      );
      expect(counted).toMatch(/action="refused"} [1-9]/);
      expect(counted).toMatch(/action="closed_lingering"} [1-9]/);

      // b's client leaves: its lingering set makes room for d's stream.
      const lingeringBefore = await lingering();
      await b.close();
      await vi.waitFor(async () => expect(await lingering()).toBe(lingeringBefore + 2), 10_000);
      const stream = await rawStream(url(), token, d);
      open.push(stream);
      expect(stream.status).toBe(200);
      await waitFor(() => streams(afterC).length === 2, 10_000, "d's streams");
      await waitFor(() => openAtServers(before) === 4, 10_000, "b's streams to close");
    });
  }

  it("2026-07-28: each subscriptions/listen counts, a third over the limit is refused, a closed one closes its servers' streams", async () => {
    const listen = async () => {
      const client = await connectModern(url(), await gw.token("agent-2026"));
      open.push(client);
      return { client, subscription: await client.listen({ toolsListChanged: true }) };
    };
    const before = mark();
    const first = await listen();
    await listen();
    // Per subscription: a session and its GET stream on tickets (2025), a listen on kb.
    await waitFor(() => streams(before).length === 4, 10_000, "both listens' server streams");
    await expect(listen()).rejects.toThrow(/upstream_streams_limited|429/);
    expect(streams(before)).toHaveLength(4);
    await first.subscription.close();
    await waitFor(() => openAtServers(before) === 2, 10_000, "the first listen's server streams to close");
    // Its room is free again.
    await listen();
    await waitFor(() => openAtServers(before) === 4, 10_000, "the new listen's server streams");
  });
});

describe("the servers' streams behind a closed client stream close after broker.streams.linger", () => {
  let tickets: RunningServer;
  let proxy: Proxy;
  let gw: Gateway;
  beforeAll(async () => {
    tickets = await startTicketsServer(0);
    proxy = await recordingProxy(tickets.port);
    gw = await startGateway({
      servers: [registryServer("tickets", proxy.url)],
      security: { pins: { listTimeout: "10s" } },
      // Far shorter than what the replay buffer keeps (5m): the linger alone closes them.
      config: { broker: { streams: { linger: "500ms" } } },
    });
  });
  afterAll(async () => {
    await gw?.close();
    await proxy?.close();
    await tickets?.close();
  });

  for (const sdk of ["1.x", "2.x"] as const) {
    it(`${sdk}: open while the client's stream is, closed at the server soon after it closes`, async () => {
      const from = proxy.seen.length;
      const s = await connect2025(sdk, `${gw.edge.url}/mcp`, await gw.token("tester"));
      const streams = () => proxy.seen.slice(from).filter((r) => r.method === "GET" && r.status === 200);
      await waitFor(() => streams().length === 1, 10_000, "the server stream");
      await new Promise((resolve) => setTimeout(resolve, 800));
      // The client's stream is open: the linger does not apply.
      expect(streams()[0]!.open).toBe(true);
      await s.close();
      await waitFor(() => !streams()[0]!.open, 5_000, "the server stream to close");
    });
  }
});
