import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { z } from "zod";
import { startHosted } from "./hosted.js";
import { httpSide } from "./http-side.js";
import { closedLoop, openLoop } from "./load.js";
import { percentile } from "./stats.js";
import { runScript } from "./script.js";
import { WORKLOADS } from "./workloads.js";

/**
 * Why the benchmark has its own reference server: the same small `tools/call` answered by the
 * official SDK server (stateless Streamable HTTP, JSON answers, the SDK's recommended
 * server-and-transport-per-request pattern) and by bench/reference-server.ts, each in its own
 * process, compared by CPU per call and latency.
 *
 *   npx tsx bench/sdk-server-cost.ts [seconds per phase, default 3]
 */

const EXT = import.meta.url.endsWith(".ts") ? ".ts" : ".js";

/** Runs in its own process (bench/host.ts). */
export async function serveSdk() {
  const http = createServer((req, res) => {
    const server = new McpServer({ name: "bench-sdk-reference", version: "1.0.0" });
    server.registerTool(
      "echo",
      { description: "Return the given text unchanged.", inputSchema: { text: z.string().max(1000) } },
      ({ text }) => ({ content: [{ type: "text", text }] }),
    );
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: undefined,
      enableJsonResponse: true,
    });
    res.on("close", () => {
      void transport.close();
      void server.close();
    });
    server
      .connect(transport)
      .then(() => transport.handleRequest(req, res))
      .catch(() => {
        if (!res.headersSent) res.writeHead(500).end();
      });
  });
  await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
  return {
    ports: { http: (http.address() as AddressInfo).port },
    close: () =>
      new Promise<void>((resolve) => {
        http.close(() => resolve());
        http.closeAllConnections();
      }),
  };
}

async function main(): Promise<void> {
  const seconds = Number(process.argv[2] ?? "3");
  const workload = WORKLOADS.call_small;
  const servers = [
    {
      name: "reference (bench)",
      hosted: await startHosted(
        new URL(`./reference-server${EXT}`, import.meta.url),
        "serveReference",
        {},
        "reference",
      ),
    },
    { name: "official SDK", hosted: await startHosted(new URL(import.meta.url), "serveSdk", {}, "sdk") },
  ];
  const rows: string[] = [];
  for (const { name, hosted } of servers) {
    const side = httpSide({
      name,
      baseline: undefined,
      description: name,
      origin: `http://127.0.0.1:${hosted.ports.http}`,
      pathFor: () => "/mcp",
      token: "unused",
      connections: 8,
      serverCpuMicros: hosted.cpuMicros,
    });
    const op = await side.prepare(workload);
    await closedLoop(op, { concurrency: 8, durationMs: 1000, drainMs: 5000 });
    const open = await openLoop(op, { ratePerSecond: 200, durationMs: seconds * 1000, drainMs: 5000 });
    const cpu0 = await hosted.cpuMicros();
    const closed = await closedLoop(op, { concurrency: 8, durationMs: seconds * 1000, drainMs: 5000 });
    const cpuUs = (await hosted.cpuMicros()) - cpu0;
    const sorted = open.latency.sorted();
    rows.push(
      `${name.padEnd(18)}  p50 ${percentile(sorted, 50)!.toFixed(3)} ms  p99 ${percentile(sorted, 99)!.toFixed(3)} ms  ` +
        `${Math.round(closed.perSecond)} calls/s  ${(cpuUs / closed.ok).toFixed(1)} us CPU per call  ` +
        `errors ${open.errors + open.timedOut + closed.errors + closed.stuck}`,
    );
    await side.close();
    await hosted.close();
  }
  process.stdout.write(
    `small tools/call, latency at 200/s (open loop, ${seconds} s) and saturation (8 concurrent, ${seconds} s)\n` +
      rows.join("\n") +
      "\n",
  );
}

if (process.argv[1] && new URL(import.meta.url).pathname === process.argv[1]) {
  runScript(main);
}
