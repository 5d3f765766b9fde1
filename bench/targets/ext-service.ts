import { loadEngine } from "../../ext-service/src/config/compile.js";
import type { PolicyEngine } from "../../ext-service/src/policy/engine.js";
import type { Logger } from "../../ext-service/src/telemetry/logger.js";
import { startHosted, type Hosted } from "../hosted.js";
import type { Operation } from "../load.js";
import { answerPost } from "../reference-server.js";
import { PROTOCOL_VERSION, checkAnswer, type Workload } from "../workloads.js";
import { benchLogger, importModule, missingModules } from "./support.js";
import type { Side, SideDeclaration, Target } from "./types.js";

/**
 * Two sides measured with the same Envoy-role gRPC client: the ext-service (all policies) and a
 * do-nothing ext_authz/ext_proc server, the protocol floor. One operation is what Envoy does for
 * one MCP request: ext_authz Check, then one ext_proc stream with request headers, the request
 * body, response headers and the response body (JSON buffered, SSE streamed in chunks). The
 * response is what the reference server answers, so no MCP server is involved.
 */

// Wiring points: modules (paths without extension) and the API this file expects of them,
// as found in the envoy-adapters branch while it was being written (check after merging).
const EXT_SERVICE_MODULE = new URL("../../ext-service/src/envoy/server", import.meta.url);
const CLIENT_MODULE = new URL("../../ext-service/src/envoy/envoy-role-client", import.meta.url);
const NOOP_MODULE = new URL("../noop-ext-service", import.meta.url);

interface ExtServiceModule {
  startExtService(opts: {
    engine: PolicyEngine;
    logger: Logger;
    grpcHost?: string;
    grpcPort?: number;
    adminHost?: string;
    adminPort?: number;
  }): Promise<{ grpcPort: number; adminPort: number; close(): Promise<void> }>;
}
interface NoopModule {
  startNoopExtService(host?: string, port?: number): Promise<{ address: string; close(): Promise<void> }>;
}
interface HttpRequestSpec {
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: string | Uint8Array;
}
interface UpstreamResponseSpec {
  status: number;
  headers?: Record<string, string>;
  /** One string: one buffered chunk; an array: a chunked body split exactly there. */
  body?: string | Uint8Array | (string | Uint8Array)[];
}
interface EnvoyRoleClient {
  /** One HTTP request through ext_authz and ext_proc, `upstream` playing the MCP server. */
  exchange(
    req: HttpRequestSpec,
    upstream: () => UpstreamResponseSpec,
  ): Promise<{
    response: { status: number; headers: Record<string, string>; body: Buffer };
    answeredBy: string;
  }>;
  close(): void;
}
interface ClientModule {
  EnvoyRoleClient: new (address: string) => EnvoyRoleClient;
}

/** Runs in the ext-service's process (bench/host.ts). */
export async function serveExtService(params: { configFile: string }) {
  const { startExtService } = await importModule<ExtServiceModule>(EXT_SERVICE_MODULE);
  const { engine } = loadEngine(params.configFile);
  const svc = await startExtService({
    engine,
    logger: benchLogger(),
    grpcHost: "127.0.0.1",
    grpcPort: 0,
    adminHost: "127.0.0.1",
    adminPort: 0,
  });
  return { ports: { grpc: svc.grpcPort, admin: svc.adminPort }, close: () => svc.close() };
}

/** Runs in the no-op server's process. */
export async function serveNoop() {
  const { startNoopExtService } = await importModule<NoopModule>(NOOP_MODULE);
  const noop = await startNoopExtService("127.0.0.1", 0);
  const port = Number(noop.address.slice(noop.address.lastIndexOf(":") + 1));
  return { ports: { grpc: port }, close: () => noop.close() };
}

const encoder = new TextEncoder();
const GRPC_CONCURRENCY = 32;

/** SSE bodies reach ext_proc in chunks that do not align with events, as from a real upstream. */
const SSE_CHUNK_BYTES = 16 * 1024;

function chunks(text: string, size: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < text.length; i += size) out.push(text.slice(i, i + size));
  return out;
}

const EXT_SERVICE: SideDeclaration = {
  name: "ext-service",
  baseline: "noop",
  description: "Envoy-role gRPC client -> ext-service (ext_authz + ext_proc, all policies)",
};
const NOOP: SideDeclaration = {
  name: "noop",
  baseline: undefined,
  description: "Envoy-role gRPC client -> do-nothing ext_authz/ext_proc server (protocol floor)",
};

function grpcSide(declared: SideDeclaration, hosted: Hosted, client: EnvoyRoleClient, token: string): Side {
  const name = declared.name;
  return {
    ...declared,
    // Envoy keeps many ext_proc streams open at once; one JS client needs them to load the server.
    concurrency: GRPC_CONCURRENCY,
    serverCpuMicros: hosted.cpuMicros,
    serverGc: hosted.gc,
    async prepare(workload: Workload): Promise<Operation> {
      const id = 1_000_000;
      const body = workload.requestBody(id);
      const answer = answerPost(body, workload.responseType === "text/event-stream");
      const request: HttpRequestSpec = {
        method: "POST",
        path: `/mcp/${workload.server}`,
        headers: {
          "content-type": "application/json",
          accept: "application/json, text/event-stream",
          authorization: `Bearer ${token}`,
          "mcp-protocol-version": PROTOCOL_VERSION,
        },
        body: encoder.encode(body),
      };
      const response: UpstreamResponseSpec = {
        status: answer.status,
        headers: { "content-type": answer.contentType ?? "application/octet-stream" },
        body:
          workload.responseType === "text/event-stream" ? chunks(answer.body, SSE_CHUNK_BYTES) : answer.body,
      };
      const upstream = () => response;

      // A cached call's repeats are answered by ext_proc at request-body time (the cache hit).
      const answeredAs = (by: string) => by === "upstream" || (workload.cachedByGateway && by === "ext_proc");
      const first = await client.exchange(request, upstream);
      const problem = !answeredAs(first.answeredBy)
        ? `answered by ${first.answeredBy} (${first.response.status}): ${first.response.body.toString("utf8", 0, 300)}`
        : checkAnswer(
            workload,
            id,
            first.response.status,
            first.response.headers["content-type"],
            first.response.body.toString("utf8"),
          );
      if (problem) throw new Error(`${name} ${workload.id}: ${problem}`);
      const expectedBytes = first.response.body.byteLength;

      return async () => {
        const r = await client.exchange(request, upstream);
        if (r.response.status !== 200 || !answeredAs(r.answeredBy)) {
          throw new Error(`answered by ${r.answeredBy} with ${r.response.status}`);
        }
        if (r.response.body.byteLength !== expectedBytes) {
          throw new Error(`answer of ${r.response.body.byteLength} bytes, expected ${expectedBytes}`);
        }
      };
    },
    async close() {
      client.close();
      await hosted.close();
    },
  };
}

export const target: Target = {
  name: "ext-service",
  sides: [EXT_SERVICE, NOOP],
  unavailable: () => missingModules(EXT_SERVICE_MODULE, CLIENT_MODULE, NOOP_MODULE),
  async start(ctx) {
    const { EnvoyRoleClient } = await importModule<ClientModule>(CLIENT_MODULE);
    const here = new URL(import.meta.url);
    const svc = await startHosted(here, "serveExtService", { configFile: ctx.configFile }, "ext-service");
    const noop = await startHosted(here, "serveNoop", {}, "noop");
    return [
      grpcSide(EXT_SERVICE, svc, new EnvoyRoleClient(`127.0.0.1:${svc.ports.grpc}`), ctx.token),
      grpcSide(NOOP, noop, new EnvoyRoleClient(`127.0.0.1:${noop.ports.grpc}`), ctx.token),
    ];
  },
};
