import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTicketsServer } from "../../examples/servers/index.js";
import type { RunningServer } from "../../examples/servers/http.js";
import { startEnvoyRoleFront, type EnvoyRoleFront } from "../../ext-service/src/envoy/envoy-role-front.js";
import { startGateway, unusedPort, type Gateway } from "../e2e/harness.js";
import { connect2025, registryServer, slowProxy } from "./support.js";

const TTL_MS = 4_000;
const CALL_MS = 6_000;

/**
 * A 2025 session of /mcp whose sealed id expires while a call of its client is in flight: the
 * call is answered (before, the session's transport closed the call's stream without the answer
 * and the client waited for its own timeout), and the id then opens nothing.
 */
describe.each(["edge", "envoy"] as const)(
  "a call in flight when its /mcp session expires, %s plane",
  (plane) => {
    let tickets: RunningServer;
    let proxy: Awaited<ReturnType<typeof slowProxy>>;
    let gw: Gateway;
    let front: EnvoyRoleFront | undefined;
    beforeAll(async () => {
      const port = await unusedPort();
      tickets = await startTicketsServer(port);
      proxy = await slowProxy(port);
      gw = await startGateway({
        servers: [registryServer("tickets", proxy.url)],
        security: { pins: { listTimeout: "10s" } },
        config: { broker: { sessionTtl: `${TTL_MS / 1000}s` } },
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
      it(`${sdk}: is answered, and the expired id opens nothing after it`, { timeout: 40_000 }, async () => {
        const token = await gw.token("tester");
        const client = await connect2025(sdk, `${front?.url ?? gw.edge.url}/mcp`, token);
        try {
          // The first call checks the pin (an undelayed tools/list); the second outlives the id.
          expect((await client.call("tickets__list_tickets")).isError).toBeFalsy();
          proxy.delay = CALL_MS;
          const started = Date.now();
          const result = await client.call("tickets__list_tickets", {}, { timeout: 20_000 });
          proxy.delay = 0;
          expect(Date.now() - started).toBeGreaterThanOrEqual(CALL_MS - 100);
          expect(result.isError).toBeFalsy();
          expect(JSON.stringify(result.content)).toContain("T-1");
          await expect(client.tools()).rejects.toThrow();
        } finally {
          proxy.delay = 0;
          await client.close();
        }
      });
    }
  },
);
