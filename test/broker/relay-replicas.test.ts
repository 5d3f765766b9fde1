import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ElicitRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ensureDevKeys, signDevToken } from "../../ext-service/src/config/devkeys.js";
import { startEdge, type Edge } from "../../ext-service/src/edge/index.js";
import { startEnvoyRoleFront, type EnvoyRoleFront } from "../../ext-service/src/envoy/envoy-role-front.js";
import { Reasons } from "../../ext-service/src/policy/reasons.js";
import { GatewayState } from "../../ext-service/src/runtime/gateway-state.js";
import { RedisStore } from "../../ext-service/src/state/redis.js";
import { Metrics } from "../../ext-service/src/telemetry/metrics.js";
import { prepareGatewayConfig, serverName, type GatewayConfig } from "../conformance/gateway.js";
import { startServer2025, type RunningServer } from "../conformance/server-2025.js";
import { LogCapture, waitFor } from "../e2e/harness.js";
import { describeWithRedis, startRedis, type TestRedis } from "../state/redis-server.js";
import { brokerReplica, connect2025, type BrokerReplica, type Sdk2025 } from "./support.js";

/**
 * A server-to-client request relayed through /mcp waits for the client's answer on the replica
 * that sent it. Two edge replicas (same sessions.keys) serve one session; the client's transport
 * sends its POSTed answers to the other replica, as a balancer without Mcp-Session-Id affinity
 * would. Without a shared store that replica refuses the answer with 409 answer_not_pending
 * instead of accepting it (202) and dropping it; the same answer on the right replica completes
 * the call. With a shared store (real redis-server) it hands the answer over to the replica that
 * waits (202), and when the store is lost both sides fail at once instead of waiting out the hop.
 */
const ELICIT = { name: "conformance-2025__test_elicitation", arguments: { message: "Your name?" } };
const ANSWER = { action: "accept" as const, content: { response: "from the client" } };

/** The client's fetch: answers (POSTs of JSON-RPC responses only) go to `answers`, all else as asked. */
function splitFetch(primary: () => string, answers: () => string, seen: { status: number; body: string }[]) {
  return async (url: string | URL, init?: RequestInit): Promise<Response> => {
    let target = new URL(String(url));
    const body = typeof init?.body === "string" ? init.body : undefined;
    if (init?.method === "POST" && body !== undefined) {
      const parsed = JSON.parse(body) as Record<string, unknown>;
      if (!("method" in parsed) && "id" in parsed) target = new URL(target.pathname, answers());
      const response = await fetch(target, init);
      if (!("method" in parsed)) seen.push({ status: response.status, body: await response.clone().text() });
      return response;
    }
    target = new URL(target.pathname, primary());
    return fetch(target, init);
  };
}

/** Runs in the client's elicitation handler before it answers, given the request's id. */
type BeforeAnswer = (requestId: string | number) => Promise<void>;

/** The SDK major's client, answering elicitations with ANSWER once `beforeAnswer` has run. */
const connectFor =
  (sdk: Sdk2025) =>
  async (url: string, token: string, fetchFn: ReturnType<typeof splitFetch>, beforeAnswer?: BeforeAnswer) => {
    const mcp = await connect2025(sdk, url, token, {
      capabilities: { elicitation: {} },
      fetch: fetchFn,
      onElicit: async (requestId) => {
        await beforeAnswer?.(requestId);
        return ANSWER;
      },
    });
    return {
      sessionId: () => mcp.sessionId,
      call: (timeout: number) => mcp.call(ELICIT.name, ELICIT.arguments, { timeout }),
      close: () => mcp.close(),
    };
  };

const clients = { "SDK 1.x": connectFor("1.x"), "SDK 2.x (2025 era)": connectFor("2.x") };

describe("an answer to a relayed request on another replica (2025, two edges)", () => {
  let server: RunningServer;
  let config: GatewayConfig;
  let a: Edge;
  let b: Edge;
  const log = new LogCapture();
  beforeAll(async () => {
    server = await startServer2025();
    config = await prepareGatewayConfig({ "2025-11-25": server.url });
    const edge = () =>
      startEdge({
        engine: config.engine,
        logger: log.logger,
        metrics: new Metrics(false),
        host: "127.0.0.1",
        port: 0,
      });
    [a, b] = await Promise.all([edge(), edge()]);
  });
  afterAll(async () => {
    await Promise.allSettled([a?.close(0), b?.close(0)]);
    await server?.close();
    config?.remove();
  });

  describe.each(Object.entries(clients))("%s", (_, connect) => {
    it("is refused with 409 answer_not_pending, not accepted and dropped", async () => {
      const seen: { status: number; body: string }[] = [];
      const mcp = await connect(
        `${a.url}/mcp`,
        config.token,
        splitFetch(
          () => a.url,
          () => b.url,
          seen,
        ),
      );
      try {
        // The client hears its answer refused; its call ends at its own timeout, not the hop's.
        await expect(mcp.call(3_000)).rejects.toThrow();
        expect(seen).toHaveLength(1);
        expect(seen[0]!.status).toBe(409);
        expect(JSON.parse(seen[0]!.body)).toMatchObject({
          jsonrpc: "2.0",
          id: null,
          error: { data: { reason: "answer_not_pending" } },
        });
      } finally {
        await mcp.close();
      }
    });

    it("on the replica that relayed it, completes the call", async () => {
      const seen: { status: number; body: string }[] = [];
      const mcp = await connect(
        `${a.url}/mcp`,
        config.token,
        splitFetch(
          () => a.url,
          () => a.url,
          seen,
        ),
      );
      try {
        const result = await mcp.call(30_000);
        expect(JSON.stringify(result.content)).toContain("from the client");
        expect(seen.map((s) => s.status)).toEqual([202]);
      } finally {
        await mcp.close();
      }
    });
  });
});

/** A POST of one JSON-RPC response to `url` in session `sessionId`, as a client sends its answer. */
async function postAnswer(url: string, token: string, sessionId: string, answer: Record<string, unknown>) {
  const response = await fetch(url, {
    method: "POST",
    headers: {
      authorization: `Bearer ${token}`,
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      "mcp-session-id": sessionId,
      "mcp-protocol-version": "2025-11-25",
    },
    body: JSON.stringify({ jsonrpc: "2.0", ...answer }),
  });
  const text = await response.text();
  return { status: response.status, body: text === "" ? undefined : (JSON.parse(text) as unknown) };
}

/** One replica's shared state on `redis` (keys under `keyPrefix`), connected. */
async function sharedState(redis: TestRedis, keyPrefix: string, log: LogCapture) {
  const metrics = new Metrics(false);
  const store = new RedisStore({ url: redis.url, keyPrefix, connectTimeoutMs: 1_000, commandTimeoutMs: 500 });
  await store.waitUntilAvailable(5_000);
  return { metrics, state: new GatewayState(store, metrics, log.logger) };
}

/**
 * The call whose relayed request waited while the store went: the server heard the relay fail
 * (answer_relay_unavailable; its tool reports the error) long before the hop's 60 s, and the
 * client's late answer (its reply recorded in `seen`) is refused with 503 session_unavailable:
 * the session check before the hand-over is the first to find the store down.
 */
async function expectRelayLost(
  call: () => Promise<{ isError?: boolean; content?: unknown }>,
  seen: { status: number; body: string }[],
): Promise<void> {
  const started = Date.now();
  const result = await call();
  expect(Date.now() - started).toBeLessThan(15_000);
  expect(result.isError).toBe(true);
  expect(JSON.stringify(result.content)).toContain(Reasons.answer_relay_unavailable.message);
  // The client's fetch has read the refusal.
  await waitFor(() => seen.length > 0, 5_000, "the client's answer");
  expect(seen.map((s) => s.status)).toEqual([503]);
  expect(JSON.parse(seen[0]!.body)).toMatchObject({ error: { data: { reason: "session_unavailable" } } });
}

describeWithRedis(
  "an answer to a relayed request on another replica, with the shared store (redis-server)",
  () => {
    let server: RunningServer;
    let config: GatewayConfig;
    let redis: TestRedis;
    let intruderToken: string;
    const replicas: { edge: Edge; state: GatewayState }[] = [];
    const log = new LogCapture();
    const a = () => replicas[0]!;
    const b = () => replicas[1]!;
    beforeAll(async () => {
      [server, redis] = await Promise.all([startServer2025(), startRedis()]);
      config = await prepareGatewayConfig({ "2025-11-25": server.url });
      const keys = await ensureDevKeys(join(config.dir, "keys"));
      intruderToken = await signDevToken(keys.privateJwk, { subject: "intruder", ttl: "1h" });
      const keyPrefix = `relay${Date.now()}:`;
      for (let i = 0; i < 2; i++) {
        const { metrics, state } = await sharedState(redis, keyPrefix, log);
        const edge = await startEdge({
          engine: config.engine,
          logger: log.logger,
          metrics,
          host: "127.0.0.1",
          port: 0,
          state,
        });
        replicas.push({ edge, state });
      }
    });
    afterAll(async () => {
      await Promise.allSettled(replicas.map((r) => r.edge.close(0)));
      await Promise.allSettled(replicas.map((r) => r.state.close()));
      await Promise.allSettled([server?.close(), redis?.close()]);
      config?.remove();
    });

    describe.each(Object.entries(clients))("%s", (_, connect) => {
      it("is handed over to the replica that waits for it (202) and completes the call; another agent cannot answer", async () => {
        const seen: { status: number; body: string }[] = [];
        let forged: { status: number; body: unknown } | undefined;
        let sessionId = "";
        const mcp = await connect(
          `${a().edge.url}/mcp`,
          config.token,
          splitFetch(
            () => a().edge.url,
            () => b().edge.url,
            seen,
          ),
          async (requestId) => {
            // Before the client answers, another agent tries to answer in its place on the replica
            // that does not wait: its answer never reaches the request.
            forged = await postAnswer(`${b().edge.url}/mcp`, intruderToken, sessionId, {
              id: requestId,
              result: { action: "accept", content: { response: "forged" } },
            });
          },
        );
        sessionId = mcp.sessionId();
        try {
          const started = Date.now();
          const result = await mcp.call(30_000);
          expect(JSON.stringify(result.content)).toContain("from the client");
          expect(JSON.stringify(result.content)).not.toContain("forged");
          expect(Date.now() - started).toBeLessThan(10_000);
          expect(seen.map((s) => s.status)).toEqual([202]);
          expect(forged?.status).toBe(404);
          expect(forged?.body).toMatchObject({ error: { data: { reason: "session_unknown" } } });
        } finally {
          await mcp.close();
        }
      });
    });

    it("two calls at once on two replicas, each answered on the other: each call gets its own answer", async () => {
      // Each replica's server numbers its requests to the client from 0: the ids the client sees
      // must still tell the two elicitations apart.
      const seen: number[] = [];
      const client = new Client({ name: "v1", version: "1.0.0" }, { capabilities: { elicitation: {} } });
      client.setRequestHandler(ElicitRequestSchema, (request) => ({
        action: "accept",
        content: { response: `answer to ${request.params.message}` },
      }));
      const replicaFor = (body: string | undefined, method: string | undefined) => {
        if (method !== "POST" || body === undefined) return a().edge.url;
        const parsed = JSON.parse(body) as Record<string, unknown>;
        // The first call runs on A and the second on B; each answer goes to the other replica.
        if (!("method" in parsed)) return body.includes("answer to first") ? b().edge.url : a().edge.url;
        return body.includes('"message":"second"') ? b().edge.url : a().edge.url;
      };
      const transport = new StreamableHTTPClientTransport(new URL(`${a().edge.url}/mcp`), {
        requestInit: { headers: { authorization: `Bearer ${config.token}` } },
        fetch: async (url, init) => {
          const body = typeof init?.body === "string" ? init.body : undefined;
          const target = new URL(new URL(String(url)).pathname, replicaFor(body, init?.method));
          const response = await fetch(target, init);
          if (body !== undefined && !("method" in (JSON.parse(body) as object))) seen.push(response.status);
          return response;
        },
      });
      await client.connect(transport);
      try {
        const call = (message: string) =>
          client.callTool({ name: ELICIT.name, arguments: { message } }, undefined, { timeout: 30_000 });
        const [first, second] = await Promise.all([call("first"), call("second")]);
        expect(JSON.stringify(first.content)).toContain("answer to first");
        expect(JSON.stringify(second.content)).toContain("answer to second");
        expect(seen).toEqual([202, 202]);
      } finally {
        await client.close();
      }
    });

    it("no replica waits for it: refused at once with 409 answer_not_pending", async () => {
      const mcp = await clients["SDK 1.x"](
        `${a().edge.url}/mcp`,
        config.token,
        splitFetch(
          () => a().edge.url,
          () => a().edge.url,
          [],
        ),
      );
      try {
        const started = Date.now();
        const refused = await postAnswer(`${b().edge.url}/mcp`, config.token, mcp.sessionId(), {
          id: 4242,
          result: { action: "accept", content: { response: "late" } },
        });
        expect(Date.now() - started).toBeLessThan(2_000);
        expect(refused.status).toBe(409);
        expect(refused.body).toMatchObject({ id: null, error: { data: { reason: "answer_not_pending" } } });
      } finally {
        await mcp.close();
      }
    });

    // Last: it stops redis-server.
    it("the store lost while the request waits: the server's request fails at once, the late answer is refused", async () => {
      const seen: { status: number; body: string }[] = [];
      const mcp = await clients["SDK 1.x"](
        `${a().edge.url}/mcp`,
        config.token,
        splitFetch(
          () => a().edge.url,
          () => b().edge.url,
          seen,
        ),
        async () => {
          await redis.stop();
          await waitFor(() => !b().edge.ready(), 5_000, "the replica sees Redis down");
        },
      );
      try {
        await expectRelayLost(() => mcp.call(30_000), seen);
      } finally {
        await mcp.close();
      }
    });
  },
);

/**
 * The Envoy plane: two ext-service brokers sharing one redis-server behind the Envoy-role front,
 * whose ring hash on Mcp-Session-Id keeps a session on one broker until the cluster changes. Here
 * it changes mid-elicitation (the session's broker leaves the ring, as when it fails its health
 * checks): the call stays on broker A, the client's answer reaches broker B, which hands it over.
 */
describeWithRedis(
  "an answer to a relayed request on another broker replica behind Envoy (ring hash, redis-server)",
  () => {
    let server: RunningServer;
    let config: GatewayConfig;
    let redis: TestRedis;
    let front: EnvoyRoleFront;
    const replicas: (BrokerReplica & { state: GatewayState })[] = [];
    const log = new LogCapture();
    beforeAll(async () => {
      [server, redis] = await Promise.all([startServer2025(), startRedis()]);
      config = await prepareGatewayConfig({ "2025-11-25": server.url });
      const keyPrefix = `relay-envoy${Date.now()}:`;
      let frontOrigin = "";
      for (let i = 0; i < 2; i++) {
        const { metrics, state } = await sharedState(redis, keyPrefix, log);
        const replica = await brokerReplica({
          engine: config.engine,
          logger: log.logger,
          metrics,
          state,
          hopOrigin: () => frontOrigin,
        });
        replicas.push({ ...replica, state });
      }
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
      await Promise.allSettled(replicas.map((r) => r.state.close()));
      await Promise.allSettled([server?.close(), redis?.close()]);
      config?.remove();
    });

    /**
     * The replica the ring gave session `sessionId` (the one its requests reached so far) and the
     * other one; the cluster then loses the first (it fails its health checks), so the session's
     * next requests go to the other while the one in flight stays where it is.
     */
    const moveSession = (sessionId: string) => {
      const from = replicas.findIndex((r) => r.seen.some((s) => s.session === sessionId));
      const to = replicas[1 - from]!;
      expect(from).toBeGreaterThanOrEqual(0);
      expect(to.seen.some((s) => s.session === sessionId)).toBe(false);
      front.setBrokers([to.url]);
      return { from: replicas[from]!, to };
    };
    /** The client's fetch: everything to the front, the answers' replies recorded in `seen`. */
    const throughFront = (seen: { status: number; body: string }[]) =>
      splitFetch(
        () => front.url,
        () => front.url,
        seen,
      );
    /** The answers (POSTs without a method) of session `sessionId` that reached `replica`. */
    const answersAt = (replica: (typeof replicas)[number], sessionId: string) =>
      replica.seen.filter((s) => s.method === "POST" && s.session === sessionId && s.rpc === undefined);

    describe.each(Object.entries(clients))("%s", (_, connect) => {
      it("the session moves to the other broker mid-elicitation: its answer is handed over (202) and completes the call", async () => {
        let sessionId = "";
        let moved: ReturnType<typeof moveSession> | undefined;
        const mcp = await connect(`${front.url}/mcp`, config.token, throughFront([]), async () => {
          moved = moveSession(sessionId);
        });
        sessionId = mcp.sessionId();
        try {
          const started = Date.now();
          const result = await mcp.call(30_000);
          expect(JSON.stringify(result.content)).toContain("from the client");
          expect(Date.now() - started).toBeLessThan(10_000);
          // The call ran on the first replica, its answer reached only the second, which took it.
          const { from, to } = moved!;
          expect(from.seen.filter((s) => s.session === sessionId && s.rpc === "tools/call")).toHaveLength(1);
          expect(to.seen.some((s) => s.session === sessionId && s.rpc === "tools/call")).toBe(false);
          expect(answersAt(from, sessionId)).toHaveLength(0);
          expect(answersAt(to, sessionId).map((s) => s.status)).toEqual([202]);
        } finally {
          await mcp.close();
        }
      });
    });

    // Last: it stops redis-server.
    it("the store lost while the request waits: the server's request fails at once (answer_relay_unavailable), the late answer is refused", async () => {
      let sessionId = "";
      let moved: ReturnType<typeof moveSession> | undefined;
      const seen: { status: number; body: string }[] = [];
      const mcp = await clients["SDK 1.x"](`${front.url}/mcp`, config.token, throughFront(seen), async () => {
        moved = moveSession(sessionId);
        await redis.stop();
        await waitFor(() => !moved!.to.state.ready(), 5_000, "the replica sees Redis down");
      });
      sessionId = mcp.sessionId();
      try {
        await expectRelayLost(() => mcp.call(30_000), seen);
        // Refused by the broker itself (a JSON-RPC error), not by the front.
        expect(answersAt(moved!.to, sessionId).map((s) => s.status)).toEqual([503]);
      } finally {
        await mcp.close();
      }
    });
  },
);
