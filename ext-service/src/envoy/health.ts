import {
  status as GrpcStatus,
  type sendUnaryData,
  type ServerUnaryCall,
  type ServerWritableStream,
} from "@grpc/grpc-js";
import type { ServingStatus } from "./types.js";

interface HealthRequest {
  service?: string;
}
interface HealthResponse {
  status: ServingStatus;
}

/**
 * grpc.health.v1.Health for the ext-service: "" (the whole server) and each service it hosts
 * are SERVING while running and NOT_SERVING once draining, so Envoy's gRPC health checks move
 * traffic away before the process stops.
 */
export class HealthService {
  private status: ServingStatus = "SERVING";
  private readonly watchers = new Set<ServerWritableStream<HealthRequest, HealthResponse>>();

  constructor(private readonly services: readonly string[]) {}

  get serving(): boolean {
    return this.status === "SERVING";
  }

  /** Marks every service NOT_SERVING and ends open Watch streams (so shutdown is not held up). */
  drain(): void {
    this.status = "NOT_SERVING";
    for (const call of this.watchers) {
      call.write({ status: this.status });
      call.end();
    }
    this.watchers.clear();
  }

  private known(service: string | undefined): boolean {
    return !service || this.services.includes(service);
  }

  readonly handlers = {
    Check: (
      call: ServerUnaryCall<HealthRequest, HealthResponse>,
      callback: sendUnaryData<HealthResponse>,
    ): void => {
      if (!this.known(call.request.service)) {
        callback({ code: GrpcStatus.NOT_FOUND, details: `unknown service '${call.request.service}'` });
        return;
      }
      callback(null, { status: this.status });
    },
    Watch: (call: ServerWritableStream<HealthRequest, HealthResponse>): void => {
      if (!this.known(call.request.service)) {
        // The set of services never changes at run time, so the stream has nothing more to say.
        call.write({ status: "SERVICE_UNKNOWN" });
        call.end();
        return;
      }
      call.write({ status: this.status });
      if (!this.serving) {
        call.end();
        return;
      }
      this.watchers.add(call);
      call.on("cancelled", () => this.watchers.delete(call));
    },
  };
}
