import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEnvoyRoleFront, type EnvoyRoleFront } from "../../ext-service/src/envoy/envoy-role-front.js";
import { RingHash, xxHash64 } from "../../ext-service/src/envoy/ring-hash.js";
import { brokerReplica, type BrokerReplica } from "../broker/support.js";
import { connectClient, startDemoGateway, type DemoGateway } from "../e2e/harness.js";

/**
 * Envoy's RING_HASH as the Envoy-role front models it for the broker cluster (envoy.yaml
 * `mcp_gateway_broker`, the broker routes' hash_policy on `mcp-session-id`): the hash, the ring,
 * and the front sending each 2025 session's requests to one broker replica of several.
 */

describe("xxHash64 (Envoy's HashUtil::xxHash64, seed 0)", () => {
  it("gives XXH64's reference values, short inputs and inputs of several 32-byte stripes", () => {
    expect(xxHash64("").toString(16)).toBe("ef46db3751d8e999");
    expect(xxHash64("a").toString(16)).toBe("d24ec4f1a98c6e5b");
    expect(xxHash64("abc").toString(16)).toBe("44bc2cf5ad770999");
    // Checked against the xxhash reference implementation (xxhash-wasm's h64Raw).
    expect(xxHash64("z".repeat(77)).toString(16)).toBe("91e48dc3a1ef96d8");
    expect(xxHash64("test-value").toString(16)).toBe("41924542184118fd");
  });
});

describe("RingHash", () => {
  const hosts = ["10.0.0.1:9002", "10.0.0.2:9002", "10.0.0.3:9002"];
  const keys = Array.from({ length: 3_000 }, () => randomUUID());

  it("sends a key to the same host every time, and spreads keys over every host", () => {
    const ring = new RingHash(hosts);
    const again = new RingHash([...hosts].reverse());
    const counts = new Map<string, number>();
    for (const key of keys) {
      const host = ring.pickFor(key)!;
      expect(ring.pickFor(key)).toBe(host);
      // The ring depends on the hosts, not on the order they are listed in.
      expect(again.pickFor(key)).toBe(host);
      counts.set(host, (counts.get(host) ?? 0) + 1);
    }
    expect([...counts.keys()].sort()).toEqual(hosts);
    // 342 points per host: each gets a third give or take the ring's unevenness.
    for (const n of counts.values()) expect(n / keys.length).toBeGreaterThan(0.2);
  });

  it("a host leaving moves its own keys and few of the others'", () => {
    // Envoy gives each host ceil(1024 / N) points: with two hosts left each gets 512 (342
    // before), and the new points take some arcs of the other host; most keys stay put.
    const ring = new RingHash(hosts);
    const fewer = new RingHash(hosts.slice(0, 2));
    let others = 0;
    let stayed = 0;
    for (const key of keys) {
      const before = ring.pickFor(key)!;
      if (before === hosts[2]) continue;
      others++;
      if (fewer.pickFor(key) === before) stayed++;
    }
    expect(stayed / others).toBeGreaterThan(0.8);
  });

  it("a request without the header gets a random hash: its picks spread", () => {
    const ring = new RingHash(hosts);
    const picked = new Set(Array.from({ length: 200 }, () => ring.pickFor(undefined)));
    expect(picked.size).toBe(3);
  });
});

describe("Envoy-role front over three broker replicas (mcp_gateway_broker, RING_HASH on mcp-session-id)", () => {
  let gw: DemoGateway;
  const replicas: BrokerReplica[] = [];
  let front: EnvoyRoleFront;

  beforeAll(async () => {
    gw = await startDemoGateway();
    let frontOrigin = "";
    for (let i = 0; i < 3; i++)
      replicas.push(
        await brokerReplica({ engine: gw.dev.engine, logger: gw.log.logger, hopOrigin: () => frontOrigin }),
      );
    front = await startEnvoyRoleFront({
      extService: replicas[0]!.ext.grpcAddress,
      upstreams: Object.fromEntries(
        gw.dev.engine.registry
          .serverNames()
          .map((name) => [name, gw.dev.engine.registry.server(name)!.config.upstreams[0]!]),
      ),
      broker: replicas.map((r) => r.url),
    });
    frontOrigin = front.url;
  });
  afterAll(async () => {
    await front?.close();
    await Promise.allSettled(replicas.map((r) => r.close()));
    await gw?.close();
  });

  it("each session's requests reach one replica, and sessions spread over the replicas", async () => {
    const sessions: string[] = [];
    for (let i = 0; i < 10; i++) {
      const mcp = await connectClient(`${front.url}/mcp`, gw.token("support-bot"));
      try {
        const tools = await mcp.client.listTools();
        expect(tools.tools.map((t) => t.name)).toContain("kb__search_articles");
        const result = await mcp.client.callTool({
          name: "kb__search_articles",
          arguments: { query: "refund" },
        });
        expect(JSON.stringify(result.content)).toContain("kb-102");
        sessions.push(mcp.transport.sessionId!);
      } finally {
        await mcp.close();
      }
    }
    const replicaOf = (session: string) =>
      replicas.map((s, i) => (s.seen.some((r) => r.session === session) ? i : -1)).filter((i) => i >= 0);
    const placed = sessions.map((session) => {
      const where = replicaOf(session);
      // Every request that carried the session (notifications/initialized, lists, the call) went
      // to one replica, whichever served its initialize.
      expect(where).toHaveLength(1);
      expect(replicas[where[0]!]!.seen.filter((r) => r.session === session).length).toBeGreaterThanOrEqual(3);
      return where[0]!;
    });
    // Ten sessions over three replicas: on one alone with probability 3 / 3^10.
    expect(new Set(placed).size).toBeGreaterThan(1);
  });
});
