import { McpServer } from "@modelcontextprotocol/server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { serveBothEras } from "../../examples/servers/dual-era.js";
import type { RunningServer } from "../../examples/servers/http.js";
import { startEnvoyRoleFront, type EnvoyRoleFront } from "../../ext-service/src/envoy/envoy-role-front.js";
import { startGateway, type Gateway } from "../e2e/harness.js";
import { connect2025, connectModern } from "./support.js";

/**
 * Progress of concurrent calls in one client session through the aggregated endpoint. Each call
 * rides a hop client of its own, and each hop's SDK client numbers its requests from 0; the
 * broker gives the server a progress token of the hop's own (hops.ts), so no two requests in
 * flight on the server share one (the spec's rule), and maps the server's progress back to the
 * hop's number, so each call's progress reaches that call with the client's own token. The
 * server (both eras, v2 SDK) holds the calls of a batch until all have arrived, so they are in
 * flight together, and records the tokens it saw; each call also sends progress naming another
 * call's token, which no client must receive. Both planes; SDK 1.x and 2.x clients in a 2025
 * session, and the 2.x client pinned to 2026-07-28.
 */

const TOGETHER = 4;
const STEPS = 3;

/** A batch of calls the server holds until all have arrived, and the tokens they carried. */
interface Batch {
  tokens: unknown[];
  release: () => void;
  arrived: Promise<void>;
}

function progressServer(batches: Map<string, Batch>): () => McpServer {
  const batchOf = (name: string): Batch => {
    let batch = batches.get(name);
    if (!batch) {
      let release = () => {};
      const arrived = new Promise<void>((resolve) => (release = resolve));
      batches.set(name, (batch = { tokens: [], release, arrived }));
    }
    return batch;
  };
  return () => {
    const server = new McpServer({ name: "progress", version: "1.0.0" });
    server.registerTool(
      "work",
      {
        description: "Reports progress tagged with its argument once the whole batch has arrived.",
        inputSchema: z.object({ batch: z.string(), tag: z.string() }),
      },
      async ({ batch, tag }, ctx) => {
        const token = ctx.mcpReq._meta?.progressToken;
        const held = batchOf(batch);
        held.tokens.push(token);
        if (held.tokens.length === TOGETHER) held.release();
        // Not forever: a call left alone still ends, and the test then fails on what it saw.
        await Promise.race([held.arrived, new Promise((r) => setTimeout(r, 10_000))]);
        // First, progress naming another call's token, on this call's stream (a confused
        // server): a hop relays progress only for the tokens it gave.
        const other = held.tokens[(held.tokens.indexOf(token) + 1) % held.tokens.length];
        if (other !== undefined && other !== token)
          await ctx.mcpReq.notify({
            method: "notifications/progress",
            params: { progressToken: other as string | number, progress: 99, message: "not yours" },
          });
        for (let step = 1; step <= STEPS; step++) {
          await new Promise((r) => setTimeout(r, 20));
          if (token !== undefined)
            await ctx.mcpReq.notify({
              method: "notifications/progress",
              params: { progressToken: token, progress: step, total: STEPS, message: `${tag} step ${step}` },
            });
        }
        return { content: [{ type: "text", text: `done ${tag}` }] };
      },
    );
    return server;
  };
}

type Progress = { progress: number; total?: number; message?: string };
type Caller = (tag: string, batch: string, onprogress: (p: Progress) => void) => Promise<unknown>;

describe.each(["edge", "envoy"] as const)(
  "aggregated endpoint, %s plane: progress of concurrent calls",
  (plane) => {
    const batches = new Map<string, Batch>();
    let upstream: RunningServer;
    let gw: Gateway;
    let front: EnvoyRoleFront | undefined;
    beforeAll(async () => {
      upstream = await serveBothEras(progressServer(batches), 0);
      gw = await startGateway({
        servers: [{ name: "slow", upstreams: [upstream.url], tools: [{ name: "work" }] }],
        security: { pins: { enforce: false, verifyBeforeCall: false } },
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

    /** Four calls at once from one client; each gets only its own progress, the server distinct tokens. */
    async function concurrently(batch: string, call: Caller): Promise<void> {
      const tags = Array.from({ length: TOGETHER }, (_, i) => `${batch}-${i}`);
      const seen = new Map<string, Progress[]>(tags.map((t) => [t, []]));
      const results = await Promise.all(tags.map((tag) => call(tag, batch, (p) => seen.get(tag)!.push(p))));
      expect(results.map((r) => (r as { content: unknown }).content)).toEqual(
        tags.map((tag) => [{ type: "text", text: `done ${tag}` }]),
      );
      const tokens = batches.get(batch)?.tokens ?? [];
      expect(tokens).toHaveLength(TOGETHER);
      expect(new Set(tokens).size).toBe(TOGETHER);
      for (const tag of tags)
        expect(seen.get(tag)).toEqual(
          Array.from({ length: STEPS }, (_, i) => ({
            progress: i + 1,
            total: STEPS,
            message: `${tag} step ${i + 1}`,
          })),
        );
    }

    it.each(["1.x", "2.x"] as const)("SDK %s client in a 2025 session", async (sdk) => {
      const client = await connect2025(sdk, url(), await gw.token("tester"));
      try {
        expect(await client.tools()).toContain("slow__work");
        await concurrently(`${plane}-${sdk}-2025`, (tag, batch, onprogress) =>
          client.call("slow__work", { batch, tag }, { timeout: 20_000, onprogress }),
        );
      } finally {
        await client.close();
      }
    });

    it("SDK 2.x client pinned to 2026-07-28", async () => {
      const client = await connectModern(url(), await gw.token("tester"));
      try {
        await concurrently(`${plane}-2026`, (tag, batch, onprogress) =>
          client.callTool({ name: "slow__work", arguments: { batch, tag } }, { timeout: 20_000, onprogress }),
        );
      } finally {
        await client.close();
      }
    });
  },
);
