import { loadEngine } from "../ext-service/src/config/compile.js";
import { classifyMessage, type JsonRpcMessage } from "../ext-service/src/mcp/jsonrpc.js";
import type { HeaderMap, PolicyEngine } from "../ext-service/src/policy/engine.js";
import { idKey } from "../ext-service/src/policy/exchange.js";
import { AuditTrail } from "../ext-service/src/telemetry/audit.js";
import { createLogger } from "../ext-service/src/telemetry/logger.js";
import { Metrics } from "../ext-service/src/telemetry/metrics.js";
import { EdgeFixture, type EdgeSideName } from "./edge-hot-paths.js";
import { GrpcFixture, type GrpcSideName } from "./grpc-hot-paths.js";
import { answerPost } from "./reference-server.js";
import { JSON_SERVER, PROTOCOL_VERSION, SSE_SERVER, WORKLOADS, type WorkloadId } from "./workloads.js";

/**
 * The gateway's per-request hot paths, in process and without I/O, as the adapters run them for
 * the bench workloads (same config, same bodies as `npm run bench`). Each returns one repeatable
 * operation that checks its own outcome, so a path that silently stopped doing its work (a body
 * refused, a result dropped) fails instead of getting cheaper. Measured in instructions by
 * bench/instructions.ts, under valgrind, where wall-clock time means nothing.
 */

export const HOT_PATH_IDS = [
  "decision_small",
  "audit_record",
  "response_small",
  "tools_list",
  "scan_64k",
  "json_64k",
  "sse_64k",
  "grpc_small",
  "grpc_small_noop",
  "grpc_json_64k",
  "grpc_json_64k_noop",
  "grpc_sse_64k",
  "grpc_sse_64k_noop",
  "edge_small",
  "edge_small_bare",
] as const;
export type HotPathId = (typeof HOT_PATH_IDS)[number];

export interface HotPath {
  readonly id: HotPathId;
  readonly title: string;
  /** Repetitions counted: enough that the few that trigger a GC weigh alike in every run. */
  readonly iterations: number;
  /** Runs before counting, so that what the JIT optimises is optimised. */
  readonly warmup: number;
  /**
   * What one run does, when it is more than one operation: a gRPC path's run is a batch of
   * exchanges (one request to the client process), and its count is per exchange.
   */
  readonly exchangesPerRun?: number;
  /**
   * Counted in a worker process of its own (no other path warmed up, allocated or ran before it
   * there): the HTTP paths, whose counts otherwise moved with what ran before them.
   */
  readonly ownProcess?: boolean;
  /**
   * After the collection before counting: wait `idleMs` (longer than every keep-alive timeout of
   * the client, the proxy and its pool, so every idle connection closes now), then `runs` runs
   * that open fresh ones, uncounted. The collection takes seconds under valgrind, and a
   * connection a timer closed in the counted phase would add its setup to the count (or reset a
   * request).
   */
  readonly settle?: { idleMs: number; runs: number };
}

/** A whole exchange through a gRPC server (bench/grpc-hot-paths.ts). */
function grpcPath(
  id: HotPathId,
  side: GrpcSideName,
  what: string,
  counts: { iterations: number; warmup: number; exchangesPerRun: number },
): HotPath {
  const server = side === "noop" ? "the do-nothing server (bench/noop-ext-service.ts)" : "the ext-service";
  return {
    id,
    title: `gRPC exchange, ${what}: Check + ShouldRateLimit + ext_proc stream, ${server}`,
    ...counts,
  };
}

/** Small exchanges: 100 to warm up (after the in-process paths warmed the policy), 40 counted. */
const SMALL_EXCHANGES = { iterations: 4, warmup: 10, exchangesPerRun: 10 };
/** 64 KB exchanges cost about as much as 50 small ones (the scan): 10 to warm up, 8 counted. */
const LARGE_EXCHANGES = { iterations: 2, warmup: 2, exchangesPerRun: 4 };

/** Small calls over HTTP: 200 to warm up, 150 counted. */
const SMALL_HTTP_CALLS = {
  iterations: 15,
  warmup: 20,
  exchangesPerRun: 10,
  ownProcess: true,
  settle: { idleMs: 6_000, runs: 2 },
};

export const HOT_PATHS: Readonly<Record<HotPathId, HotPath>> = {
  decision_small: {
    id: "decision_small",
    title: "decision core, small tools/call: admit (cached token), body verdict, upstream headers",
    iterations: 400,
    warmup: 30,
  },
  audit_record: {
    id: "audit_record",
    title: "audit record of a small tools/call, serialized and written (to a discarding sink)",
    iterations: 400,
    warmup: 30,
  },
  response_small: {
    id: "response_small",
    title: "response path, small tools/call result (JSON): parse, scan, pass",
    iterations: 400,
    warmup: 30,
  },
  tools_list: {
    id: "tools_list",
    title: "response path, tools/list of 50 tools: parse, pins, descriptions, RBAC filter",
    iterations: 40,
    warmup: 30,
  },
  scan_64k: {
    id: "scan_64k",
    title: "detectors only, 64 KB text result (injection + DLP on a parsed message)",
    iterations: 8,
    warmup: 30,
  },
  json_64k: {
    id: "json_64k",
    title: "response path, 64 KB text result (JSON): parse, scan, pass",
    iterations: 8,
    warmup: 30,
  },
  sse_64k: {
    id: "sse_64k",
    title: "response path, 64 KB text result (SSE in 16 KiB chunks): re-assembly, parse, scan, re-emit",
    iterations: 8,
    warmup: 30,
  },
  grpc_small: grpcPath("grpc_small", "ext-service", "small tools/call (JSON)", SMALL_EXCHANGES),
  grpc_small_noop: grpcPath("grpc_small_noop", "noop", "small tools/call (JSON)", SMALL_EXCHANGES),
  grpc_json_64k: grpcPath(
    "grpc_json_64k",
    "ext-service",
    "64 KB text result (JSON, buffered)",
    LARGE_EXCHANGES,
  ),
  grpc_json_64k_noop: grpcPath(
    "grpc_json_64k_noop",
    "noop",
    "64 KB text result (JSON, buffered)",
    LARGE_EXCHANGES,
  ),
  grpc_sse_64k: grpcPath(
    "grpc_sse_64k",
    "ext-service",
    "64 KB text result (SSE, streamed in 16 KiB chunks)",
    LARGE_EXCHANGES,
  ),
  grpc_sse_64k_noop: grpcPath(
    "grpc_sse_64k_noop",
    "noop",
    "64 KB text result (SSE, streamed in 16 KiB chunks)",
    LARGE_EXCHANGES,
  ),
  edge_small: {
    id: "edge_small",
    title: "HTTP call through the local edge, small tools/call (JSON): every policy, audit record",
    ...SMALL_HTTP_CALLS,
  },
  edge_small_bare: {
    id: "edge_small_bare",
    title: "HTTP call through the bare proxy (bench/bare-proxy.ts), small tools/call (JSON)",
    ...SMALL_HTTP_CALLS,
  },
};

/** The HTTP paths (bench/edge-hot-paths.ts): which proxy, which workload. */
const EDGE_PATHS: Partial<Record<HotPathId, { side: EdgeSideName; workload: WorkloadId }>> = {
  edge_small: { side: "edge", workload: "call_small" },
  edge_small_bare: { side: "bare-proxy", workload: "call_small" },
};

/** The gRPC paths: which server, which workload. */
const GRPC_PATHS: Partial<Record<HotPathId, { side: GrpcSideName; workload: WorkloadId }>> = {
  grpc_small: { side: "ext-service", workload: "call_small" },
  grpc_small_noop: { side: "noop", workload: "call_small" },
  grpc_json_64k: { side: "ext-service", workload: "call_64k_json" },
  grpc_json_64k_noop: { side: "noop", workload: "call_64k_json" },
  grpc_sse_64k: { side: "ext-service", workload: "call_64k_sse" },
  grpc_sse_64k_noop: { side: "noop", workload: "call_64k_sse" },
};

const encoder = new TextEncoder();
const SSE_CHUNK_BYTES = 16 * 1024;

/** The headers the edge hands the core for a bench request (headerMap of node's request). */
function requestHeaders(token: string): HeaderMap {
  return {
    host: "127.0.0.1:8080",
    connection: "keep-alive",
    "content-type": "application/json",
    accept: "application/json, text/event-stream",
    authorization: `Bearer ${token}`,
    "mcp-protocol-version": PROTOCOL_VERSION,
    "content-length": "165",
  };
}

function fail(path: HotPathId, what: string): never {
  throw new Error(`hot path ${path}: ${what}`);
}

/** Everything the paths share: one engine on the bench config, bodies prepared once. */
export class HotPathFixture {
  readonly engine: PolicyEngine;
  private readonly headers: HeaderMap;
  private readonly audit: AuditTrail;
  private nextId = 1_000_000;
  private pinsVerified = false;
  private grpc: GrpcFixture | undefined;
  private edge: EdgeFixture | undefined;

  constructor(
    private readonly configFile: string,
    private readonly token: string,
  ) {
    this.engine = loadEngine(configFile).engine;
    this.headers = requestHeaders(token);
    // Serialized in full and written as in production; the sink drops the bytes.
    const sink = { write: (_line: string) => true };
    this.audit = new AuditTrail(createLogger("info", sink), new Metrics(), "edge");
  }

  /**
   * Lets each server's tools/list answer through once, as the edge's pin verifier does before the
   * first call: until then every tools/call is refused (tool_pin_unverified).
   */
  async verifyPins(): Promise<void> {
    const requestId = 6;
    const list = WORKLOADS.tools_list.requestBody(requestId);
    const answer = encoder.encode(answerPost(list, false).body);
    for (const server of [JSON_SERVER, SSE_SERVER]) {
      const exchange = await this.decide(server, list, "tools_list");
      this.engine.responseTransformer(exchange, "application/json", 200).transformJson(answer);
      // Both servers list the same names, which is flagged (tool_collision), not refused.
      if (exchange.decision !== "allow") fail("tools_list", `list refused: ${exchange.reasons.join(", ")}`);
    }
  }

  /** Admit + body verdict of one request, leaving the exchange waiting for its answer. */
  async decide(server: string, body: string, path: HotPathId) {
    const exchange = this.engine.newExchange("POST");
    const admission = await this.engine.admit(
      { method: "POST", path: `/mcp/${server}`, headers: this.headers, localAddress: "127.0.0.1" },
      exchange,
    );
    if (!admission.ok) fail(path, `not admitted: ${exchange.reasons.join(", ")}`);
    const bytes = encoder.encode(body);
    let verdict = this.engine.evaluateRequestBody(exchange, bytes, this.headers);
    if (verdict.action === "list_tools") {
      verdict = this.engine.evaluateRequestBody(exchange, bytes, this.headers, { toolsListed: true });
    }
    if (verdict.action === "reply") fail(path, `refused: ${verdict.reply.body}`);
    if (verdict.action !== "forward") fail(path, `verdict ${verdict.action}`);
    this.engine.upstreamHeaders(exchange, this.headers);
    return exchange;
  }

  /** Stops the gRPC servers, the proxy and their clients, when a path started them. */
  async close(): Promise<void> {
    await this.grpc?.close();
    this.grpc = undefined;
    await this.edge?.close();
    this.edge = undefined;
  }

  /** The operation of one path; `await` it in a loop. */
  async operation(path: HotPathId): Promise<() => Promise<void> | void> {
    const grpcPath = GRPC_PATHS[path];
    if (grpcPath) {
      const grpc = (this.grpc ??= await GrpcFixture.start(this.configFile, this.token));
      const count = HOT_PATHS[path].exchangesPerRun ?? 1;
      // The first exchange also checks the answer end to end (the client checks every one).
      await grpc.run(grpcPath.side, grpcPath.workload, 1);
      return () => grpc.run(grpcPath.side, grpcPath.workload, count);
    }
    const edgePath = EDGE_PATHS[path];
    if (edgePath) {
      if (this.edge) fail(path, "one HTTP path per process (HotPath.ownProcess)");
      const edge = (this.edge = await EdgeFixture.start(edgePath.side, this.configFile, this.token));
      const count = HOT_PATHS[path].exchangesPerRun ?? 1;
      // The first call also checks the answer end to end (the client checks every one); through
      // the edge it is the one that verifies the server's pins.
      await edge.run(edgePath.workload, 1);
      return () => edge.run(edgePath.workload, count);
    }
    if (!this.pinsVerified) {
      await this.verifyPins();
      this.pinsVerified = true;
    }
    const engine = this.engine;
    const id = () => this.nextId++;
    switch (path) {
      case "decision_small": {
        return async () => {
          await this.decide(JSON_SERVER, WORKLOADS.call_small.requestBody(id()), path);
        };
      }
      case "audit_record": {
        const exchange = await this.decide(JSON_SERVER, WORKLOADS.call_small.requestBody(id()), path);
        // A record is written once per exchange: each run closes a fresh copy of the decided one.
        return () => {
          if (!this.audit.finish({ ...exchange }, 200)) fail(path, "no record");
        };
      }
      case "response_small":
      case "tools_list":
      case "json_64k": {
        const workload =
          path === "json_64k"
            ? WORKLOADS.call_64k_json
            : path === "tools_list"
              ? WORKLOADS.tools_list
              : WORKLOADS.call_small;
        const requestId = 7;
        const answer = encoder.encode(answerPost(workload.requestBody(requestId), false).body);
        const method = path === "tools_list" ? "tools/list" : "tools/call";
        const target = path === "tools_list" ? undefined : path === "json_64k" ? "get_report" : "echo";
        const principal = (await this.decide(JSON_SERVER, workload.requestBody(requestId), path)).principal;
        return () => {
          const exchange = engine.newExchange("POST");
          exchange.server = JSON_SERVER;
          exchange.principal = principal;
          exchange.pending.set(idKey(requestId), { method, target });
          const out = engine.responseTransformer(exchange, "application/json", 200).transformJson(answer);
          if (out !== undefined || exchange.decision !== "allow") {
            fail(path, `answer changed (${exchange.reasons.join(", ") || "rewritten"})`);
          }
        };
      }
      case "scan_64k": {
        const requestId = 8;
        const value = JSON.parse(answerPost(WORKLOADS.call_64k_json.requestBody(requestId), false).body);
        const message = classifyMessage(value) as JsonRpcMessage;
        return () => {
          const exchange = engine.newExchange("POST");
          exchange.server = JSON_SERVER;
          const pending = { method: "tools/call", target: "get_report" };
          const r = engine.security.inspectServerMessage(exchange, message, pending);
          if (r.kind !== "same") fail(path, `scan verdict ${r.kind}`);
        };
      }
      case "sse_64k": {
        const requestId = 9;
        const text = answerPost(WORKLOADS.call_64k_sse.requestBody(requestId), true).body;
        const chunks: Uint8Array[] = [];
        for (let i = 0; i < text.length; i += SSE_CHUNK_BYTES) {
          chunks.push(encoder.encode(text.slice(i, i + SSE_CHUNK_BYTES)));
        }
        const expected = encoder.encode(text).byteLength;
        const principal = (await this.decide(SSE_SERVER, WORKLOADS.call_64k_sse.requestBody(requestId), path))
          .principal;
        return () => {
          const exchange = engine.newExchange("POST");
          exchange.server = SSE_SERVER;
          exchange.principal = principal;
          exchange.pending.set(idKey(requestId), { method: "tools/call", target: "get_report" });
          const t = engine.responseTransformer(exchange, "text/event-stream", 200);
          let bytes = 0;
          for (const c of chunks) bytes += t.push(c).byteLength;
          bytes += t.end().byteLength;
          // Event ids are sealed, so the length may differ; the event must be there, whole.
          if (bytes < expected - 64 || exchange.decision !== "allow") {
            fail(path, `stream changed: ${bytes} bytes of ${expected} (${exchange.reasons.join(", ")})`);
          }
        };
      }
      default:
        return fail(path, "no operation");
    }
  }
}
