/**
 * The Envoy plane's hot paths for the instruction counts (bench/instructions.ts): one whole
 * exchange through the gRPC server, as Envoy drives it for one MCP request (ext_authz Check, the
 * global rate limit filter's ShouldRateLimit, one ext_proc stream with request headers, the
 * buffered request body, response headers and the response body), against the real ext-service
 * and against the do-nothing server (bench/noop-ext-service.ts), so the ext-service's cost per
 * exchange is a ratio of instructions.
 *
 * Both servers run in the counted process; the Envoy-role client runs in a child process that
 * callgrind does not follow, so only the servers' work (gRPC framing, protobuf, policy) is
 * counted. The client runs a batch of exchanges one after the other on each request (never two
 * at once), so the server reads the same frames in the same order on every run.
 */
import { fork, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { loadEngine } from "../ext-service/src/config/compile.js";
import { SHIPPED_CHAIN } from "../ext-service/src/envoy/envoy-model.js";
import {
  EnvoyRoleClient,
  type HttpRequestSpec,
  type UpstreamResponseSpec,
} from "../ext-service/src/envoy/envoy-role-client.js";
import { startExtService, type ExtService } from "../ext-service/src/envoy/server.js";
import { PinVerifier } from "../ext-service/src/upstream/pin-verifier.js";
import { createLogger } from "../ext-service/src/telemetry/logger.js";
import { startNoopExtService, type NoopExtService } from "./noop-ext-service.js";
import { REFERENCE_TOOLS, answerPost } from "./reference-server.js";
import { PROTOCOL_VERSION, WORKLOADS, checkAnswer, type WorkloadId } from "./workloads.js";

export type GrpcSideName = "ext-service" | "noop";

/** What the counted process asks the client for: `count` exchanges of `workload` on `side`. */
interface RunRequest {
  seq: number;
  side: GrpcSideName;
  workload: WorkloadId;
  count: number;
}
type RunReply = { seq: number; error?: string };

/** SSE bodies reach ext_proc in chunks that do not align with events, as in the bench. */
const SSE_CHUNK_BYTES = 16 * 1024;
/**
 * Under valgrind the server is tens of times slower (and the first calls run cold code): none of
 * the modelled chain's timeouts may fire, or the path would count a local reply.
 */
const TIMEOUT_MS = 600_000;

/** The servers (in this process) and the client (a child process) of the gRPC paths. */
export class GrpcFixture {
  private seq = 0;
  private readonly waiting = new Map<number, { resolve(): void; reject(err: Error): void }>();

  private constructor(
    private readonly extService: ExtService,
    private readonly noop: NoopExtService,
    private readonly client: ChildProcess,
  ) {
    client.on("message", (reply: RunReply) => {
      const w = this.waiting.get(reply.seq);
      this.waiting.delete(reply.seq);
      if (reply.error) w?.reject(new Error(reply.error));
      else w?.resolve();
    });
  }

  static async start(configFile: string, token: string): Promise<GrpcFixture> {
    const { engine } = loadEngine(configFile);
    // Audit records are serialized and written as in production; the sink drops the bytes.
    const logger = createLogger("info", { write: (_line: string) => true });
    // The pin check before the first call gets the reference server's list without HTTP.
    const listed = JSON.parse(JSON.stringify(REFERENCE_TOOLS)) as Record<string, unknown>[];
    const extService = await startExtService({
      engine,
      logger,
      grpcHost: "127.0.0.1",
      grpcPort: 0,
      adminHost: "127.0.0.1",
      adminPort: 0,
      brokerHost: "127.0.0.1",
      brokerPort: 0,
      pinVerifier: new PinVerifier(logger, () => Promise.resolve(listed)),
    });
    const noop = await startNoopExtService("127.0.0.1", 0);
    const ts = import.meta.url.endsWith(".ts");
    const client = fork(
      fileURLToPath(import.meta.url),
      ["--grpc-client", extService.grpcAddress, noop.address, token],
      // Natively and at full speed: none of the counted process's flags (--predictable, ...).
      { stdio: ["ignore", "inherit", "inherit", "ipc"], execArgv: ts ? ["--import", "tsx"] : [] },
    );
    return new GrpcFixture(extService, noop, client);
  }

  /** `count` exchanges of `workload` on `side`, one after the other; rejects on any wrong answer. */
  run(side: GrpcSideName, workload: WorkloadId, count: number): Promise<void> {
    const seq = ++this.seq;
    return new Promise((resolve, reject) => {
      this.waiting.set(seq, { resolve, reject });
      this.client.send({ seq, side, workload, count } satisfies RunRequest);
    });
  }

  async close(): Promise<void> {
    this.client.kill();
    await Promise.all([this.extService.close(0, 0), this.noop.close()]);
  }
}

function chunks(text: string, size: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < text.length; i += size) out.push(text.slice(i, i + size));
  return out;
}

/** The child process: plays Envoy against both servers on request. */
async function clientMain(extServiceAddress: string, noopAddress: string, token: string): Promise<void> {
  const options = {
    chain: {
      messageTimeoutMs: TIMEOUT_MS,
      maxMessageTimeoutMs: TIMEOUT_MS,
      authzTimeoutMs: TIMEOUT_MS,
      streamIdleTimeoutMs: TIMEOUT_MS,
      globalRateLimit: SHIPPED_CHAIN.globalRateLimit && {
        ...SHIPPED_CHAIN.globalRateLimit,
        timeoutMs: TIMEOUT_MS,
      },
    },
  };
  const clients: Record<GrpcSideName, EnvoyRoleClient> = {
    "ext-service": new EnvoyRoleClient(extServiceAddress, options),
    noop: new EnvoyRoleClient(noopAddress, options),
  };
  const encoder = new TextEncoder();
  const prepared = new Map<WorkloadId, { request: HttpRequestSpec; response: UpstreamResponseSpec }>();
  const id = 1_000_000;
  const prepare = (workloadId: WorkloadId) => {
    let p = prepared.get(workloadId);
    if (p) return p;
    const workload = WORKLOADS[workloadId];
    const body = workload.requestBody(id);
    const sse = workload.responseType === "text/event-stream";
    const answer = answerPost(body, sse);
    p = {
      request: {
        method: "POST",
        path: `/mcp/${workload.server}`,
        headers: {
          "content-type": "application/json",
          accept: "application/json, text/event-stream",
          authorization: `Bearer ${token}`,
          "mcp-protocol-version": PROTOCOL_VERSION,
        },
        body: encoder.encode(body),
      },
      response: {
        status: answer.status,
        headers: { "content-type": answer.contentType ?? "application/octet-stream" },
        body: sse ? chunks(answer.body, SSE_CHUNK_BYTES) : answer.body,
      },
    };
    prepared.set(workloadId, p);
    return p;
  };
  const runOne = async (side: GrpcSideName, workloadId: WorkloadId) => {
    const { request, response } = prepare(workloadId);
    const r = await clients[side].exchange(request, () => response);
    if (r.answeredBy !== "upstream") {
      const why = r.checkError ? `: ext_authz got no answer: ${r.checkError}` : "";
      throw new Error(`${side} ${workloadId}: answered by ${r.answeredBy} (${r.response.status})${why}`);
    }
    const problem = checkAnswer(
      WORKLOADS[workloadId],
      id,
      r.response.status,
      r.response.headers["content-type"],
      r.response.body.toString("utf8"),
    );
    if (problem) throw new Error(`${side} ${workloadId}: ${problem}`);
  };
  process.on("message", (req: RunRequest) => {
    void (async () => {
      try {
        for (let i = 0; i < req.count; i++) await runOne(req.side, req.workload);
        process.send!({ seq: req.seq } satisfies RunReply);
      } catch (err) {
        process.send!({ seq: req.seq, error: String(err) } satisfies RunReply);
      }
    })();
  });
  process.on("disconnect", () => {
    for (const c of Object.values(clients)) c.close();
    process.exit(0);
  });
}

if (process.argv[2] === "--grpc-client") {
  void clientMain(process.argv[3]!, process.argv[4]!, process.argv[5]!);
}
