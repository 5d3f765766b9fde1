import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse, stringify } from "yaml";
import { startHosted, type Hosted } from "../hosted.js";
import { httpSide } from "../http-side.js";
import { openSession, type PostJson } from "../mcp-session.js";
import type { Workload } from "../workloads.js";
import { missingModules } from "./support.js";
import type { BenchContext, Side, SideDeclaration, Target } from "./types.js";

/**
 * The aggregated endpoint (issue 14) against the per-server route it is built on: the same
 * workloads sent to a local edge's `/mcp/views/<server>` (a view holding that one server, so the
 * answer is the same 50 tools, prefixed), in a 2025 session opened once, whose broker hops to the
 * same edge's `/mcp/<server>`. Compared with the `edge` side (`/mcp/<server>` directly), which the
 * run must include (both are in the default run).
 *
 * `broker` keeps lists (broker.lists, the default); `broker-uncached` has `broker.lists.ttl: 0`,
 * so every tools/list makes its hop.
 */

const BROKER_MODULE = new URL("../../ext-service/src/broker/broker", import.meta.url);
/** The edge target's module (it exports serveEdge): `.ts` from source, `.js` compiled. */
const EDGE_TARGET = new URL(`./edge${import.meta.url.endsWith(".ts") ? ".ts" : ".js"}`, import.meta.url);
/** The broker's separator by default (broker.separator). */
const SEPARATOR = "__";

const BROKER: SideDeclaration = {
  name: "broker",
  baseline: "edge",
  description:
    "client -> local edge /mcp/views/<server> (aggregated endpoint, 2025 session, lists kept) -> hop to the same edge's /mcp/<server> -> reference MCP server",
};
const BROKER_UNCACHED: SideDeclaration = {
  name: "broker-uncached",
  baseline: "edge",
  description: "the same with broker.lists.ttl: 0 (every tools/list makes its hop)",
};

/** The workload through the aggregated endpoint: the tool named `<server>__<tool>`, answered as SSE. */
function viaBroker(workload: Workload): Workload {
  return {
    ...workload,
    // The SDK's 2025 session transport answers every POST with an event stream.
    responseType: "text/event-stream",
    requestBody: (id) => {
      const body = workload.requestBody(id);
      // The first "name" of a tools/call body is params.name (the arguments follow it).
      return body.includes('"method":"tools/call"')
        ? body.replace('"name":"', `"name":"${workload.server}${SEPARATOR}`)
        : body;
    },
  };
}

/** A 2025 session on `url` (bench/mcp-session.ts) over fetch: the id every request then carries. */
function openSessionOn(url: string, token: string): Promise<string> {
  const post: PostJson = async (headers, body) => {
    const answer = await fetch(url, { method: "POST", headers, body });
    return {
      status: answer.status,
      sessionId: answer.headers.get("mcp-session-id") ?? undefined,
      text: await answer.text(),
    };
  };
  const headers = {
    "content-type": "application/json",
    accept: "application/json, text/event-stream",
    authorization: `Bearer ${token}`,
  };
  return openSession(post, headers, "bench");
}

async function startBrokerSide(ctx: BenchContext, side: SideDeclaration, configFile: string): Promise<Side> {
  const edge: Hosted = await startHosted(EDGE_TARGET, "serveEdge", { configFile }, side.name);
  const origin = `http://127.0.0.1:${edge.ports.http}`;
  try {
    const sessions = new Map<string, string>();
    for (const server of ["ref", "ref-sse"]) {
      sessions.set(server, await openSessionOn(`${origin}/mcp/views/${server}`, ctx.token));
    }
    return httpSide({
      ...side,
      origin,
      pathFor: (w) => `/mcp/views/${w.server}`,
      adapt: viaBroker,
      headersFor: (w) => ({ "mcp-session-id": sessions.get(w.server)! }),
      token: ctx.token,
      connections: ctx.connections,
      serverCpuMicros: edge.cpuMicros,
      serverGc: edge.gc,
      onClose: edge.close,
    });
  } catch (err) {
    await edge.close();
    throw err;
  }
}

/** gateway.yaml with `broker.lists.ttl: 0`, next to the run's config. */
function uncachedConfig(ctx: BenchContext): string {
  const config = parse(readFileSync(ctx.configFile, "utf8")) as { broker?: Record<string, unknown> };
  config.broker = { ...config.broker, lists: { ttl: 0 } };
  const file = join(ctx.workdir, "gateway-broker-uncached.yaml");
  writeFileSync(file, stringify(config));
  return file;
}

export const target: Target = {
  name: "broker",
  sides: [BROKER],
  unavailable: () => missingModules(BROKER_MODULE),
  async start(ctx) {
    return [await startBrokerSide(ctx, BROKER, ctx.configFile)];
  },
};

export const uncachedTarget: Target = {
  name: "broker-uncached",
  sides: [BROKER_UNCACHED],
  unavailable: () => missingModules(BROKER_MODULE),
  async start(ctx) {
    return [await startBrokerSide(ctx, BROKER_UNCACHED, uncachedConfig(ctx))];
  },
};
