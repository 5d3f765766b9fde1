import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEdge, type Edge } from "../../ext-service/src/edge/index.js";
import { startEnvoyRoleFront, type EnvoyRoleFront } from "../../ext-service/src/envoy/envoy-role-front.js";
import { Metrics } from "../../ext-service/src/telemetry/metrics.js";
import { prepareGatewayConfig, type GatewayConfig } from "../conformance/gateway.js";
import { startServer2026 } from "../conformance/server-2026.js";
import type { RunningServer } from "../conformance/servers.js";
import { LogCapture, waitFor } from "../e2e/harness.js";

const TOOL = "conformance-2026__test_input_required_result_request_state";

/**
 * 2026-07-28 `input_required` through the aggregated endpoint, with the v2 SDK client: the
 * server's result (an elicitation and its HMAC-sealed requestState) reaches the client unchanged,
 * and the client's retry carries the answer and the state back to that server, on both planes.
 */
describe.each(["edge", "envoy"] as const)(
  "aggregated endpoint, %s plane: input_required (2026-07-28)",
  (plane) => {
    let server: RunningServer;
    let config: GatewayConfig;
    let edge: Edge;
    let front: EnvoyRoleFront | undefined;
    const log = new LogCapture();
    beforeAll(async () => {
      server = await startServer2026({ port: 0 });
      config = await prepareGatewayConfig({ "2026-07-28": server.url });
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

    /** A v2 client pinned to 2026-07-28 that answers elicitations and records what it receives. */
    async function connect(autoFulfill: boolean) {
      const elicited: string[] = [];
      const answers: string[] = [];
      const client = new Client(
        { name: "broker-input-required", version: "1.0.0" },
        {
          versionNegotiation: { mode: { pin: "2026-07-28" } },
          capabilities: { elicitation: { form: {} } },
          inputRequired: { autoFulfill },
        },
      );
      client.setRequestHandler("elicitation/create", async (req) => {
        elicited.push(String(req.params.message));
        return { action: "accept" as const, content: { confirmed: true } };
      });
      const recording: typeof fetch = async (input, init) => {
        const res = await fetch(input, init);
        if (init?.method === "POST") answers.push(await res.clone().text());
        return res;
      };
      await client.connect(
        new StreamableHTTPClientTransport(new URL(url()), {
          requestInit: { headers: { authorization: `Bearer ${config.token}` } },
          fetch: recording,
        }),
      );
      return { client, elicited, answers };
    }

    it("the server's input_required reaches the client; its retry with the answer and state reaches the server", async () => {
      const c = await connect(true);
      try {
        const result = await c.client.callTool({ name: TOOL, arguments: {} });
        expect(JSON.stringify(result.content)).toContain("state-ok: requestState verified");
        expect(c.elicited).toHaveLength(1);
        // The first answer is the server's own input_required, its state as the server sealed it.
        expect(c.answers.some((a) => a.includes('"resultType":"input_required"'))).toBe(true);
        // Both rounds were decided on the per-server path, for this agent, as the unprefixed tool.
        await waitFor(
          () =>
            log.audits.filter(
              (a) =>
                a.plane === plane &&
                a.server === "conformance-2026" &&
                a.tools.includes("test_input_required_result_request_state") &&
                a.counters.via_broker === 1,
            ).length >= 2,
        );
      } finally {
        await c.client.close();
      }
    });

    it("the state passes untouched: a tampered one is refused by the server that issued it", async () => {
      const c = await connect(false);
      try {
        const first = (await c.client.request(
          { method: "tools/call", params: { name: TOOL, arguments: {} } },
          { allowInputRequired: true },
        )) as { resultType?: string; requestState?: string; inputRequests?: Record<string, unknown> };
        expect(first.resultType).toBe("input_required");
        expect(Object.keys(first.inputRequests ?? {})).toEqual(["confirm"]);
        expect(typeof first.requestState).toBe("string");
        const answer = { confirm: { action: "accept", content: { confirmed: true } } };
        const tampered = `${first.requestState!.slice(0, -2)}${first.requestState!.endsWith("AA") ? "BB" : "AA"}`;
        await expect(
          c.client.request({
            method: "tools/call",
            params: { name: TOOL, arguments: {}, inputResponses: answer, requestState: tampered },
          }),
        ).rejects.toThrow();
        const done = (await c.client.request({
          method: "tools/call",
          params: { name: TOOL, arguments: {}, inputResponses: answer, requestState: first.requestState },
        })) as { content?: unknown };
        expect(JSON.stringify(done.content)).toContain("state-ok");
      } finally {
        await c.client.close();
      }
    });
  },
);
