import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEdge, type Edge } from "../../ext-service/src/edge/index.js";
import { startEnvoyRoleFront, type EnvoyRoleFront } from "../../ext-service/src/envoy/envoy-role-front.js";
import { Metrics } from "../../ext-service/src/telemetry/metrics.js";
import { prepareGatewayConfig, type GatewayConfig } from "../conformance/gateway.js";
import { startServer2025, type RunningServer } from "../conformance/server-2025.js";
import { LogCapture } from "../e2e/harness.js";
import { connectModern } from "./support.js";

const ELICIT = "conformance-2025__test_elicitation";

/**
 * A 2026-07-28 client (the v2 SDK client pinned to it) through the aggregated endpoint, calling a
 * tool of a server that speaks only 2025 and asks the client for input on the call's stream. The
 * server checks the client's capabilities before it asks (strict), as a careful server does.
 */
describe.each(["edge", "envoy"] as const)(
  "aggregated endpoint, %s plane: a 2026-07-28 client, a 2025-only server asking for input",
  (plane) => {
    let server: RunningServer;
    let config: GatewayConfig;
    let edge: Edge;
    let front: EnvoyRoleFront | undefined;
    const log = new LogCapture();
    beforeAll(async () => {
      server = await startServer2025(0, { strictCapabilities: true });
      config = await prepareGatewayConfig({ "2025-11-25": server.url });
      edge = await startEdge({
        engine: config.engine,
        logger: log.logger,
        metrics: new Metrics(false),
        host: "127.0.0.1",
        port: 0,
      });
      if (plane === "envoy")
        front = await startEnvoyRoleFront({ extService: { engine: config.engine, logger: log.logger } });
    });
    afterAll(async () => {
      await front?.close();
      await edge?.close(0);
      await server?.close();
      config?.remove();
    });

    const url = () => `${front?.url ?? edge.url}/mcp`;

    it("the server is not told the client can elicit when the broker cannot relay it", async () => {
      const client = await connectModern(url(), config.token, { capabilities: { elicitation: {} } });
      try {
        const result = (await client.callTool({ name: ELICIT, arguments: { message: "Your name?" } })) as {
          isError?: boolean;
          content?: unknown;
        };
        // The server knew before it asked (its own refusal), rather than asking and getting
        // "method not found" from a hop that declared what it could not relay.
        expect(result.isError).toBe(true);
        expect(JSON.stringify(result.content)).toContain("does not support elicitation");
      } finally {
        await client.close();
      }
    });
  },
);
