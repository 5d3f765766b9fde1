import {
  Client as ClientV2,
  StreamableHTTPClientTransport as TransportV2,
} from "@modelcontextprotocol/client";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startEdge, type Edge } from "../../ext-service/src/edge/index.js";
import { startEnvoyRoleFront, type EnvoyRoleFront } from "../../ext-service/src/envoy/envoy-role-front.js";
import { Metrics } from "../../ext-service/src/telemetry/metrics.js";
import { BRIDGE_STATE_PREFIX } from "../../ext-service/src/broker/bridge.js";
import type { Broker } from "../../ext-service/src/broker/broker.js";
import { prepareGatewayConfig, serverName, type GatewayConfig } from "../conformance/gateway.js";
import { startServer2025, type RunningServer } from "../conformance/server-2025.js";
import { LogCapture, waitFor } from "../e2e/harness.js";
import { brokerReplica, type BrokerReplica } from "./support.js";

const ELICIT = "conformance-2025__test_elicitation";
const SAMPLE = "conformance-2025__test_sampling";

type Answer = { resultType?: string; requestState?: string; inputRequests?: Record<string, unknown> };

/** A v2 client pinned to 2026-07-28 that answers elicitation and sampling; `seen` records them. */
async function modernClient(
  url: string,
  token: string,
  options: { capabilities?: Record<string, unknown>; autoFulfill?: boolean } = {},
) {
  const seen: string[] = [];
  const client = new ClientV2(
    { name: "bridge-test", version: "1.0.0" },
    {
      versionNegotiation: { mode: { pin: "2026-07-28" } },
      capabilities: options.capabilities ?? { elicitation: {}, sampling: {} },
      inputRequired: { autoFulfill: options.autoFulfill ?? true },
    },
  );
  if (options.capabilities === undefined) {
    client.setRequestHandler("elicitation/create", (request) => {
      seen.push(`elicit:${String(request.params.message)}`);
      return { action: "accept" as const, content: { response: "from the client" } };
    });
    client.setRequestHandler("sampling/createMessage", () => {
      seen.push("sampling");
      return {
        model: "test-model",
        role: "assistant" as const,
        content: { type: "text" as const, text: "sampled text" },
      };
    });
  }
  await client.connect(
    new TransportV2(new URL(url), { requestInit: { headers: { authorization: `Bearer ${token}` } } }),
  );
  return { client, seen };
}

/** The first round by hand: the broker's input_required for the server's request. */
async function firstRound(client: ClientV2, message: string): Promise<Answer> {
  return (await client.request(
    { method: "tools/call", params: { name: ELICIT, arguments: { message } } },
    { allowInputRequired: true },
  )) as Answer;
}

const accept = { action: "accept", content: { response: "typed by hand" } };

/**
 * A 2026-07-28 client (the v2 SDK client pinned to it) through the aggregated endpoint, calling a
 * tool of a server that speaks only 2025 and asks the client for input on the call's stream
 * (elicitation, sampling). The server checks the client's capabilities before it asks (strict).
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
    const broker = (): Broker => front?.extService?.broker ?? edge.broker;

    it("elicitation and sampling reach the client as input_required, and its answers the server", async () => {
      const { client, seen } = await modernClient(url(), config.token);
      try {
        const elicited = await client.callTool({ name: ELICIT, arguments: { message: "Your name?" } });
        expect(seen).toContain("elicit:Your name?");
        expect(JSON.stringify(elicited.content)).toContain(
          'User response: action=accept, content={\\"response\\":\\"from the client\\"}',
        );
        const sampled = await client.callTool({ name: SAMPLE, arguments: { prompt: "Say hi" } });
        expect(seen).toContain("sampling");
        expect(JSON.stringify(sampled.content)).toContain("LLM response: sampled text");
        expect(broker().bridge.size).toBe(0);
        // Each round was decided on the per-server path: the call, and the answer the hop POSTed.
        await waitFor(() =>
          log.audits.some(
            (a) =>
              a.plane === plane && a.server === "conformance-2025" && a.tools.includes("test_elicitation"),
          ),
        );
      } finally {
        await client.close();
      }
    });

    it("the state is the broker's, bound to the call and used once", async () => {
      const { client } = await modernClient(url(), config.token, { autoFulfill: false });
      try {
        const first = await firstRound(client, "bound?");
        expect(first.resultType).toBe("input_required");
        expect(first.requestState?.startsWith(BRIDGE_STATE_PREFIX)).toBe(true);
        const [key, asked] = Object.entries(first.inputRequests ?? {})[0]!;
        expect(asked).toMatchObject({ method: "elicitation/create", params: { message: "bound?" } });
        const retry = (args: Record<string, unknown>, requestState: string) =>
          client.request({
            method: "tools/call",
            params: { name: ELICIT, arguments: args, inputResponses: { [key]: accept }, requestState },
          });
        const notPending = { data: { reason: "input_not_pending" } };
        // Another state, or the same with other arguments: not this call.
        await expect(retry({ message: "bound?" }, `${BRIDGE_STATE_PREFIX}guessed`)).rejects.toMatchObject(
          notPending,
        );
        await expect(retry({ message: "other" }, first.requestState!)).rejects.toMatchObject(notPending);
        const done = (await retry({ message: "bound?" }, first.requestState!)) as { content?: unknown };
        expect(JSON.stringify(done.content)).toContain("typed by hand");
        // Used: a replay is not pending any more.
        await expect(retry({ message: "bound?" }, first.requestState!)).rejects.toMatchObject(notPending);
      } finally {
        await client.close();
      }
    });

    it("a call whose client never retries is released: the server's request fails, nothing is held", async () => {
      const { client } = await modernClient(url(), config.token, { autoFulfill: false });
      try {
        const first = await firstRound(client, "never answered");
        expect(first.resultType).toBe("input_required");
        expect(broker().bridge.size).toBe(1);
        // The held call's hop is in use, not kept idle.
        const idle = broker().keptHops;
        // What the wait's expiry does (bridge.ts expire), without waiting 60 s.
        broker().bridge.clear();
        expect(broker().bridge.size).toBe(0);
        // The server got an error for its request and ended the call: its hop is released.
        await waitFor(() => broker().keptHops > idle);
        await expect(
          client.request({
            method: "tools/call",
            params: {
              name: ELICIT,
              arguments: { message: "never answered" },
              inputResponses: { x: accept },
              requestState: first.requestState,
            },
          }),
        ).rejects.toMatchObject({ data: { reason: "input_not_pending" } });
      } finally {
        await client.close();
      }
    });

    it("holds at most 16 calls per agent: the server's next request fails at once", async () => {
      const { client } = await modernClient(url(), config.token, { autoFulfill: false });
      try {
        const held = await Promise.all(Array.from({ length: 16 }, (_, i) => firstRound(client, `held ${i}`)));
        expect(held.every((r) => r.resultType === "input_required")).toBe(true);
        expect(broker().bridge.size).toBe(16);
        // The 17th: the server's request is refused, and the server answers the call its own way.
        const over = (await firstRound(client, "one too many")) as Answer & {
          isError?: boolean;
          content?: unknown;
        };
        expect(over.resultType).not.toBe("input_required");
        expect(over.isError).toBe(true);
        expect(JSON.stringify(over.content)).toContain("too many calls wait for this agent's input");
        expect(broker().bridge.size).toBe(16);
      } finally {
        broker().bridge.clear();
        await client.close();
      }
    });

    it("a client that cannot elicit: the server is not told it can, and does not ask", async () => {
      const { client } = await modernClient(url(), config.token, { capabilities: { sampling: {} } });
      try {
        const result = (await client.callTool({ name: ELICIT, arguments: { message: "Your name?" } })) as {
          isError?: boolean;
          content?: unknown;
        };
        expect(result.isError).toBe(true);
        expect(JSON.stringify(result.content)).toContain("does not support elicitation");
      } finally {
        await client.close();
      }
    });
  },
);

/**
 * Two broker replicas behind the Envoy-role front without a shared store: a 2026-07-28 request
 * has no session to hash, so the retry may reach the replica that does not hold the call. It is
 * refused at once (input_not_pending), not left waiting.
 */
describe("aggregated endpoint, envoy plane: the retry on another broker replica", () => {
  let server: RunningServer;
  let config: GatewayConfig;
  let front: EnvoyRoleFront;
  const replicas: BrokerReplica[] = [];
  const log = new LogCapture();
  beforeAll(async () => {
    server = await startServer2025(0, { strictCapabilities: true });
    config = await prepareGatewayConfig({ "2025-11-25": server.url });
    let frontOrigin = "";
    for (let i = 0; i < 2; i++)
      replicas.push(
        await brokerReplica({ engine: config.engine, logger: log.logger, hopOrigin: () => frontOrigin }),
      );
    front = await startEnvoyRoleFront({
      extService: replicas[0]!.ext.grpcAddress,
      upstreams: { [serverName("2025-11-25")]: server.url },
      broker: replicas.map((r) => r.url),
    });
    frontOrigin = front.url;
  });
  afterEach(() => front?.setBrokers(replicas.map((r) => r.url)));
  afterAll(async () => {
    await front?.close();
    await Promise.allSettled(replicas.map((r) => r.close()));
    await server?.close();
    config?.remove();
  });

  it("is refused as input_not_pending, promptly", async () => {
    const { client } = await modernClient(`${front.url}/mcp`, config.token, { autoFulfill: false });
    try {
      front.setBrokers([replicas[0]!.url]);
      const first = await firstRound(client, "which replica?");
      expect(first.resultType).toBe("input_required");
      expect(replicas[0]!.ext.broker.bridge.size).toBe(1);
      front.setBrokers([replicas[1]!.url]);
      const key = Object.keys(first.inputRequests ?? {})[0]!;
      const started = Date.now();
      await expect(
        client.request({
          method: "tools/call",
          params: {
            name: ELICIT,
            arguments: { message: "which replica?" },
            inputResponses: { [key]: accept },
            requestState: first.requestState,
          },
        }),
      ).rejects.toMatchObject({ data: { reason: "input_not_pending" } });
      expect(Date.now() - started).toBeLessThan(5_000);
      // Back on the replica that holds it, the same retry completes the call.
      front.setBrokers([replicas[0]!.url]);
      const done = (await client.request({
        method: "tools/call",
        params: {
          name: ELICIT,
          arguments: { message: "which replica?" },
          inputResponses: { [key]: accept },
          requestState: first.requestState,
        },
      })) as { content?: unknown };
      expect(JSON.stringify(done.content)).toContain("typed by hand");
    } finally {
      await client.close();
    }
  });
});
