import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  Client as ClientV2,
  StreamableHTTPClientTransport as TransportV2,
} from "@modelcontextprotocol/client";
import { McpServer } from "@modelcontextprotocol/server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { serveBothEras } from "../../examples/servers/dual-era.js";
import type { RunningServer } from "../../examples/servers/http.js";
import { startEnvoyRoleFront, type EnvoyRoleFront } from "../../ext-service/src/envoy/envoy-role-front.js";
import { httpCall, startGateway, type Gateway } from "../e2e/harness.js";
import { connect2025, type Sdk2025 } from "./support.js";

/**
 * Another agent's /mcp session id, presented by an SDK client with its own (valid) token: every
 * request of it (POST, the GET stream, DELETE) reads as an unknown session, 404 session_unknown,
 * and nothing it gets back names the first agent's session or what it holds; the first agent's
 * session keeps working, its DELETE not taken. Envoy plane (the ext-service's broker behind the
 * front), and the edge for comparison; SDK 1.x and 2.x.
 */

interface Answered {
  method: string;
  status: number;
  body: string;
}

/** An SDK client of `sdk` attached to `sessionId` with `token`, recording every answer it gets. */
async function attach(sdk: Sdk2025, url: string, token: string, sessionId: string, protocolVersion: string) {
  const answered: Answered[] = [];
  const fetching = async (input: string | URL | Request, init?: RequestInit) => {
    const res = await fetch(input, init);
    answered.push({ method: init?.method ?? "GET", status: res.status, body: await res.clone().text() });
    return res;
  };
  const init = {
    sessionId,
    requestInit: { headers: { authorization: `Bearer ${token}` } },
    fetch: fetching,
  };
  if (sdk === "1.x") {
    const client = new Client({ name: "intruder", version: "1.0.0" });
    client.onerror = () => undefined;
    const transport = new StreamableHTTPClientTransport(new URL(url), init);
    transport.setProtocolVersion(protocolVersion);
    await client.connect(transport);
    return {
      answered,
      listTools: () => client.listTools(),
      callTool: () => client.callTool({ name: "vault__secret", arguments: {} }),
      terminate: () => transport.terminateSession(),
      close: () => client.close(),
    };
  }
  const client = new ClientV2({ name: "intruder", version: "1.0.0" });
  client.onerror = () => undefined;
  const transport = new TransportV2(new URL(url), init);
  transport.setProtocolVersion(protocolVersion);
  await client.connect(transport);
  return {
    answered,
    // Attached without initialize, the client knows no capability of the server and would answer
    // listTools() itself: the request is sent as it is.
    listTools: () => client.request({ method: "tools/list", params: {} } as never),
    callTool: () => client.callTool({ name: "vault__secret", arguments: {} }),
    terminate: () => transport.terminateSession(),
    close: () => client.close(),
  };
}

describe.each(["envoy", "edge"] as const)("aggregated endpoint, %s plane: a foreign session id", (plane) => {
  let upstream: RunningServer;
  let gw: Gateway;
  let front: EnvoyRoleFront | undefined;
  beforeAll(async () => {
    upstream = await serveBothEras(() => {
      const server = new McpServer({ name: "vault", version: "1.0.0" });
      server.registerTool(
        "secret",
        { description: "The owner's secret.", inputSchema: z.object({}) },
        () => ({
          content: [{ type: "text", text: "secret-of-the-owner" }],
        }),
      );
      return server;
    }, 0);
    gw = await startGateway({
      servers: [{ name: "vault", upstreams: [upstream.url], tools: [{ name: "secret" }] }],
      security: { pins: { enforce: false, verifyBeforeCall: false } },
      agents: { tester: { roles: ["all"] }, other: { roles: ["all"] } },
    });
    if (plane === "envoy")
      front = await startEnvoyRoleFront({
        extService: { engine: gw.engine, logger: gw.log.logger, metrics: gw.metrics },
      });
  });
  afterAll(async () => {
    await front?.close();
    await gw?.close();
    await upstream?.close();
  });
  const url = () => `${front?.url ?? gw.edge.url}/mcp`;

  it.each(["1.x", "2.x"] as const)("SDK %s client with another agent's session id", async (sdk) => {
    const owner = await connect2025(sdk, url(), await gw.token("tester"));
    const secret = { content: [{ type: "text", text: "secret-of-the-owner" }] };
    expect(await owner.call("vault__secret")).toMatchObject(secret);
    const intruder = await attach(
      sdk,
      url(),
      await gw.token("other"),
      owner.sessionId,
      owner.protocolVersion,
    );
    try {
      await expect(intruder.listTools()).rejects.toThrow();
      await expect(intruder.callTool()).rejects.toThrow();
      await intruder.terminate().catch(() => undefined);
      // The session's GET stream, where the owner's notifications come: not opened for it either.
      const stream = await httpCall(url(), {
        method: "GET",
        headers: {
          accept: "text/event-stream",
          authorization: `Bearer ${await gw.token("other")}`,
          "mcp-session-id": owner.sessionId,
          "mcp-protocol-version": owner.protocolVersion,
        },
      });
      intruder.answered.push({ method: "GET", status: stream.status, body: stream.text });
      // Every answer it got: the unknown session, naming nothing of the owner's.
      expect(intruder.answered.length).toBeGreaterThanOrEqual(4);
      for (const a of intruder.answered) {
        expect(a.status, `${a.method} ${a.body}`).toBe(404);
        expect(JSON.parse(a.body)).toMatchObject({ error: { data: { reason: "session_unknown" } } });
        for (const leak of ["secret", "tester", owner.sessionId]) expect(a.body).not.toContain(leak);
      }
      // The owner's session is untouched: its DELETE was not taken, its calls still work.
      expect(await owner.call("vault__secret")).toMatchObject(secret);
      expect(await owner.tools()).toEqual(["vault__secret"]);
    } finally {
      await Promise.allSettled([intruder.close(), owner.close()]);
    }
  });
});
