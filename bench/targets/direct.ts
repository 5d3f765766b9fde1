import { httpSide } from "../http-side.js";
import type { SideDeclaration, Target } from "./types.js";

const DIRECT: SideDeclaration = {
  name: "direct",
  baseline: undefined,
  description: "client -> reference MCP server",
};

/** The baseline: the client talks to the reference MCP server with nothing in between. */
export const target: Target = {
  name: "direct",
  sides: [DIRECT],
  unavailable: () => undefined,
  async start(ctx) {
    return [
      httpSide({
        ...DIRECT,
        origin: ctx.referenceOrigin,
        pathFor: (w) => w.upstreamPath,
        token: ctx.token,
        connections: ctx.connections,
        serverCpuMicros: ctx.referenceCpuMicros,
        serverGc: ctx.referenceGc,
      }),
    ];
  },
};
