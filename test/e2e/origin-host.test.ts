import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEnvoyRoleFront, type EnvoyRoleFront } from "../../ext-service/src/envoy/envoy-role-front.js";
import { RequestOrigins, hostnameOf, isLoopbackAddress } from "../../ext-service/src/policy/origins.js";
import { MCP_HEADERS, httpCall, rpc, startDemoGateway, type DemoGateway } from "./harness.js";

/**
 * security review F11: no Origin or Host validation. A web page on a foreign origin, or one whose
 * DNS name was rebound to 127.0.0.1, must be refused with 403 before anything else (even
 * before the token is read), on both planes; the agents' own requests pass.
 */

const initialize = rpc("initialize", {
  protocolVersion: "2025-11-25",
  capabilities: {},
  clientInfo: { name: "origin-test", version: "1.0.0" },
});

describe("security review F11: Origin and Host validation, both planes", () => {
  let gw: DemoGateway;
  let front: EnvoyRoleFront;
  beforeAll(async () => {
    gw = await startDemoGateway();
    front = await startEnvoyRoleFront({
      extService: { engine: gw.dev.engine, logger: gw.log.logger, metrics: gw.metrics },
    });
  });
  afterAll(async () => {
    await front?.close();
    await gw?.close();
  });

  const planes = () =>
    [
      ["edge", gw.dev.urls.kb!],
      ["envoy", `${front.url}/mcp/kb`],
    ] as const;

  it("refuses a rebound Host with 403 before authentication, and accepts loopback names", async () => {
    for (const [plane, url] of planes()) {
      const port = new URL(url).port;
      const rebound = await httpCall(url, {
        headers: { ...MCP_HEADERS, host: "evil.example.com" },
        body: initialize,
      });
      expect(rebound.status, plane).toBe(403);
      expect(rebound.messages[0], plane).toMatchObject({ error: { data: { reason: "host_forbidden" } } });
      for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, "localhost"]) {
        const ok = await httpCall(url, {
          headers: { ...MCP_HEADERS, host, authorization: `Bearer ${gw.token("research-bot")}` },
          body: initialize,
        });
        expect(ok.status, `${plane} ${host}`).toBe(200);
      }
    }
  });

  it("refuses a foreign Origin with 403 origin_forbidden, token or not; publicUrl's origin passes", async () => {
    for (const [plane, url] of planes()) {
      const withToken: Record<string, string>[] = [
        {},
        { authorization: `Bearer ${gw.token("research-bot")}` },
      ];
      for (const headers of withToken) {
        const r = await httpCall(url, {
          headers: { ...MCP_HEADERS, ...headers, origin: "http://attacker.example" },
          body: initialize,
        });
        expect(r.status, plane).toBe(403);
        expect(r.messages[0], plane).toMatchObject({ error: { data: { reason: "origin_forbidden" } } });
      }
      const own = await httpCall(url, {
        headers: {
          ...MCP_HEADERS,
          origin: gw.dev.engine.config.publicUrl.replace(/\/$/, ""), // the dev edge's own origin
          authorization: `Bearer ${gw.token("research-bot")}`,
        },
        body: initialize,
      });
      expect(own.status, plane).toBe(200);
    }
    expect(gw.log.audits.some((a) => a.plane === "envoy" && a.reasons.includes("origin_forbidden"))).toBe(
      true,
    );
    expect(gw.log.audits.some((a) => a.plane === "edge" && a.reasons.includes("host_forbidden"))).toBe(true);
  });
});

describe("RequestOrigins", () => {
  const origins = new RequestOrigins({
    publicUrl: "https://gw.example.com/",
    allowedOrigins: ["https://App.Example.com:443", "null"],
    allowedHosts: ["gw.internal:8080"],
  });

  it("accepts publicUrl's origin and the listed ones, in the form browsers send them", () => {
    expect(origins.check("https://gw.example.com", undefined, undefined)).toBeUndefined();
    expect(origins.check("https://app.example.com", undefined, undefined)).toBeUndefined();
    expect(origins.check("null", undefined, undefined)).toBeUndefined();
    expect(origins.check("http://gw.example.com", undefined, undefined)).toBe("origin_forbidden");
    expect(origins.check("https://gw.example.com.evil.io", undefined, undefined)).toBe("origin_forbidden");
    expect(origins.check("not a url", undefined, undefined)).toBe("origin_forbidden");
  });

  it("checks Host only on a loopback address", () => {
    for (const local of ["127.0.0.1", "::1", "::ffff:127.0.0.1", "127.3.4.5"]) {
      expect(origins.check(undefined, "evil.example.com", local), local).toBe("host_forbidden");
      for (const host of [
        "localhost:9",
        "127.0.0.1",
        "[::1]:8080",
        "gw.example.com",
        "GW.internal:1",
        "127.9.9.9",
      ])
        expect(origins.check(undefined, host, local), `${local} ${host}`).toBeUndefined();
    }
    expect(origins.check(undefined, "evil.example.com", "10.1.2.3")).toBeUndefined();
    expect(origins.check(undefined, "a b", "127.0.0.1")).toBe("host_forbidden");
  });

  it("parses Host values and loopback addresses", () => {
    expect(hostnameOf("[::1]:80")).toBe("[::1]");
    expect(hostnameOf("Example.COM:8080")).toBe("example.com");
    expect(hostnameOf("evil.com@127.0.0.1")).toBeUndefined();
    expect(isLoopbackAddress("192.168.1.1")).toBe(false);
    expect(isLoopbackAddress("::")).toBe(false);
  });
});
