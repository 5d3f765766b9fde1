import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTicketsServer } from "../../examples/servers/index.js";
import type { RunningServer } from "../../examples/servers/http.js";
import { startEnvoyRoleFront, type EnvoyRoleFront } from "../../ext-service/src/envoy/envoy-role-front.js";
import { startGateway, unusedPort, waitFor, type Gateway } from "../e2e/harness.js";
import { connect2025, recordingProxy, registryServer } from "./support.js";

/**
 * An aggregated 2025 session that expires (broker.sessionTtl) without a DELETE of its client is
 * over on every replica: its hop sessions are ended on their servers with a DELETE carrying each
 * hop session's id, as the client's DELETE ends them. Before, they were left open until each
 * server expired them itself.
 */
describe.each(["edge", "envoy"] as const)("hop sessions of an expired /mcp session, %s plane", (plane) => {
  let tickets: RunningServer;
  let proxy: Awaited<ReturnType<typeof recordingProxy>>;
  let gw: Gateway;
  let front: EnvoyRoleFront | undefined;
  beforeAll(async () => {
    const port = await unusedPort();
    tickets = await startTicketsServer(port);
    proxy = await recordingProxy(port);
    gw = await startGateway({
      servers: [registryServer("tickets", proxy.url)],
      security: { pins: { listTimeout: "10s" } },
      // Longer than the first call on a fresh gateway under load: with 2s the session could expire
      // while that call was in flight, and the test then timed out (about 4 runs in 7 under load).
      config: { broker: { sessionTtl: "6s" } },
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
    await tickets?.close();
  });

  for (const sdk of ["1.x", "2.x"] as const) {
    it(
      `${sdk}: the hop session is ended on the server when the session expires`,
      { timeout: 30_000 },
      async () => {
        const from = proxy.seen.length;
        const token = await gw.token("tester");
        const client = await connect2025(sdk, `${front?.url ?? gw.edge.url}/mcp`, token);
        try {
          expect((await client.call("tickets__list_tickets")).isError).toBeFalsy();
          const hop = proxy.seen.slice(from).find((r) => r.opened !== undefined)!.opened!;
          await waitFor(
            () =>
              proxy.seen
                .slice(from)
                .some((r) => r.method === "DELETE" && r.session === hop && r.status === 200),
            12_000,
            "the expired session's hop session ended (DELETE)",
          );
        } finally {
          await client.close();
        }
      },
    );
  }
});
