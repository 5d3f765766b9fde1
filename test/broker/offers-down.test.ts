import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  Client as ClientV2,
  StreamableHTTPClientTransport as TransportV2,
} from "@modelcontextprotocol/client";
import { startKbServer } from "../../examples/servers/index.js";
import type { RunningServer } from "../../examples/servers/http.js";
import { startEnvoyRoleFront, type EnvoyRoleFront } from "../../ext-service/src/envoy/envoy-role-front.js";
import { startGateway, unusedPort, type Gateway } from "../e2e/harness.js";
import { cuttableProxy, registryServer } from "./support.js";

/**
 * A 2025 session's completions and logging are fixed at initialize (sealed into its id; 2025 has
 * no notification of a change of capabilities). A server of the view that is down at initialize
 * counts with what it offered when a hop last reached it: the session is told of its completions,
 * and they work once it answers again. Before, a server down at initialize counted as offering
 * nothing, for the whole session.
 */
describe.each(["edge", "envoy"] as const)(
  "capabilities of a server down at initialize, %s plane",
  (plane) => {
    let kb: RunningServer;
    let proxy: Awaited<ReturnType<typeof cuttableProxy>>;
    let gw: Gateway;
    let front: EnvoyRoleFront | undefined;
    beforeAll(async () => {
      kb = await startKbServer(await unusedPort());
      proxy = await cuttableProxy(Number(new URL(kb.url).port));
      gw = await startGateway({
        servers: [registryServer("kb", `${proxy.url}/mcp`)],
        security: { pins: { listTimeout: "10s" } },
      });
      if (plane === "envoy")
        front = await startEnvoyRoleFront({
          extService: { engine: gw.engine, logger: gw.log.logger, metrics: gw.metrics },
        });
    });
    afterAll(async () => {
      proxy?.resume();
      await front?.close();
      await gw?.close();
      await proxy?.close();
      await kb?.close();
    });

    /** A 2025 session of `sdk` on /mcp: its capabilities, and completion of kb's prompt. */
    async function session(sdk: "1.x" | "2.x") {
      const url = new URL(`${front?.url ?? gw.edge.url}/mcp`);
      const requestInit = { headers: { authorization: `Bearer ${await gw.token("tester")}` } };
      const complete = {
        ref: { type: "ref/prompt" as const, name: "kb__answer_from_kb" },
        argument: { name: "question", value: "ref" },
      };
      if (sdk === "1.x") {
        const client = new Client({ name: "v1", version: "1.0.0" });
        await client.connect(new StreamableHTTPClientTransport(url, { requestInit }));
        return {
          capabilities: client.getServerCapabilities() ?? {},
          complete: async () => (await client.complete(complete)).completion.values,
          close: () => client.close(),
        };
      }
      const client = new ClientV2({ name: "v2", version: "1.0.0" });
      await client.connect(new TransportV2(url, { requestInit }));
      return {
        capabilities: client.getServerCapabilities() ?? {},
        complete: async () => (await client.complete(complete)).completion.values,
        close: () => client.close(),
      };
    }

    for (const sdk of ["1.x", "2.x"] as const) {
      it(`${sdk}: a session opened while kb is down is told of kb's completions, which work once kb is back`, async () => {
        // kb answered once: its capabilities are known.
        const first = await session(sdk);
        expect(first.capabilities).toHaveProperty("completions");
        await first.close();
        proxy.cut();
        let down: Awaited<ReturnType<typeof session>> | undefined;
        try {
          down = await session(sdk);
        } finally {
          proxy.resume();
        }
        try {
          expect(down.capabilities).toHaveProperty("completions");
          expect(await down.complete()).toEqual(["Refund policy"]);
        } finally {
          await down.close();
        }
      });
    }
  },
);
