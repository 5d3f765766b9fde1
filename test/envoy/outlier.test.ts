import { once } from "node:events";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ExchangeTrace } from "../../ext-service/src/envoy/envoy-model.js";
import { startEnvoyRoleFront, type EnvoyRoleFront } from "../../ext-service/src/envoy/envoy-role-front.js";
import {
  OutlierDetector,
  outlierDetectionOf,
  type OutlierDetectionConfig,
} from "../../ext-service/src/envoy/outlier.js";
import { outlierDetection } from "../../ext-service/src/envoy/render.js";
import { MCP_POST_HEADERS, startGateway, type Gateway } from "./harness.js";

/**
 * The model of Envoy's outlier detection (outlier_detection_impl.cc) against what that file
 * does: each detector's threshold from both sides, ejection time and its back-off, the
 * max_ejection_percent cap, and unejection only on the interval timer. A hand-driven clock.
 */

function clock() {
  let t = 0;
  return { now: () => t, at: (ms: number) => void (t = ms) };
}

const RENDERED = outlierDetectionOf(outlierDetection({ consecutiveFailures: 5, cooldown: "10s" }));

function detector(config: Partial<OutlierDetectionConfig> = {}, hosts = ["a"]) {
  const c = clock();
  const d = new OutlierDetector({ ...RENDERED, ...config }, hosts, c.now);
  return { d, ...c };
}

describe("outlier_detection as render.ts writes it", () => {
  it("reads the rendered cluster's values", () => {
    expect(outlierDetectionOf(outlierDetection({ consecutiveFailures: 3, cooldown: "45s" }))).toEqual({
      intervalMs: 5_000,
      baseEjectionTimeMs: 45_000,
      maxEjectionTimeMs: 300_000,
      maxEjectionPercent: 100,
      alwaysEjectOneHost: false,
      consecutive5xx: 3,
      consecutiveGatewayFailure: 3,
      consecutiveLocalOriginFailure: 3,
      splitExternalLocalOriginErrors: true,
      enforcingConsecutive5xx: 100,
      enforcingConsecutiveGatewayFailure: 100,
      enforcingConsecutiveLocalOriginFailure: 100,
    });
  });

  it("fills Envoy's defaults (gateway failures detected but not enforced, 10% ejectable)", () => {
    expect(outlierDetectionOf({})).toMatchObject({
      intervalMs: 10_000,
      baseEjectionTimeMs: 30_000,
      maxEjectionTimeMs: 300_000,
      maxEjectionPercent: 10,
      consecutive5xx: 5,
      consecutiveGatewayFailure: 5,
      consecutiveLocalOriginFailure: 5,
      splitExternalLocalOriginErrors: false,
      enforcingConsecutive5xx: 100,
      enforcingConsecutiveGatewayFailure: 0,
    });
    expect(outlierDetectionOf({ base_ejection_time: "400s" }).maxEjectionTimeMs).toBe(400_000);
  });

  it("refuses what Envoy refuses and what the model does not run", () => {
    expect(() => outlierDetectionOf({ base_ejection_time: "30s", max_ejection_time: "20s" })).toThrow(
      /max_ejection_time cannot be smaller/,
    );
    expect(() => outlierDetectionOf({ enforcing_consecutive_5xx: 50 })).toThrow(/50% is not modelled/);
    expect(() => outlierDetectionOf({ success_rate_stdev_factor: 1900 })).toThrow(/not modelled/);
    expect(() => outlierDetectionOf({ enforcing_failure_percentage: 100 })).toThrow(/failure percentage/);
    expect(() => outlierDetectionOf({ max_ejection_time_jitter: "1s" })).toThrow(/jitter/);
  });
});

describe("consecutive_5xx", () => {
  it("ejects on the 5th 5xx in a row, not the 4th; a non-5xx starts the count again", () => {
    const { d } = detector({ consecutiveGatewayFailure: 100 });
    for (let i = 0; i < 4; i++) d.httpStatus("a", 500);
    expect(d.isEjected("a")).toBe(false);
    d.httpStatus("a", 200);
    for (let i = 0; i < 4; i++) d.httpStatus("a", 500);
    expect(d.isEjected("a")).toBe(false);
    d.httpStatus("a", 500);
    expect(d.isEjected("a")).toBe(true);
    expect(d.available()).toEqual([]);
    expect(d.events.at(-1)).toEqual({
      host: "a",
      action: "eject",
      kind: "consecutive_5xx",
      outcome: "ejected",
    });
  });

  it("4xx answers are successes to it", () => {
    const { d } = detector({ consecutiveGatewayFailure: 100 });
    for (let i = 0; i < 4; i++) d.httpStatus("a", 500);
    d.httpStatus("a", 429);
    d.httpStatus("a", 500);
    expect(d.isEjected("a")).toBe(false);
  });

  it("an ejected host is not ejected again by failures of requests already in flight", () => {
    const { d } = detector({ consecutive5xx: 2, consecutiveGatewayFailure: 100 });
    d.httpStatus("a", 500);
    d.httpStatus("a", 500);
    for (let i = 0; i < 6; i++) d.httpStatus("a", 500);
    expect(d.numEjections("a")).toBe(1);
  });
});

describe("consecutive_gateway_failure", () => {
  it("counts 502, 503 and 504 only; another 5xx starts it again (while consecutive_5xx keeps counting)", () => {
    const { d } = detector({ consecutive5xx: 100, consecutiveGatewayFailure: 3 });
    d.httpStatus("a", 502);
    d.httpStatus("a", 503);
    d.httpStatus("a", 500);
    d.httpStatus("a", 504);
    d.httpStatus("a", 502);
    expect(d.isEjected("a")).toBe(false);
    d.httpStatus("a", 503);
    expect(d.isEjected("a")).toBe(true);
    expect(d.events.at(-1)?.kind).toBe("consecutive_gateway_failure");
  });

  it("is detected but not enforced at Envoy's default enforcing_consecutive_gateway_failure (0)", () => {
    const defaults = outlierDetectionOf({
      consecutive_5xx: 100,
      consecutive_gateway_failure: 2,
      max_ejection_percent: 100,
    });
    const { d } = detector(defaults);
    d.httpStatus("a", 503);
    d.httpStatus("a", 503);
    expect(d.isEjected("a")).toBe(false);
    expect(d.events).toEqual([
      { host: "a", action: "eject", kind: "consecutive_gateway_failure", outcome: "not_enforced" },
    ]);
  });
});

describe("consecutive_local_origin_failure (split_external_local_origin_errors)", () => {
  it("ejects on the 5th connect failure in a row; a connection made starts the count again", () => {
    const { d } = detector();
    for (let i = 0; i < 4; i++) d.localOriginFailure("a");
    d.connectSuccess("a");
    for (let i = 0; i < 4; i++) d.localOriginFailure("a");
    expect(d.isEjected("a")).toBe(false);
    d.localOriginFailure("a");
    expect(d.isEjected("a")).toBe(true);
    expect(d.events.at(-1)?.kind).toBe("consecutive_local_origin_failure");
  });

  it("split: connect failures and 5xx answers are counted apart", () => {
    const { d } = detector();
    for (let i = 0; i < 4; i++) d.localOriginFailure("a");
    for (let i = 0; i < 4; i++) d.httpStatus("a", 503);
    expect(d.isEjected("a")).toBe(false);
  });

  it("not split: a connect failure is a 503 and a timeout a 504 to the 5xx and gateway counters", () => {
    const { d } = detector({
      splitExternalLocalOriginErrors: false,
      consecutive5xx: 100,
      consecutiveGatewayFailure: 4,
    });
    d.httpStatus("a", 502);
    d.localOriginFailure("a");
    d.localOriginFailure("a", "timeout");
    expect(d.isEjected("a")).toBe(false);
    d.localOriginFailure("a");
    expect(d.isEjected("a")).toBe(true);
    expect(d.events.at(-1)?.kind).toBe("consecutive_gateway_failure");
  });
});

describe("ejection time and unejection", () => {
  function ejectNow(d: OutlierDetector, host = "a") {
    for (let i = 0; i < 5; i++) d.localOriginFailure(host);
    expect(d.isEjected(host)).toBe(true);
  }

  it("a host comes back on the first interval tick at or after base_ejection_time, not before", () => {
    const { d, at } = detector();
    ejectNow(d);
    at(9_999);
    d.tick();
    expect(d.isEjected("a")).toBe(true);
    at(10_000);
    d.tick();
    expect(d.isEjected("a")).toBe(false);
    expect(d.events.at(-1)).toEqual({ host: "a", action: "uneject" });
  });

  it("no tick, no unejection: the time passing alone does not bring it back", () => {
    const { d, at } = detector();
    ejectNow(d);
    at(60_000);
    expect(d.isEjected("a")).toBe(true);
    expect(d.available()).toEqual([]);
  });

  it("unejection clears the counters: one more failure does not eject again", () => {
    const { d, at } = detector();
    for (let i = 0; i < 4; i++) d.httpStatus("a", 500);
    ejectNow(d);
    at(10_000);
    d.tick();
    d.httpStatus("a", 500);
    d.localOriginFailure("a");
    expect(d.isEjected("a")).toBe(false);
  });

  it("ejected again at once: base x 2; the back-off is capped by max_ejection_time", () => {
    const { d, at } = detector({ maxEjectionTimeMs: 25_000 });
    ejectNow(d);
    at(10_000);
    d.tick();
    ejectNow(d); // at 10 s, second ejection: 20 s
    at(29_999);
    d.tick();
    expect(d.isEjected("a")).toBe(true);
    at(30_000);
    d.tick();
    expect(d.isEjected("a")).toBe(false);
    ejectNow(d); // at 30 s, third: min(30 s, 25 s)
    at(54_999);
    d.tick();
    expect(d.isEjected("a")).toBe(true);
    at(55_000);
    d.tick();
    expect(d.isEjected("a")).toBe(false);
    expect(d.numEjections("a")).toBe(3);
  });

  it("the back-off falls by one each interval tick a host stays in, from an interval after its return", () => {
    const { d, at } = detector();
    ejectNow(d);
    at(10_000);
    d.tick();
    ejectNow(d); // back-off 2
    at(30_000);
    d.tick(); // back at 30 s
    at(34_999);
    d.tick(); // less than an interval since: back-off stays 2
    at(35_000);
    d.tick(); // back-off 1
    ejectNow(d); // ejected at 35 s for 2 x base (back-off 1, raised to 2 by this ejection)
    at(54_999);
    d.tick();
    expect(d.isEjected("a")).toBe(true);
    at(55_000);
    d.tick();
    expect(d.isEjected("a")).toBe(false);
    at(60_000);
    d.tick(); // back-off 1
    at(65_000);
    d.tick(); // back-off 0
    ejectNow(d); // ejected at 65 s for 1 x base
    at(75_000);
    d.tick();
    expect(d.isEjected("a")).toBe(false);
  });
});

describe("max_ejection_percent", () => {
  function fail(d: OutlierDetector, host: string) {
    for (let i = 0; i < 5; i++) d.localOriginFailure(host);
  }

  it("50% of two hosts: the first is ejected, the second is not (ejections_overflow)", () => {
    const { d } = detector({ maxEjectionPercent: 50 }, ["a", "b"]);
    fail(d, "a");
    fail(d, "b");
    expect(d.isEjected("a")).toBe(true);
    expect(d.isEjected("b")).toBe(false);
    expect(d.events.at(-1)).toMatchObject({ host: "b", outcome: "overflow" });
    expect(d.available()).toEqual(["b"]);
  });

  it("the check counts the host being ejected: 50% of three hosts ejects one (33%), not two (67%)", () => {
    const { d } = detector({ maxEjectionPercent: 50 }, ["a", "b", "c"]);
    fail(d, "a");
    fail(d, "b");
    expect([d.isEjected("a"), d.isEjected("b")]).toEqual([true, false]);
    const four = detector({ maxEjectionPercent: 50 }, ["a", "b", "c", "d"]);
    fail(four.d, "a");
    fail(four.d, "b");
    expect([four.d.isEjected("a"), four.d.isEjected("b")]).toEqual([true, true]);
  });

  it("a percentage below one host ejects none, despite the old docs' 'at least one host'", () => {
    const { d } = detector({ maxEjectionPercent: 10 }, ["a", "b", "c"]);
    fail(d, "a");
    expect(d.isEjected("a")).toBe(false);
    expect(d.events).toEqual([
      { host: "a", action: "eject", kind: "consecutive_local_origin_failure", outcome: "overflow" },
    ]);
    const one = detector({ maxEjectionPercent: 99 }, ["a"]);
    fail(one.d, "a");
    expect(one.d.isEjected("a")).toBe(false);
  });

  it("always_eject_one_host: one host goes even below the percentage, a second does not", () => {
    const { d } = detector({ maxEjectionPercent: 10, alwaysEjectOneHost: true }, ["a", "b", "c"]);
    fail(d, "a");
    fail(d, "b");
    expect([d.isEjected("a"), d.isEjected("b")]).toEqual([true, false]);
  });

  it("100% (as rendered): every host may go, leaving none to pick", () => {
    const { d } = detector({}, ["a", "b"]);
    fail(d, "a");
    fail(d, "b");
    expect(d.available()).toEqual([]);
  });

  it("an overflowed detection starts its count again: the host is not ejected on the next failure", () => {
    const { d, at } = detector({ maxEjectionPercent: 50 }, ["a", "b"]);
    fail(d, "a");
    fail(d, "b");
    at(10_000);
    d.tick(); // a is back
    d.localOriginFailure("b");
    expect(d.isEjected("b")).toBe(false);
    for (let i = 0; i < 4; i++) d.localOriginFailure("b");
    expect(d.isEjected("b")).toBe(true);
  });
});

describe("Envoy-role front: each MCP server's cluster runs the rendered outlier detection", () => {
  let gw: Gateway;
  let failing: Server;
  let status = 500;
  let front: EnvoyRoleFront;
  const traces: ExchangeTrace[] = [];

  beforeAll(async () => {
    gw = await startGateway();
    failing = createServer((req, res) => {
      // Status 0: the connection is dropped once the request has come (accepted, then closed).
      if (status === 0) return void req.socket.destroy();
      req.resume();
      req.on("end", () => res.writeHead(status, { "content-type": "text/plain" }).end("server error"));
    });
    failing.listen(0, "127.0.0.1");
    await once(failing, "listening");
    const port = (failing.address() as AddressInfo).port;
    front = await startEnvoyRoleFront({
      extService: gw.service.grpcAddress,
      // tickets answers what `status` says; kb's port refuses connections.
      upstreams: { tickets: `http://127.0.0.1:${port}/mcp`, kb: "http://127.0.0.1:1/mcp" },
      // The rendered values (5 failures, 10 s cooldown) but a short interval and base time.
      outlier: { intervalMs: 50, baseEjectionTimeMs: 1000 },
      onExchange: (trace) => traces.push(trace),
    });
  });
  afterAll(async () => {
    await front?.close();
    failing?.close();
    await gw?.close();
  });

  const tokens = new Map<string, string>();
  async function post(server: string, agent: string) {
    if (!tokens.has(agent)) tokens.set(agent, await gw.token(agent));
    const res = await fetch(`${front.url}/mcp/${server}`, {
      method: "POST",
      headers: { ...MCP_POST_HEADERS, authorization: `Bearer ${tokens.get(agent)!}` },
      body: JSON.stringify({
        jsonrpc: "2.0",
        id: 1,
        method: "initialize",
        params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "t", version: "0" } },
      }),
    });
    const text = await res.text();
    return { status: res.status, text, trace: traces.at(-1)! };
  }

  it("5xx answers: the 5th ejects the host; then 503 no_healthy_upstream (UH), breaker_open; back after the ejection time", async () => {
    status = 500;
    for (let i = 0; i < 5; i++) {
      const r = await post("tickets", "support-bot");
      expect(r.status).toBe(500);
      expect(r.trace.answeredBy).toBe("upstream");
    }
    const open = await post("tickets", "support-bot");
    expect(open.status).toBe(503);
    expect(open.trace.flags).toContain("UH");
    expect(open.trace.details).toBe("no_healthy_upstream");
    expect(JSON.parse(open.text)).toMatchObject({
      jsonrpc: "2.0",
      id: null,
      error: {
        code: -32050,
        message: "The MCP server is failing; requests are paused briefly",
        data: { reason: "breaker_open" },
      },
    });
    const ejectedAt = performance.now();
    expect(front.outlier("tickets")!.available()).toEqual([]);
    status = 200;
    // Not before the base ejection time (1 s)...
    const early = await post("tickets", "support-bot");
    if (performance.now() - ejectedAt < 900) expect(early.trace.flags).toContain("UH");
    // ...and on the interval tick after it.
    await new Promise((r) => setTimeout(r, 1100));
    const back = await post("tickets", "support-bot");
    expect(back.trace.answeredBy).toBe("upstream");
    expect(back.trace.flags).not.toContain("UH");
  });

  it("connections accepted then dropped: 503 UC, upstream_unavailable, never an ejection (each counts a connect success first)", async () => {
    status = 0;
    try {
      for (let i = 0; i < 8; i++) {
        const r = await post("tickets", "support-bot");
        expect(r.status).toBe(503);
        expect(r.trace.flags).toEqual(["UC"]);
        expect(r.trace.details).toBe("upstream_reset_before_response_started{connection_termination}");
        expect(JSON.parse(r.text)).toMatchObject({ error: { data: { reason: "upstream_unavailable" } } });
      }
      expect(front.outlier("tickets")!.available()).toHaveLength(1);
    } finally {
      status = 200;
    }
  });

  it("connection refused: 503 UF with 1.3x's details, upstream_unavailable; the 5th ejects (UH, breaker_open)", async () => {
    const refused = await post("kb", "research-bot");
    expect(refused.status).toBe(503);
    expect(refused.trace.flags).toEqual(["UF"]);
    expect(refused.trace.details).toBe(
      "upstream_reset_before_response_started{remote_connection_failure|delayed_connect_error:_Connection_refused}",
    );
    expect(JSON.parse(refused.text)).toMatchObject({ error: { data: { reason: "upstream_unavailable" } } });
    for (let i = 0; i < 4; i++) await post("kb", "research-bot");
    const open = await post("kb", "research-bot");
    expect(open.trace.flags).toEqual(["UH"]);
    expect(JSON.parse(open.text)).toMatchObject({ error: { data: { reason: "breaker_open" } } });
  });
});
