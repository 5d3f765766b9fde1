import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTicketsServer } from "../../examples/servers/index.js";
import type { RunningServer } from "../../examples/servers/http.js";
import { startEnvoyRoleFront, type EnvoyRoleFront } from "../../ext-service/src/envoy/envoy-role-front.js";
import { startGateway, unusedPort, waitFor, type Gateway } from "../e2e/harness.js";
import { HOP_CLIENT_INFO } from "../../ext-service/src/broker/hops.js";
import { connect2025, recordingProxy, registryServer, type Recorded } from "./support.js";

/**
 * A 2025 session of /mcp that leaves the process holding it while its id is still valid
 * (broker.liveSessions: over `max`, the least recently used; `idle` with nothing in progress)
 * takes the hop sessions only that process knew with it: those it opened after initialize (the
 * server was down then) or in place of a sealed one the server lost (404). They are ended on
 * their servers (DELETE); the sealed ones are not (the id may be restored, here or elsewhere). A
 * session in use keeps them. Before, they were left open on the server: an evicted session
 * restored later, or one used past 30 min, opened a fresh hop session beside the old one.
 */
describe.each(["edge", "envoy"] as const)(
  "hop sessions of a /mcp session leaving the process, %s plane",
  (plane) => {
    let port: number;
    let tickets: RunningServer | undefined;
    let proxy: Awaited<ReturnType<typeof recordingProxy>>;
    /** At most one session in memory; no idle limit to speak of. */
    let small: Gateway;
    /** Sessions idle for 1 s leave. */
    let idle: Gateway;
    const fronts: EnvoyRoleFront[] = [];
    const urls = new Map<Gateway, string>();

    async function planeOf(gw: Gateway): Promise<string> {
      if (plane === "edge") return `${gw.edge.url}/mcp`;
      const front = await startEnvoyRoleFront({
        extService: { engine: gw.engine, logger: gw.log.logger, metrics: gw.metrics },
      });
      fronts.push(front);
      return `${front.url}/mcp`;
    }

    beforeAll(async () => {
      port = await unusedPort();
      proxy = await recordingProxy(port);
      const spec = {
        servers: [registryServer("tickets", proxy.url)],
        // A loaded machine: the pin check's own tools/list must not time out.
        security: { pins: { listTimeout: "10s" } },
      };
      small = await startGateway({ ...spec, config: { broker: { liveSessions: { max: 1 } } } });
      idle = await startGateway({ ...spec, config: { broker: { liveSessions: { idle: "1s" } } } });
      urls.set(small, await planeOf(small));
      urls.set(idle, await planeOf(idle));
    });
    afterAll(async () => {
      for (const front of fronts) await front.close();
      await small?.close();
      await idle?.close();
      await tickets?.close();
      await proxy?.close();
    });

    const since = (from: number): Recorded[] => proxy.seen.slice(from);
    const deleted = (from: number, hop: string) =>
      since(from).some((r) => r.method === "DELETE" && r.session === hop && r.status === 200);
    /** Hop sessions the server opened since `from`. */
    const openedSince = (from: number) =>
      since(from)
        .filter(
          (r) => r.rpc === "initialize" && r.opened !== undefined && r.clientName === HOP_CLIENT_INFO.name,
        )
        .map((r) => r.opened!);
    /** Waits for mcp_gateway_broker_hop_session_ends_total{reason, result="ended"} to count one. */
    const counted = (gw: Gateway, reason: string) => {
      const line = `mcp_gateway_broker_hop_session_ends_total{reason="${reason}",result="ended"}`;
      let text = "";
      void gw.metrics.registry.metrics().then((t) => (text = t));
      return waitFor(
        () => {
          void gw.metrics.registry.metrics().then((t) => (text = t));
          return text.split("\n").some((l) => l.startsWith(line) && Number(l.slice(line.length)) > 0);
        },
        5_000,
        `${line} counted`,
      );
    };

    /** A session of `gw` whose tickets hop session was opened after initialize (tickets down then). */
    async function sessionWithLateHop(gw: Gateway, sdk: "1.x" | "2.x") {
      await tickets?.close();
      tickets = undefined;
      const token = await gw.token("tester");
      const from = proxy.seen.length;
      const client = await connect2025(sdk, urls.get(gw)!, token);
      expect(since(from).some((r) => r.rpc === "initialize" && r.status === 502)).toBe(true);
      tickets = await startTicketsServer(port);
      expect((await client.call("tickets__list_tickets")).isError).toBeFalsy();
      const late = openedSince(from);
      expect(late).toHaveLength(1);
      return { client, token, late: late[0]! };
    }

    it("1.x: evicted (over broker.liveSessions.max), its late hop session is ended; its id still opens", async () => {
      const { client, token, late } = await sessionWithLateHop(small, "1.x");
      const sessionId = client.sessionId;
      // Gone without a DELETE: the process still holds the session ...
      await client.close();
      const from = proxy.seen.length;
      // ... until another takes its place.
      const other = await connect2025("1.x", urls.get(small)!, await small.token("tester"));
      try {
        await waitFor(
          () => deleted(from, late),
          8_000,
          "the evicted session's late hop session ended (DELETE)",
        );
        // The other session's own hop session (sealed into its id) is untouched.
        const sealed = openedSince(from);
        expect(sealed).toHaveLength(1);
        expect(since(from).some((r) => r.method === "DELETE" && r.session === sealed[0])).toBe(false);
        expect(
          small.log.lines.some((l) => /hop sessions only it knew are ended/.test(JSON.stringify(l))),
        ).toBe(true);
        await counted(small, "evicted");
      } finally {
        await other.close();
      }
      // The evicted id is restored on its next request, which opens a hop session of its own.
      const again = proxy.seen.length;
      const res = await fetch(urls.get(small)!, {
        method: "POST",
        headers: {
          authorization: `Bearer ${token}`,
          "content-type": "application/json",
          accept: "application/json, text/event-stream",
          "mcp-session-id": sessionId,
          "mcp-protocol-version": client.protocolVersion,
        },
        body: JSON.stringify({
          jsonrpc: "2.0",
          id: 7,
          method: "tools/call",
          params: { name: "tickets__list_tickets", arguments: {} },
        }),
      });
      expect(res.status).toBe(200);
      expect(await res.text()).toContain("T-1");
      const reopened = openedSince(again);
      expect(reopened).toHaveLength(1);
      expect(reopened[0]).not.toBe(late);
      expect(since(again).some((r) => r.status === 404)).toBe(false);
    });

    for (const sdk of ["1.x", "2.x"] as const) {
      it(`${sdk}: idle (broker.liveSessions.idle), its renewed hop session is ended, the sealed one is not`, async () => {
        tickets ??= await startTicketsServer(port);
        const from = proxy.seen.length;
        const client = await connect2025(sdk, urls.get(idle)!, await idle.token("tester"));
        const [sealed] = openedSince(from);
        expect(sealed).toBeDefined();
        // The server restarts: the sealed hop session is gone, the next call renews it.
        await tickets.close();
        tickets = await startTicketsServer(port);
        const restarted = proxy.seen.length;
        expect((await client.call("tickets__list_tickets")).isError).toBeFalsy();
        const renewed = openedSince(restarted);
        expect(renewed).toHaveLength(1);
        await client.close();
        await waitFor(
          () => deleted(from, renewed[0]!),
          8_000,
          "the idle session's renewed hop session ended",
        );
        expect(since(from).some((r) => r.method === "DELETE" && r.session === sealed)).toBe(false);
        await counted(idle, "idle");
      });
    }

    it("2.x: a session in use past broker.liveSessions.idle keeps its late hop session", async () => {
      const { client, late } = await sessionWithLateHop(idle, "2.x");
      try {
        const from = proxy.seen.length;
        // Its GET stream is open and calls come and go, for three times the idle limit.
        for (let i = 0; i < 6; i++) {
          await new Promise((r) => setTimeout(r, 500));
          expect((await client.call("tickets__list_tickets")).isError).toBeFalsy();
        }
        expect(since(from).some((r) => r.method === "DELETE")).toBe(false);
        expect(openedSince(from)).toHaveLength(0);
        expect(
          since(from)
            .filter((r) => r.method === "POST")
            .every((r) => r.session === late),
        ).toBe(true);
      } finally {
        await client.close();
      }
      // Once it is left alone, it goes.
      const left = proxy.seen.length;
      await waitFor(() => deleted(left, late), 8_000, "the late hop session ended once the session idled");
    });
  },
);
