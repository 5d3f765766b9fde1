import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  LoggingMessageNotificationSchema,
} from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEdge, type Edge } from "../../ext-service/src/edge/index.js";
import { startEnvoyRoleFront, type EnvoyRoleFront } from "../../ext-service/src/envoy/envoy-role-front.js";
import { Metrics } from "../../ext-service/src/telemetry/metrics.js";
import { prepareGatewayConfig, type GatewayConfig } from "../conformance/gateway.js";
import { startServer2025, type RunningServer } from "../conformance/server-2025.js";
import { connectClient, LogCapture, waitFor } from "../e2e/harness.js";

/**
 * What happens during a call through the aggregated endpoint, against the conformance suite's 2025
 * server behind the edge: progress with the client's own token, logging, and the server's
 * elicitation and sampling requests relayed to the client and answered back.
 */
describe.each(["edge", "envoy"] as const)(
  "aggregated endpoint, %s plane: progress, logging, server-to-client requests (2025)",
  (plane) => {
    let server: RunningServer;
    let config: GatewayConfig;
    let edge: Edge;
    let front: EnvoyRoleFront | undefined;
    const log = new LogCapture();
    beforeAll(async () => {
      // Progress steps a second apart: the cancellation test cancels at the first step and must
      // reach the server before the call ends, however loaded the machine.
      server = await startServer2025(0, { progressStepMs: 1000 });
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

    it("relays progress with the client's token, and log messages named by server", async () => {
      const logs: unknown[] = [];
      const mcp = await connectClient(url(), config.token, {}, (client) => {
        client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
          logs.push(n.params);
        });
      });
      try {
        const progress: { progress: number; total?: number }[] = [];
        const r = await mcp.client.callTool(
          { name: "conformance-2025__test_tool_with_progress", arguments: {} },
          undefined,
          { onprogress: (p) => progress.push({ progress: p.progress, total: p.total }) },
        );
        expect(progress.map((p) => p.progress)).toEqual([0, 50, 100]);
        // The server saw the hop's own token, not ours: only the text tells it had one.
        expect(JSON.stringify(r.content)).toContain("progress reported for");
        await mcp.client.callTool({ name: "conformance-2025__test_tool_with_logging", arguments: {} });
        expect(logs).toHaveLength(3);
        expect(logs[0]).toMatchObject({ level: "info", logger: "conformance-2025" });
      } finally {
        await mcp.close();
      }
    });

    it("relays an elicitation and a sampling request to the client and its answers back", async () => {
      const seen: string[] = [];
      const mcp = await connectClient(url(), config.token, { elicitation: {}, sampling: {} }, (client) => {
        client.setRequestHandler(ElicitRequestSchema, (request) => {
          seen.push(`elicit:${request.params.message}`);
          return { action: "accept", content: { response: "from the client" } };
        });
        client.setRequestHandler(CreateMessageRequestSchema, () => {
          seen.push("sampling");
          return { model: "test-model", role: "assistant", content: { type: "text", text: "sampled text" } };
        });
      });
      try {
        const elicited = await mcp.client.callTool({
          name: "conformance-2025__test_elicitation",
          arguments: { message: "Your name?" },
        });
        expect(seen).toContain("elicit:Your name?");
        expect(JSON.stringify(elicited.content)).toContain("from the client");
        const sampled = await mcp.client.callTool({
          name: "conformance-2025__test_sampling",
          arguments: { prompt: "Say hi" },
        });
        expect(seen).toContain("sampling");
        expect(JSON.stringify(sampled.content)).toContain("LLM response: sampled text");
      } finally {
        await mcp.close();
      }
    });

    it("two calls at once in one session: each hop's requests stay apart on the server's session", async () => {
      // Both calls' hops share the session's hop session on the server, and each hop client
      // numbers its requests from 0: the server must still tell the two calls apart.
      const mcp = await connectClient(url(), config.token, { elicitation: {} }, (client) => {
        client.setRequestHandler(ElicitRequestSchema, (request) => ({
          action: "accept",
          content: { response: `answer to ${request.params.message}` },
        }));
      });
      try {
        const call = (message: string) =>
          mcp.client.callTool(
            { name: "conformance-2025__test_elicitation", arguments: { message } },
            undefined,
            { timeout: 15_000 },
          );
        const results = await Promise.all(["first", "second", "third"].map(call));
        expect(results.map((r) => JSON.stringify(r.content))).toEqual([
          expect.stringContaining("answer to first"),
          expect.stringContaining("answer to second"),
          expect.stringContaining("answer to third"),
        ]);
      } finally {
        await mcp.close();
      }
    });

    it("routes completion, subscriptions and the log level to the owning server", async () => {
      const mcp = await connectClient(url(), config.token);
      try {
        const completion = await mcp.client.complete({
          ref: { type: "ref/prompt", name: "conformance-2025__test_prompt_with_arguments" },
          argument: { name: "arg1", value: "" },
        });
        expect(completion.completion.values.length).toBeGreaterThan(0);
        await mcp.client.subscribeResource({ uri: "conformance-2025.test://static-text" });
        await mcp.client.unsubscribeResource({ uri: "conformance-2025.test://static-text" });
        await mcp.client.setLoggingLevel("warning");
        await expect(
          mcp.client.subscribeResource({ uri: "nowhere.test://static-text" }),
        ).rejects.toMatchObject({ data: { reason: "resource_unknown" } });
      } finally {
        await mcp.close();
      }
    });

    it("cancelling the client's request cancels the hop", async () => {
      const mcp = await connectClient(url(), config.token);
      try {
        const abort = new AbortController();
        const call = mcp.client.callTool(
          { name: "conformance-2025__test_tool_with_progress", arguments: {} },
          undefined,
          { signal: abort.signal, onprogress: () => abort.abort() },
        );
        await expect(call).rejects.toThrow();
        // The hop told the server: its cancellation went through /mcp/<server> like any message.
        await waitFor(() =>
          log.audits.some(
            (a) => a.server === "conformance-2025" && a.methods.includes("notifications/cancelled"),
          ),
        );
        // The session keeps working after the cancellation.
        const r = await mcp.client.callTool({ name: "conformance-2025__test_simple_text", arguments: {} });
        expect(r.content).toHaveLength(1);
      } finally {
        await mcp.close();
      }
    });
  },
);
