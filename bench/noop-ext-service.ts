/**
 * A do-nothing ext_authz + ext_proc + rate limit server: allows every Check, answers every
 * ext_proc message with CONTINUE and no mutation, and every ShouldRateLimit with OK. The baseline
 * the real ext-service is measured against (bench/ext-service.ts): same gRPC stack, same protos,
 * the same calls per request from the shipped filter chain (its Check names an agent, so the
 * global rate limit filter asks as it does for the real one), no policy.
 *
 * Run alone: npx tsx bench/noop-ext-service.ts [port]
 */
import {
  Server,
  ServerCredentials,
  type sendUnaryData,
  type ServerDuplexStream,
  type ServerUnaryCall,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { envoyProtos } from "../ext-service/src/envoy/protos.js";
import type { RateLimitRequest, RateLimitResponse } from "../ext-service/src/envoy/ratelimit.js";
import type {
  CheckRequest,
  CheckResponse,
  ProcessingRequest,
  ProcessingResponse,
} from "../ext-service/src/envoy/types.js";

/** ext_authz's allow with no header changes. */
export const ALLOW: CheckResponse = { status: { code: 0 }, ok_response: {} };

/**
 * The do-nothing server's allow: it names an agent as ext_authz does, so the modelled chain's
 * global rate limit filter makes its ShouldRateLimit call against this server too.
 */
const ALLOW_AS_AGENT: CheckResponse = {
  status: { code: 0 },
  ok_response: { headers: [{ header: { key: "x-mcp-agent", value: "noop" }, append: { value: false } }] },
};

/** ext_proc CONTINUE with no mutation, for whatever message came. */
export function continueFor(request: ProcessingRequest): ProcessingResponse {
  switch (request.request) {
    case "request_headers":
      return { request_headers: { response: {} } };
    case "request_body":
      return { request_body: { response: {} } };
    case "response_headers":
      return { response_headers: { response: {} } };
    case "response_body":
      return { response_body: { response: {} } };
    case "request_trailers":
      return { request_trailers: {} };
    default:
      return { response_trailers: {} };
  }
}

export interface NoopExtService {
  address: string;
  close(): Promise<void>;
}

export async function startNoopExtService(host = "127.0.0.1", port = 0): Promise<NoopExtService> {
  const protos = envoyProtos();
  const server = new Server();
  server.addService(protos.Authorization.service, {
    Check: (_call: ServerUnaryCall<CheckRequest, CheckResponse>, callback: sendUnaryData<CheckResponse>) =>
      callback(null, ALLOW_AS_AGENT),
  } as UntypedServiceImplementation);
  server.addService(protos.RateLimitService.service, {
    ShouldRateLimit: (
      call: ServerUnaryCall<RateLimitRequest, RateLimitResponse>,
      callback: sendUnaryData<RateLimitResponse>,
    ) =>
      callback(null, {
        overall_code: "OK",
        statuses: (call.request.descriptors ?? []).map(() => ({ code: "OK" as const })),
      }),
  } as UntypedServiceImplementation);
  server.addService(protos.ExternalProcessor.service, {
    Process: (call: ServerDuplexStream<ProcessingRequest, ProcessingResponse>) => {
      call.on("data", (request: ProcessingRequest) => call.write(continueFor(request)));
      call.on("end", () => call.end());
      call.on("error", () => undefined);
    },
  } as UntypedServiceImplementation);
  const bound = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${host}:${port}`, ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  return {
    address: `${host}:${bound}`,
    close: () =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 2000);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      }),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const port = Number(process.argv[2] ?? 0);
  startNoopExtService("127.0.0.1", port).then((s) => {
    process.stdout.write(`noop ext-service on ${s.address}\n`);
    const stop = () => void s.close().then(() => process.exit(0));
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
  });
}
