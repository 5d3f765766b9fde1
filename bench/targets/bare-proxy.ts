import { startHosted } from "../hosted.js";
import { httpSide } from "../http-side.js";
import type { BenchContext, Side, SideDeclaration, Target } from "./types.js";

/**
 * The floor under the edge (bench/bare-proxy.ts): node:http in, an undici pool out (dispatch(),
 * as the edge uses), no policy, in its own process. Its CPU per request is the edge's CPU
 * baseline; what it reaches against direct bounds what any proxy on this stack can. A variant on
 * undici's request() (BARE_PROXY_REQUEST) is available to bench/cpu.ts.
 */

const EXT = import.meta.url.endsWith(".ts") ? ".ts" : ".js";
const BARE_PROXY_MODULE = new URL(`../bare-proxy${EXT}`, import.meta.url);

export const BARE_PROXY: SideDeclaration = {
  name: "bare-proxy",
  baseline: "direct",
  description: "client -> bare proxy (no policy; undici dispatch(), as the edge) -> reference MCP server",
};

export const BARE_PROXY_REQUEST: SideDeclaration = {
  name: "bare-proxy-request",
  baseline: "direct",
  description: "client -> bare proxy (no policy; undici request()) -> reference MCP server",
};

export async function startBareProxy(ctx: BenchContext, side: SideDeclaration): Promise<Side> {
  const api = side.name === BARE_PROXY_REQUEST.name ? "request" : "dispatch";
  const hosted = await startHosted(
    BARE_PROXY_MODULE,
    "serveBareProxy",
    { origin: ctx.referenceOrigin, api },
    side.name,
  );
  return httpSide({
    ...side,
    origin: `http://127.0.0.1:${hosted.ports.http}`,
    pathFor: (w) => `/mcp/${w.server}`,
    token: ctx.token,
    connections: ctx.connections,
    serverCpuMicros: hosted.cpuMicros,
    serverGc: hosted.gc,
    onClose: hosted.close,
  });
}

export const target: Target = {
  name: "bare-proxy",
  sides: [BARE_PROXY],
  unavailable: () => undefined,
  async start(ctx) {
    return [await startBareProxy(ctx, BARE_PROXY)];
  },
};
