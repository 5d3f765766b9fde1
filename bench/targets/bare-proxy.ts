import { startHosted } from "../hosted.js";
import { httpSide } from "../http-side.js";
import type { BenchContext, Side, SideDeclaration, Target } from "./types.js";

/**
 * The floor under the edge (bench/bare-proxy.ts): node:http in, an undici pool out, no policy,
 * in its own process. What it reaches against direct bounds what any proxy on this stack can.
 * Optional: runs only when named (`--targets direct,edge,bare-proxy`).
 */

const EXT = import.meta.url.endsWith(".ts") ? ".ts" : ".js";
const BARE_PROXY_MODULE = new URL(`../bare-proxy${EXT}`, import.meta.url);

export const BARE_PROXY: SideDeclaration = {
  name: "bare-proxy",
  baseline: "direct",
  description: "client -> bare proxy (no policy; undici request()) -> reference MCP server",
};

export const BARE_PROXY_DISPATCH: SideDeclaration = {
  name: "bare-proxy-dispatch",
  baseline: "direct",
  description: "client -> bare proxy (no policy; undici dispatch(), as the edge) -> reference MCP server",
};

export async function startBareProxy(ctx: BenchContext, side: SideDeclaration): Promise<Side> {
  const api = side.name === BARE_PROXY_DISPATCH.name ? "dispatch" : "request";
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
    onClose: hosted.close,
  });
}

export const target: Target = {
  name: "bare-proxy",
  sides: [BARE_PROXY, BARE_PROXY_DISPATCH],
  optional: true,
  unavailable: () => undefined,
  async start(ctx) {
    const sides: Side[] = [];
    try {
      for (const side of [BARE_PROXY, BARE_PROXY_DISPATCH]) sides.push(await startBareProxy(ctx, side));
    } catch (err) {
      for (const s of sides) await s.close().catch(() => undefined);
      throw err;
    }
    return sides;
  },
};
