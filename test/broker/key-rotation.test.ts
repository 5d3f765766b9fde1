import { readFileSync, writeFileSync } from "node:fs";
import { McpServer } from "@modelcontextprotocol/server";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { parse, stringify } from "yaml";
import { z } from "zod";
import { serveBothEras } from "../../examples/servers/dual-era.js";
import type { RunningServer } from "../../examples/servers/http.js";
import { reloadConfig } from "../../ext-service/src/commands/reload.js";
import { startEnvoyRoleFront, type EnvoyRoleFront } from "../../ext-service/src/envoy/envoy-role-front.js";
import { httpCall, MCP_HEADERS, rpc, startGateway, type Gateway } from "../e2e/harness.js";
import { connect2025 } from "./support.js";

/**
 * Rotating `sessions.keys` under live /mcp sessions, by config reload (the SIGHUP path), on both
 * planes with SDK 1.x and 2.x clients: from [OLD] to [NEW, OLD] a session sealed under OLD keeps
 * working (its hop sessions too) and new sessions are sealed under NEW; from there to [NEW] the
 * OLD session reads as unknown (404 session_unknown) while the NEW one keeps working.
 */
const OLD = "MCP_GW_TEST_ROTATION_OLD";
const NEW = "MCP_GW_TEST_ROTATION_NEW";

describe.each(["edge", "envoy"] as const)("aggregated endpoint, %s plane: session key rotation", (plane) => {
  let upstream: RunningServer;
  let gw: Gateway;
  let front: EnvoyRoleFront | undefined;
  let original: string;
  beforeAll(async () => {
    process.env[OLD] = "rotation-old-key-0123456789-abcdefghijklmnop";
    process.env[NEW] = "rotation-new-key-0123456789-abcdefghijklmnop";
    upstream = await serveBothEras(() => {
      const server = new McpServer({ name: "ping", version: "1.0.0" });
      server.registerTool("ping", { description: "Answers.", inputSchema: z.object({}) }, () => ({
        content: [{ type: "text", text: "pong" }],
      }));
      return server;
    }, 0);
    gw = await startGateway({
      servers: [{ name: "ping", upstreams: [upstream.url], tools: [{ name: "ping" }] }],
      security: { pins: { enforce: false, verifyBeforeCall: false } },
      sessions: { keys: [{ env: OLD }] },
    });
    original = readFileSync(gw.configFile, "utf8");
    if (plane === "envoy")
      front = await startEnvoyRoleFront({
        extService: { engine: gw.engine, logger: gw.log.logger, metrics: gw.metrics },
      });
  });
  afterEach(() => {
    writeFileSync(gw.configFile, original);
    reload();
  });
  afterAll(async () => {
    await front?.close();
    await gw?.close();
    await upstream?.close();
    delete process.env[OLD];
    delete process.env[NEW];
  });
  const url = () => `${front?.url ?? gw.edge.url}/mcp`;

  /** Reloads gateway.yaml into the plane's policy holder: the edge, or the ext-service behind the front. */
  function reload(): void {
    const result = reloadConfig({
      configFile: gw.configFile,
      target: front?.extService ?? gw.edge,
      logger: gw.log.logger,
      metrics: gw.metrics,
      fixedAtStart: [],
    });
    expect(result.ok).toBe(true);
  }
  function keys(...envs: string[]): void {
    const config = parse(original) as { sessions: { keys: { env: string }[] } };
    config.sessions.keys = envs.map((env) => ({ env }));
    writeFileSync(gw.configFile, stringify(config));
    reload();
  }
  const pong = { content: [{ type: "text", text: "pong" }] };

  it.each(["1.x", "2.x"] as const)("SDK %s client", async (sdk) => {
    const token = await gw.token("tester");
    const old = await connect2025(sdk, url(), token);
    let fresh: Awaited<ReturnType<typeof connect2025>> | undefined;
    try {
      expect(await old.call("ping__ping")).toMatchObject(pong);

      keys(NEW, OLD);
      expect(await old.call("ping__ping")).toMatchObject(pong);
      fresh = await connect2025(sdk, url(), token);
      expect(fresh.sessionId).not.toBe(old.sessionId);
      expect(await fresh.call("ping__ping")).toMatchObject(pong);

      keys(NEW);
      expect(await fresh.call("ping__ping")).toMatchObject(pong);
      const gone = await httpCall(url(), {
        headers: {
          ...MCP_HEADERS,
          authorization: `Bearer ${token}`,
          "mcp-session-id": old.sessionId,
          "mcp-protocol-version": old.protocolVersion,
        },
        body: rpc("tools/call", { name: "ping__ping", arguments: {} }),
      });
      expect(gone.status).toBe(404);
      expect(gone.messages[0]).toMatchObject({ error: { data: { reason: "session_unknown" } } });
      await expect(old.call("ping__ping")).rejects.toThrow();
    } finally {
      await Promise.allSettled([old.close(), fresh?.close()]);
    }
  });
});
