import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDemoServers, type RunningServer } from "../../examples/servers/index.js";
import { startEnvoyRoleFront, type EnvoyRoleFront } from "../../ext-service/src/envoy/envoy-role-front.js";
import type { AuditRecord } from "../../ext-service/src/telemetry/audit.js";
import { startGateway, waitFor, type Gateway } from "../e2e/harness.js";
import { connect2025, connectModern, registryServer, slowProxy } from "./support.js";

/**
 * The fan-out's deadline (broker.fanoutTimeout): a server that has not answered initialize or a
 * list by then is left out of that answer, which comes back with the others' (it used to wait
 * for the slowest server, up to edge.upstreamTimeout); the aggregated request's audit record
 * counts it (left_out and fanout_timeout), the metric counts it; its late answer still fills the
 * list cache; once it answers in time again it is back. A server that is down is left out and
 * audited too (left_out, no fanout_timeout). Through real SDK clients, both planes.
 */

// Generous: a fast server must answer well within the deadline on a loaded machine.
const FANOUT_MS = 1_500;
const SLOW_MS = 4_500;

describe.each(["edge", "envoy"] as const)("the fan-out's deadline, %s plane", (plane) => {
  let demo: Record<"kb" | "tickets" | "deploy", RunningServer>;
  let proxy: Awaited<ReturnType<typeof slowProxy>>;
  let gw: Gateway;
  let front: EnvoyRoleFront | undefined;
  beforeAll(async () => {
    demo = await startDemoServers({ kb: 0, tickets: 0, deploy: 0 });
    proxy = await slowProxy(Number(new URL(demo.tickets.url).port));
    const all = { roles: ["all"] };
    gw = await startGateway({
      servers: [
        registryServer("kb", demo.kb.url),
        registryServer("tickets", proxy.url),
        registryServer("deploy", demo.deploy.url),
      ],
      // One agent per client: each starts with nothing kept in the list cache.
      agents: { warm: all, modern: all, v1: all, v2: all, down: all },
      config: { broker: { fanoutTimeout: `${FANOUT_MS}ms` } },
    });
    if (plane === "envoy")
      front = await startEnvoyRoleFront({
        extService: { engine: gw.engine, logger: gw.log.logger, metrics: gw.metrics },
      });
    // Each server's pins are checked once per process, with its first list: done now, while all
    // are fast (a cold check of a fast server could take longer than the deadline; of the slow
    // one, longer than the check may take).
    for (const server of ["kb", "tickets", "deploy"]) {
      const direct = await connect2025(
        "1.x",
        `${front?.url ?? gw.edge.url}/mcp/${server}`,
        await gw.token("warm"),
      );
      await direct.tools();
      await direct.close();
    }
  }, 30_000);
  afterAll(async () => {
    await front?.close();
    await gw?.close();
    await proxy?.close();
    await Promise.allSettled(Object.values(demo ?? {}).map((s) => s.close()));
  });

  const url = () => `${front?.url ?? gw.edge.url}/mcp`;

  /** The aggregated endpoint's own audit records (not the hops') for `method`, from line `from` on. */
  const records = (from: number, method: string): AuditRecord[] =>
    gw.log.lines
      .slice(from)
      .filter(
        (l) =>
          l.audit === true &&
          (l.counters as Record<string, number>).aggregated === 1 &&
          (l.methods as string[])[0] === method,
      ) as never;

  /** A record of `method` that left tickets out: because it was late, or (late false) because it failed. */
  async function leftOut(from: number, method: string, late: boolean): Promise<void> {
    await waitFor(() => records(from, method).length > 0, 5_000, `the ${method} record`);
    const [record] = records(from, method);
    expect(record!.counters).toMatchObject({ "left_out:tickets": 1 });
    if (late) expect(record!.counters).toMatchObject({ "fanout_timeout:tickets": 1 });
    else expect(record!.counters).not.toHaveProperty("fanout_timeout:tickets");
    expect(record!.counters).not.toHaveProperty("left_out:kb");
    expect(record!.counters).not.toHaveProperty("left_out:deploy");
    expect(record!.decision).toBe("allow");
  }

  async function lateCount(): Promise<number> {
    const metric = await gw.metrics.upstreamErrors.get();
    return metric.values
      .filter((v) => v.labels.server === "tickets" && v.labels.reason === "broker_fanout_timeout")
      .reduce((sum, v) => sum + v.value, 0);
  }

  /** Runs `work` and returns its result and how long it took (ms). */
  async function timed<T>(work: () => Promise<T>): Promise<[T, number]> {
    const t0 = performance.now();
    const out = await work();
    return [out, performance.now() - t0];
  }

  const expectOthersOnly = (tools: string[]) => {
    expect(tools.some((t) => t.startsWith("kb__"))).toBe(true);
    expect(tools.some((t) => t.startsWith("deploy__"))).toBe(true);
    expect(tools.some((t) => t.startsWith("tickets__"))).toBe(false);
  };

  // First: the 2026-07-28 connect asks the servers whose capabilities are not known yet.
  it("2.x client at 2026-07-28: connect and tools/list answer by the deadline without the slow server", async () => {
    proxy.delay = SLOW_MS;
    const lateBefore = await lateCount();
    const from = gw.log.lines.length;
    const token = await gw.token("modern");
    const [client, connectMs] = await timed(() => connectModern(url(), token));
    try {
      expect(connectMs).toBeLessThan(SLOW_MS - 500);
      const [listed, listMs] = await timed(() => client.listTools());
      expect(listMs).toBeLessThan(SLOW_MS - 500);
      expect(listMs).toBeGreaterThanOrEqual(FANOUT_MS - 50);
      expectOthersOnly(listed.tools.map((t) => t.name));
      await leftOut(from, "tools/list", true);
      expect(await lateCount()).toBeGreaterThan(lateBefore);
      // Its late answer is not kept (a 2026-07-28 list without caching hints): the next list
      // does not wait for it either.
      const [again, againMs] = await timed(() => client.listTools());
      expect(againMs).toBeLessThan(SLOW_MS - 500);
      expectOthersOnly(again.tools.map((t) => t.name));
    } finally {
      proxy.delay = 0;
      await client.close();
    }
  }, 30_000);

  for (const sdk of ["1.x", "2.x"] as const) {
    it(`${sdk} client, 2025: initialize and tools/list answer by the deadline; the server rejoins once it answers in time`, async () => {
      const agent = sdk === "1.x" ? "v1" : "v2";
      const token = await gw.token(agent);
      proxy.delay = SLOW_MS;
      proxy.answered = {};
      const from = gw.log.lines.length;
      const [client, connectMs] = await timed(() => connect2025(sdk, url(), token));
      try {
        expect(connectMs).toBeLessThan(SLOW_MS - 500);
        expect(connectMs).toBeGreaterThanOrEqual(FANOUT_MS - 50);
        await leftOut(from, "initialize", true);
        const [tools, listMs] = await timed(() => client.tools());
        expect(listMs).toBeLessThan(SLOW_MS - 500);
        expectOthersOnly(tools);
        await leftOut(from, "tools/list", true);
        // A call to the slow server is no fan-out: it waits for its answer.
        const [called, callMs] = await timed(() => client.call("tickets__list_tickets", {}));
        expect(called.isError).toBeFalsy();
        expect(callMs).toBeGreaterThanOrEqual(SLOW_MS - 100);
        // The list's late answer was kept (a 2025 list, broker.lists.ttl): the next list has it
        // at once.
        await waitFor(() => (proxy.answered["tools/list"] ?? 0) > 0, 15_000, "the late tools/list");
        const [again, againMs] = await timed(() => client.tools());
        expect(again).toContain("tickets__list_tickets");
        expect(againMs).toBeLessThan(FANOUT_MS);
      } finally {
        await client.close();
      }
      // Fast again: a new session of the same agent has it from initialize on, in time.
      proxy.delay = 0;
      const back = records(0, "initialize").length;
      const [rejoined, rejoinMs] = await timed(() => connect2025(sdk, url(), token));
      try {
        expect(rejoinMs).toBeLessThan(SLOW_MS - 500);
        expect((await rejoined.tools()).filter((t) => t.startsWith("tickets__")).length).toBeGreaterThan(0);
        await waitFor(() => records(0, "initialize").length > back);
        expect(records(0, "initialize")[back]!.counters).not.toHaveProperty("left_out:tickets");
      } finally {
        await rejoined.close();
      }
    }, 30_000);
  }

  it("a server that is down is left out of initialize and tools/list, audited (left_out, no fanout_timeout)", async () => {
    proxy.down = true;
    const from = gw.log.lines.length;
    try {
      const client = await connect2025("1.x", url(), await gw.token("down"));
      try {
        await leftOut(from, "initialize", false);
        expectOthersOnly(await client.tools());
        await leftOut(from, "tools/list", false);
      } finally {
        await client.close();
      }
    } finally {
      proxy.down = false;
    }
  }, 30_000);
});
