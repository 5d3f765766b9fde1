import {
  Server,
  ServerCredentials,
  status as GrpcStatus,
  type sendUnaryData,
  type ServerDuplexStream,
  type ServerUnaryCall,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { ALLOW, continueFor } from "../../bench/noop-ext-service.js";
import { envoyProtos } from "../../ext-service/src/envoy/protos.js";
import type {
  CheckRequest,
  CheckResponse,
  ProcessingRequest,
  ProcessingResponse,
} from "../../ext-service/src/envoy/types.js";

/**
 * An ext_authz + ext_proc server whose answers each test scripts, to make the Envoy model meet
 * what the real ext-service never does (silence, wrong replies, early closes, errors).
 */

export type ProcessStreamCall = ServerDuplexStream<ProcessingRequest, ProcessingResponse>;

/** Answers one ext_proc message: a reply, nothing (stay silent), or act on the call itself. */
export type ProcessScript = (
  request: ProcessingRequest,
  call: ProcessStreamCall,
) => ProcessingResponse | undefined;

// The do-nothing answers are the bench's no-op ext-service's, so both play the same Envoy peer.
export { ALLOW, continueFor };

export interface ScriptedProcessor {
  address: string;
  check: (request: CheckRequest) => CheckResponse;
  process: ProcessScript;
  /** Every stream: the messages received in order, and how it ended on the server side. */
  streams: { messages: ProcessingRequest[]; ending?: "end" | "cancelled" }[];
  reset(): void;
  close(): Promise<void>;
}

export async function startScriptedProcessor(): Promise<ScriptedProcessor> {
  const protos = envoyProtos();
  const server = new Server();
  const state: ScriptedProcessor = {
    address: "",
    check: () => ALLOW,
    process: continueFor,
    streams: [],
    reset() {
      state.check = () => ALLOW;
      state.process = continueFor;
      state.streams = [];
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.forceShutdown();
        resolve();
      }),
  };
  server.addService(protos.Authorization.service, {
    Check: (call: ServerUnaryCall<CheckRequest, CheckResponse>, callback: sendUnaryData<CheckResponse>) =>
      callback(null, state.check(call.request)),
  } as UntypedServiceImplementation);
  server.addService(protos.ExternalProcessor.service, {
    Process: (call: ProcessStreamCall) => {
      const stream: ScriptedProcessor["streams"][number] = { messages: [] };
      state.streams.push(stream);
      const ending = (how: "end" | "cancelled") => {
        stream.ending ??= how;
      };
      call.on("data", (request: ProcessingRequest) => {
        stream.messages.push(request);
        const reply = state.process(request, call);
        if (reply && !call.cancelled && !call.destroyed) call.write(reply);
      });
      call.on("end", () => {
        ending("end");
        if (!call.destroyed) call.end();
      });
      call.on("cancelled", () => ending("cancelled"));
      call.on("error", () => ending("cancelled"));
    },
  } as UntypedServiceImplementation);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, bound) =>
      err ? reject(err) : resolve(bound),
    ),
  );
  state.address = `127.0.0.1:${port}`;
  return state;
}

/** Fails the stream with a gRPC status, as a processor that crashes mid-stream would. */
export function failStream(call: ProcessStreamCall, code = GrpcStatus.UNAVAILABLE): undefined {
  // grpc-js ends a server stream with the status of an 'error' it emits.
  call.emit("error", Object.assign(new Error("processor failed"), { code, details: "processor failed" }));
  return undefined;
}
