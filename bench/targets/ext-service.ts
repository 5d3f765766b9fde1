import { loadEngine } from "../../ext-service/src/config/compile.js";
import type { PolicyEngine } from "../../ext-service/src/policy/engine.js";
import type { Logger } from "../../ext-service/src/telemetry/logger.js";
import { startHosted, type Hosted } from "../hosted.js";
import type { Operation } from "../load.js";
import { answerPost } from "../reference-server.js";
import { PROTOCOL_VERSION, type Workload } from "../workloads.js";
import { benchLogger, importModule, missingModules } from "./support.js";
import type { Side, SideDeclaration, Target } from "./types.js";

/**
 * Two sides measured with the same Envoy-role gRPC client: the ext-service (all policies) and a
 * do-nothing ext_authz/ext_proc server, the protocol floor. One operation is what Envoy does for
 * one MCP request: ext_authz Check, then one ext_proc stream with request headers, the request
 * body, response headers and the response body (JSON in one buffered message, SSE in chunks).
 * The response bodies are what the reference server would answer, so no MCP server is involved.
 */

// Wiring points: modules (paths without extension) and the API this file expects of them.
const EXT_SERVICE_MODULE = new URL("../../ext-service/src/envoy/index", import.meta.url);
const CLIENT_MODULE = new URL("../../ext-service/src/envoy/envoy-role-client", import.meta.url);
const NOOP_MODULE = new URL("../noop-ext-service", import.meta.url);

interface Running {
  grpcPort: number;
  close(): Promise<void>;
}
interface ExtServiceModule {
  startExtService(opts: {
    engine: PolicyEngine;
    grpcPort: number;
    adminPort: number;
    logger: Logger;
  }): Promise<Running & { adminPort: number }>;
}
interface NoopModule {
  startNoopExtService(opts: { grpcPort: number }): Promise<Running>;
}
/** One HTTP exchange as Envoy would present it (headers include the pseudo-headers). */
interface EnvoyExchange {
  requestHeaders: Record<string, string>;
  requestBody: Uint8Array;
  responseHeaders: Record<string, string>;
  /** One chunk: BUFFERED; several: STREAMED, the last one ending the stream. */
  responseBody: Uint8Array[];
}
interface EnvoyRoleClient {
  check(headers: Record<string, string>): Promise<{ allowed: boolean; status: number }>;
  process(exchange: EnvoyExchange): Promise<{ immediateResponse?: { status: number } }>;
  close(): void;
}
interface ClientModule {
  EnvoyRoleClient: new (address: string) => EnvoyRoleClient;
}

/** Runs in the ext-service's process (bench/host.ts). */
export async function serveExtService(params: { configFile: string }) {
  const { startExtService } = await importModule<ExtServiceModule>(EXT_SERVICE_MODULE);
  const { engine } = loadEngine(params.configFile);
  const svc = await startExtService({ engine, grpcPort: 0, adminPort: 0, logger: benchLogger() });
  return { ports: { grpc: svc.grpcPort, admin: svc.adminPort }, close: () => svc.close() };
}

/** Runs in the no-op server's process. */
export async function serveNoop() {
  const { startNoopExtService } = await importModule<NoopModule>(NOOP_MODULE);
  const noop = await startNoopExtService({ grpcPort: 0 });
  return { ports: { grpc: noop.grpcPort }, close: () => noop.close() };
}

const SSE_CHUNK_BYTES = 16 * 1024;
const encoder = new TextEncoder();

function chunks(bytes: Uint8Array, size: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < bytes.length; i += size) out.push(bytes.subarray(i, i + size));
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
    async prepare(workload: Workload): Promise<Operation> {
      const body = workload.requestBody(1_000_000);
      const answer = answerPost(body, workload.responseType === "text/event-stream");
      const requestHeaders = {
        ":method": "POST",
        ":path": `/mcp/${workload.server}`,
        ":authority": "gateway.bench",
        ":scheme": "http",
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
        authorization: `Bearer ${token}`,
        "mcp-protocol-version": PROTOCOL_VERSION,
      };
      const responseBytes = encoder.encode(answer.body);
      const exchange: EnvoyExchange = {
        requestHeaders,
        requestBody: encoder.encode(body),
        responseHeaders: { ":status": String(answer.status), "content-type": answer.contentType ?? "" },
        responseBody:
          answer.contentType === "text/event-stream"
            ? chunks(responseBytes, SSE_CHUNK_BYTES)
            : [responseBytes],
      };
      const op = async () => {
        const verdict = await client.check(requestHeaders);
        if (!verdict.allowed) throw new Error(`${name}: Check denied (${verdict.status})`);
        const out = await client.process(exchange);
        if (out.immediateResponse)
          throw new Error(`${name}: ext_proc answered ${out.immediateResponse.status}`);
      };
      await op();
      return op;
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
