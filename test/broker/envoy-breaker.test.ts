import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { once } from "node:events";
import { createServer, request } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { serveMcp, type RunningServer } from "../../examples/servers/http.js";
import { startKbServer } from "../../examples/servers/kb.js";
import type { ExchangeTrace } from "../../ext-service/src/envoy/envoy-model.js";
import { startEnvoyRoleFront, type EnvoyRoleFront } from "../../ext-service/src/envoy/envoy-role-front.js";
import { startGateway, waitFor, type Gateway } from "../e2e/harness.js";
import { connect2025, connectModern } from "./support.js";

/**
 * An HTTP proxy to `port` that answers every request 503 while `failing`, as a server in trouble
 * does (a server that drops connections it accepted is not ejected by Envoy: each connection
 * counts as made before its reset counts as a failure; outlier.test.ts).
 */
async function failingProxy(
  port: number,
): Promise<{ url: string; failing: boolean; close(): Promise<void> }> {
  const state = {
    url: "",
    failing: false,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
  const server = createServer((req, res) => {
    if (state.failing) {
      req.resume();
      return void req.on("end", () => res.writeHead(503, { "content-type": "text/plain" }).end("overloaded"));
    }
    const upstream = request(
      { host: "127.0.0.1", port, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on("error", () => res.destroy());
    res.on("close", () => upstream.destroy());
    req.pipe(upstream);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return state;
}

/**
 * The edge's breaker on the Envoy plane, through the aggregated endpoint: each hop of the broker
 * comes back through Envoy's route for its server, whose cluster runs the rendered outlier
 * detection (outlier.ts). A server answering 503 five times in a row is ejected; while
 * it is, Envoy answers its route 503 no_healthy_upstream (UH), which the shipped local reply
 * mapper makes breaker_open. The agent's aggregated view drops the server with that reason, the
 * other servers keep answering, and the server is back once its ejection time has passed.
 */

function notesServer(): McpServer {
  const server = new McpServer({ name: "notes", version: "1.0.0" });
  server.registerTool("add_note", { description: "Adds a note" }, () => ({
    content: [{ type: "text", text: "noted" }],
  }));
  return server;
}

/** The ejection time the test gives the rendered outlier detection (edge.breaker.cooldown). */
const COOLDOWN_MS = 1_500;

type Kind = "1.x" | "2.x (2026-07-28)";

interface AggregatedClient {
  tools(): Promise<string[]>;
  call(name: string): Promise<unknown>;
  close(): Promise<void>;
}

async function aggregated(kind: Kind, url: string, token: string): Promise<AggregatedClient> {
  if (kind === "1.x") {
    const client = await connect2025("1.x", url, token);
    return { tools: () => client.tools(), call: (name) => client.call(name), close: () => client.close() };
  }
  const client = await connectModern(url, token);
  return {
    tools: async () => (await client.listTools()).tools.map((t) => t.name),
    call: (name) => client.callTool({ name, arguments: {} }),
    close: () => client.close(),
  };
}

const reasonOf = (err: unknown): unknown => (err as { data?: { reason?: unknown } }).data?.reason;

describe("Envoy plane, /mcp: a server failing repeatedly is ejected by outlier detection", () => {
  let notes: RunningServer;
  let kb: RunningServer;
  let proxy: Awaited<ReturnType<typeof failingProxy>>;
  let gw: Gateway;
  let front: EnvoyRoleFront;
  const notesTraces: ExchangeTrace[] = [];

  beforeAll(async () => {
    [notes, kb] = await Promise.all([serveMcp(notesServer, 0), startKbServer(0)]);
    proxy = await failingProxy(Number(new URL(notes.url).port));
    gw = await startGateway({
      servers: [
        { name: "notes", upstreams: [`${proxy.url}/mcp`], tools: [{ name: "add_note" }] },
        { name: "kb", upstreams: [kb.url], tools: [{ name: "search_articles" }, { name: "get_article" }] },
      ],
      security: { pins: { enforce: false, verifyBeforeCall: false } },
      edge: { breaker: { consecutiveFailures: 5, cooldown: `${COOLDOWN_MS}ms` } },
      // The broker's probe of a server it found down: it brings notes back into the view.
      config: { broker: { probeInterval: "200ms" } },
    });
    front = await startEnvoyRoleFront({
      extService: { engine: gw.engine, logger: gw.log.logger, metrics: gw.metrics },
      // As rendered from edge.breaker, but the interval timer at 100 ms instead of 5 s.
      outlier: { intervalMs: 100 },
      onExchange: (trace, request) => {
        if (request.path.startsWith("/mcp/notes")) notesTraces.push(trace);
      },
    });
  });
  afterEach(() => void (proxy.failing = false));
  afterAll(async () => {
    await front?.close();
    await gw?.close();
    await proxy?.close();
    await Promise.allSettled([notes?.close(), kb?.close()]);
  });

  it.each(["1.x", "2.x (2026-07-28)"] as const)(
    "%s: dropped from the view with breaker_open while kb keeps working, back after the ejection time",
    async (kind) => {
      const client = await aggregated(kind, `${front.url}/mcp`, await gw.token("tester"));
      try {
        expect(await client.tools()).toEqual(
          expect.arrayContaining(["notes__add_note", "kb__search_articles"]),
        );
        await client.call("notes__add_note");

        // notes answers 503: the hops (and the broker's probes) fail until Envoy ejects it.
        proxy.failing = true;
        const reasons: unknown[] = [];
        for (let i = 0; i < 12 && reasons.at(-1) !== "breaker_open"; i++) {
          reasons.push(await client.call("notes__add_note").then(() => "answered", reasonOf));
        }
        expect(reasons.at(-1), reasons.join(", ")).toBe("breaker_open");
        // Before: the server's own 503, as the per-server path answers it (not JSON-RPC: upstream_*).
        expect(
          reasons.slice(0, -1).every((r) => /^upstream_/.test(String(r))),
          reasons.join(", "),
        ).toBe(true);
        const ejectedAt = performance.now();
        expect(front.outlier("notes")!.available()).toEqual([]);
        expect(notesTraces.at(-1)?.flags).toContain("UH");

        // The view drops notes; kb answers all along.
        const during = await client.tools();
        expect(during).not.toContain("notes__add_note");
        expect(during).toContain("kb__search_articles");
        await expect(client.call("kb__search_articles")).resolves.toBeDefined();

        // notes answers again, but Envoy does not try it before the ejection time...
        proxy.failing = false;
        const early = await client.call("notes__add_note").then(() => "answered", reasonOf);
        if (performance.now() - ejectedAt < COOLDOWN_MS - 300) expect(early).toBe("breaker_open");
        // ...and lets it back on the interval tick after it: the view holds it again.
        await waitFor(
          () => front.outlier("notes")!.available().length === 1,
          COOLDOWN_MS + 2_000,
          "unejected",
        );
        for (let i = 0; i < 50 && !(await client.tools()).includes("notes__add_note"); i++)
          await new Promise((r) => setTimeout(r, 100));
        expect(await client.tools()).toContain("notes__add_note");
        await expect(client.call("notes__add_note")).resolves.toBeDefined();
      } finally {
        await client.close();
      }
    },
    30_000,
  );
});
