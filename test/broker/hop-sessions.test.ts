import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTicketsServer } from "../../examples/servers/index.js";
import type { RunningServer } from "../../examples/servers/http.js";
import { startGateway, unusedPort, waitFor, type Gateway } from "../e2e/harness.js";
import { connect2025, recordingProxy, registryServer } from "./support.js";

/**
 * The hop sessions of an aggregated 2025 session (`/mcp`), as the server behind the gateway sees
 * them: one opened after initialize (the server was down then) is ended by the client's DELETE;
 * a server that restarted (its sessions gone, 404) gets a new hop session on the next request,
 * which is retried once, for the 1.x and the 2.x SDK client alike.
 */
describe("hop sessions of /mcp (2025)", () => {
  let port: number;
  let tickets: RunningServer | undefined;
  let proxy: Awaited<ReturnType<typeof recordingProxy>>;
  let gw: Gateway;
  beforeAll(async () => {
    port = await unusedPort();
    proxy = await recordingProxy(port);
    gw = await startGateway({
      servers: [registryServer("tickets", proxy.url)],
      // A loaded machine: the pin check's own tools/list must not time out.
      security: { pins: { listTimeout: "10s" } },
      // The servers' streams outlive a closed client stream this long (a resuming client's).
      config: { broker: { replay: { ttl: "1s" } } },
    });
  });
  afterAll(async () => {
    await gw?.close();
    await tickets?.close();
    await proxy?.close();
  });

  it("a DELETE ends the hop session opened after initialize (the server was down then)", async () => {
    const client = await connect2025("1.x", `${gw.edge.url}/mcp`, await gw.token("tester"));
    try {
      // Down at initialize: left out of the session, opened at the first call.
      expect(proxy.seen.some((r) => r.rpc === "initialize" && r.status === 502)).toBe(true);
      tickets = await startTicketsServer(port);
      const r = await client.call("tickets__list_tickets");
      expect(r.isError).toBeFalsy();
      const late = proxy.seen.find((r) => r.opened !== undefined)!.opened!;
      await client.terminate();
      await waitFor(
        () => proxy.seen.some((r) => r.method === "DELETE" && r.session === late && r.status === 200),
        5_000,
        "the late hop session's DELETE",
      );
    } finally {
      await client.close();
    }
  });

  for (const sdk of ["1.x", "2.x"] as const) {
    it(`${sdk}: after the server restarts (its sessions gone), the next call opens a new hop session`, async () => {
      tickets ??= await startTicketsServer(port);
      const client = await connect2025(sdk, `${gw.edge.url}/mcp`, await gw.token("tester"));
      try {
        expect((await client.call("tickets__list_tickets")).isError).toBeFalsy();
        await tickets.close();
        tickets = await startTicketsServer(port);
        const from = proxy.seen.length;
        const r = await client.call("tickets__list_tickets");
        expect(r.isError).toBeFalsy();
        expect(JSON.stringify(r.content)).toContain("T-1");
        // One 404, one new session, one retry: not a loop.
        const after = proxy.seen.slice(from);
        expect(after.filter((x) => x.status === 404)).toHaveLength(1);
        const renewed = after.filter((x) => x.rpc === "initialize" && x.opened !== undefined);
        expect(renewed).toHaveLength(1);
        // The new hop session is kept for the client's session: no more 404s, no new sessions.
        expect(await client.tools()).toContain("tickets__list_tickets");
        expect((await client.call("tickets__list_tickets")).isError).toBeFalsy();
        const later = proxy.seen.slice(from);
        expect(later.filter((x) => x.status === 404)).toHaveLength(1);
        expect(later.filter((x) => x.rpc === "initialize")).toHaveLength(1);
        // ... and ended by the client's DELETE.
        await client.terminate();
        const id = renewed[0]!.opened!;
        await waitFor(
          () => proxy.seen.some((x) => x.method === "DELETE" && x.session === id && x.status === 200),
          5_000,
          "the new hop session's DELETE",
        );
      } finally {
        await client.close();
      }
    });
  }
  for (const sdk of ["1.x", "2.x"] as const) {
    it(`${sdk}: sessions that close without a DELETE leave no server stream open`, async () => {
      tickets ??= await startTicketsServer(port);
      const from = proxy.seen.length;
      for (let i = 0; i < 3; i++) {
        const client = await connect2025(sdk, `${gw.edge.url}/mcp`, await gw.token("tester"));
        expect(await client.tools()).toContain("tickets__list_tickets");
        expect((await client.call("tickets__list_tickets")).isError).toBeFalsy();
        await client.close();
      }
      const streams = () => proxy.seen.slice(from).filter((x) => x.method === "GET" && x.status === 200);
      // Each client opened its GET stream, and the broker the server's behind it ...
      await waitFor(() => streams().length > 0, 5_000, "a server stream");
      // ... which the client's close ends, without waiting for the session to expire.
      await waitFor(() => streams().every((x) => !x.open), 5_000, "the server streams to close");
    });
  }
});
