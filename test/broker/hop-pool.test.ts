import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { closeHop, HopPool, type PooledHop } from "../../ext-service/src/broker/hop-pool.js";
import { startServer2025, type RunningServer } from "../conformance/server-2025.js";
import { waitFor } from "../e2e/harness.js";

/**
 * The kept hops' idle expiry (broker/hop-pool.ts; the broker keeps a key 60 s): a key unused for
 * `idleMs` is dropped and its hops closed, a hop holding a session of its own ending it with a
 * DELETE, without waiting for the key to be looked up again; each use starts the idle time over.
 * Real SDK clients on a real 2025 server with sessions, on a pool whose idle time is short.
 */
const IDLE_MS = 500;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Whether the server still serves session `sessionId` (a closed session answers 404). */
async function sessionOpen(url: string, sessionId: string): Promise<boolean> {
  const response = await fetch(url, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      "mcp-session-id": sessionId,
      "mcp-protocol-version": "2025-11-25",
    },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "ping" }),
  });
  await response.body?.cancel();
  if (response.status !== 200 && response.status !== 404) throw new Error(`unexpected ${response.status}`);
  return response.status === 200;
}

describe("kept hop clients expire when idle", () => {
  let server: RunningServer;
  const opened: PooledHop[] = [];
  beforeAll(async () => {
    server = await startServer2025();
  });
  afterAll(async () => {
    await Promise.allSettled(opened.map((hop) => closeHop(hop)));
    await server?.close();
  });

  /** A hop as the broker builds one for a 2026-07-28 request whose server speaks only 2025. */
  async function openHop(): Promise<PooledHop & { sessionId: string }> {
    const client = new Client({ name: "mcp-gateway-broker", version: "1.0.0" }, { capabilities: {} });
    const transport = new StreamableHTTPClientTransport(new URL(server.url));
    await client.connect(transport);
    const hop = {
      client,
      transport,
      speaker: {
        principal: { agent: "tester", roles: [], claims: {}, issuer: undefined, anonymous: false },
        bearer: { token: undefined },
      },
      ctx: undefined,
      clientStream: undefined,
      asker: undefined,
      sent: [],
      ownSession: true,
      sessionId: transport.sessionId!,
    };
    opened.push(hop);
    return hop;
  }

  it("closes an unused key's hops after idleMs, ending their own sessions (DELETE)", async () => {
    const pool = new HopPool({ maxKeys: 10, perKey: 4, idleMs: IDLE_MS });
    const [first, second] = [await openHop(), await openHop()];
    pool.give("key", first);
    pool.give("key", second);
    expect(pool.size).toBe(2);
    expect(await sessionOpen(server.url, first.sessionId)).toBe(true);
    // Nobody looks the key up again: the pool's own timer closes the hops.
    await waitFor(() => pool.size === 0, IDLE_MS * 10, "the idle key dropped");
    await waitFor(() => first.client.transport === undefined && second.client.transport === undefined);
    expect(await sessionOpen(server.url, first.sessionId)).toBe(false);
    expect(await sessionOpen(server.url, second.sessionId)).toBe(false);
    expect(pool.take("key")).toBeUndefined();
  });

  it("a hop used again within idleMs stays kept: each use starts the idle time over", async () => {
    const pool = new HopPool({ maxKeys: 10, perKey: 4, idleMs: IDLE_MS });
    const hop = await openHop();
    pool.give("key", hop);
    // Used and given back every half idle time, for two and a half idle times in all.
    for (let i = 0; i < 5; i++) {
      await sleep(IDLE_MS / 2);
      const taken = pool.take("key");
      expect(taken).toBe(hop);
      await taken!.client.ping();
      pool.give("key", taken!);
    }
    expect(pool.size).toBe(1);
    expect(await sessionOpen(server.url, hop.sessionId)).toBe(true);
    await waitFor(() => pool.size === 0, IDLE_MS * 10, "the idle key dropped");
    await waitFor(() => hop.client.transport === undefined);
    expect(await sessionOpen(server.url, hop.sessionId)).toBe(false);
  });
});
