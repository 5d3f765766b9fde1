import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadPackageDefinition, type GrpcObject, type ServiceClientConstructor } from "@grpc/grpc-js";
import {
  loadSync,
  type EnumTypeDefinition,
  type MethodDefinition,
  type Options,
  type PackageDefinition,
  type ServiceDefinition,
} from "@grpc/proto-loader";
import { checkRequestDecoder, metadataContextWhenRead, serverProcessingRequestDecoder } from "./codec.js";
import {
  encodeCheckResponse,
  encodeProcessingResponse,
  replyEncoder,
  setStatusCodes,
} from "./reply-codec.js";
import { EncodedMessage, EncodedStruct, appendStructField, encodeStructField, withoutField } from "./wire.js";

/**
 * Envoy's gRPC services, loaded once from the .proto files that @grpc/grpc-js-xds ships (see
 * proto/README.md). Messages are plain objects: field names snake_case as in Envoy's JSON
 * (`raw_value`, `end_of_stream`), bytes as Buffer, enums as their names, no default values
 * filled in, and each oneof reported by name (`response: "request_headers"`).
 *
 * One exception to snake_case: google.protobuf.Struct/Value come from protobufjs' built-in
 * well-known types, whose fields are camelCase (`stringValue`, `structValue`); struct.ts
 * converts them.
 */

export const AUTHORIZATION_SERVICE = "envoy.service.auth.v3.Authorization";
export const EXTERNAL_PROCESSOR_SERVICE = "envoy.service.ext_proc.v3.ExternalProcessor";
export const HEALTH_SERVICE = "grpc.health.v1.Health";
export const RATE_LIMIT_SERVICE = "envoy.service.ratelimit.v3.RateLimitService";

const PROTO_FILES = [
  "envoy/service/auth/v3/external_auth.proto",
  "envoy/service/ext_proc/v3/external_processor.proto",
  "envoy/service/ratelimit/v3/rls.proto",
  "grpc/health/v1/health.proto",
];

export interface EnvoyProtos {
  definition: PackageDefinition;
  Authorization: ServiceClientConstructor;
  ExternalProcessor: ServiceClientConstructor;
  Health: ServiceClientConstructor;
  RateLimitService: ServiceClientConstructor;
  /** envoy.type.v3.StatusCode: enum name (as decoded) to HTTP status number, and back. */
  httpStatusNumber(value: string | number | undefined): number;
  httpStatusName(status: number): string | number;
}

/** Walks up from this module to the package root, which holds proto/ (works from src/ and dist/). */
export function packageProtoDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, "proto");
    if (existsSync(join(candidate, "grpc/health/v1/health.proto"))) return candidate;
    const parent = dirname(dir);
    if (parent === dir) throw new Error("mcp-gateway: cannot find the proto/ directory of the package");
    dir = parent;
  }
}

function xdsDepsDir(): string {
  const require = createRequire(import.meta.url);
  // The package's main file is build/src/index.js; its .proto files live in deps/.
  return join(dirname(require.resolve("@grpc/grpc-js-xds")), "..", "..", "deps");
}

function lookup(root: GrpcObject, name: string): ServiceClientConstructor {
  let node: unknown = root;
  for (const part of name.split(".")) node = (node as Record<string, unknown>)[part];
  if (typeof node !== "function") throw new Error(`gRPC service ${name} missing from the loaded protos`);
  return node as ServiceClientConstructor;
}

type Serialize = (value: object) => Buffer;
type Deserialize = (bytes: Buffer) => object;

/**
 * For the ProcessingRequests codec.ts leaves to proto-loader: the same without proto-loader's
 * conversion of metadata_context (field 8) except on request_headers messages: Envoy repeats the ext_authz Struct in every message of a stream,
 * and the ext-service reads it once, with the request headers (see wire.ts). On response_headers
 * it is decoded only when read: a stream that starts there is a local reply of an earlier filter,
 * judged by that metadata; on a normal stream nobody reads it. On other messages it is left out.
 */
function processingRequestDeserializer(deserialize: Deserialize) {
  return (bytes: Buffer): object => {
    // metadata_context (8), unless the message is request_headers (2)
    const stripped = withoutField(bytes, 8, 2);
    const message = deserialize(stripped ?? bytes) as { response_headers?: unknown };
    if (stripped !== undefined && stripped !== bytes && message.response_headers !== undefined)
      metadataContextWhenRead(
        message,
        () => (deserialize(bytes) as { metadata_context?: unknown }).metadata_context,
      );
    return message;
  };
}

/** Encodes the message without its Struct field `name` (an object, or an EncodedStruct), then that field (see wire.ts). */
function structFieldLast(serialize: Serialize, fieldNumber: number, name: string) {
  return (message: object): Buffer => {
    const struct = (message as Record<string, unknown>)[name];
    if (struct === undefined || struct === null) return serialize(message);
    const { [name]: _struct, ...rest } = message as Record<string, unknown>;
    if (struct instanceof EncodedStruct) return appendStructField(serialize(rest), fieldNumber, struct);
    return Buffer.concat([serialize(rest), encodeStructField(fieldNumber, struct as object)]);
  };
}

/** Replies that are the same on every exchange (see constantMessage): encoded once, on first use. */
const constants = new WeakSet<object>();
const encodedConstants = new WeakMap<object, Buffer>();

/**
 * Marks a reply that never changes, frozen all the way down, so the server-side serializer
 * encodes it once: the usual ext_proc continue replies and mode overrides are a fixed handful,
 * as are the rate limit service's all-OK answers.
 * grpc-js copies the serialized bytes into each frame, so one Buffer serves every write.
 */
export function constantMessage<T extends object>(message: T): T {
  const freeze = (value: unknown): void => {
    if (typeof value !== "object" || value === null || Object.isFrozen(value)) return;
    for (const v of Object.values(value)) freeze(v);
    Object.freeze(value);
  };
  freeze(message);
  constants.add(message);
  return message;
}

/** Constants encoded once (constantMessage); a reply already in wire form (EncodedMessage) as it is. */
function onceForConstants(serialize: Serialize): Serialize {
  return (message: object): Buffer => {
    if (message instanceof EncodedMessage) return message.bytes;
    if (!constants.has(message)) return serialize(message);
    let bytes = encodedConstants.get(message);
    if (bytes === undefined) encodedConstants.set(message, (bytes = serialize(message)));
    return bytes;
  };
}

/**
 * The server side's hot path (reading requests, writing replies) decodes the ext_proc and
 * ext_authz requests directly (codec.ts) and encodes their replies directly (reply-codec.ts), with
 * proto-loader for what those leave (skipping the Struct fields' conversions that cost most, see
 * wire.ts), and sends constant or pre-encoded replies without encoding them again; the messages
 * our code sees and sends are unchanged.
 * The client side (the Envoy-role client) keeps proto-loader's conversions.
 */
function tuneServerSide(definition: PackageDefinition): void {
  const process = (definition[EXTERNAL_PROCESSOR_SERVICE] as ServiceDefinition).Process as MethodDefinition<
    object,
    object
  >;
  const check = (definition[AUTHORIZATION_SERVICE] as ServiceDefinition).Check as MethodDefinition<
    object,
    object
  >;
  const writable = (m: MethodDefinition<object, object>) =>
    m as { -readonly [K in keyof typeof m]: (typeof m)[K] };
  writable(process).requestDeserialize = serverProcessingRequestDecoder(
    process.requestDeserialize,
    processingRequestDeserializer(process.requestDeserialize),
  );
  writable(check).requestDeserialize = checkRequestDecoder(check.requestDeserialize);
  writable(process).responseSerialize = onceForConstants(
    replyEncoder(encodeProcessingResponse, structFieldLast(process.responseSerialize, 8, "dynamic_metadata")),
  );
  writable(check).responseSerialize = onceForConstants(
    replyEncoder(encodeCheckResponse, structFieldLast(check.responseSerialize, 4, "dynamic_metadata")),
  );
  const rateLimit = (definition[RATE_LIMIT_SERVICE] as ServiceDefinition).ShouldRateLimit as MethodDefinition<
    object,
    object
  >;
  writable(rateLimit).responseSerialize = onceForConstants(rateLimit.responseSerialize);
}

let loaded: EnvoyProtos | undefined;

/** The .proto files and proto-loader options the services are loaded with (tests load the same). */
export function envoyProtoSources(): { files: string[]; options: Options } {
  const deps = xdsDepsDir();
  return {
    files: PROTO_FILES,
    options: {
      keepCase: true,
      bytes: Buffer,
      longs: Number,
      enums: String,
      defaults: false,
      oneofs: true,
      includeDirs: [
        packageProtoDir(),
        join(deps, "envoy-api"),
        join(deps, "xds"),
        join(deps, "googleapis"),
        join(deps, "protoc-gen-validate"),
      ],
    },
  };
}

export function envoyProtos(): EnvoyProtos {
  if (loaded) return loaded;
  const { files, options } = envoyProtoSources();
  const definition = loadSync(files, options);
  tuneServerSide(definition);
  const root = loadPackageDefinition(definition);
  const statusEnum = definition["envoy.type.v3.StatusCode"] as EnumTypeDefinition;
  const byName = new Map<string, number>();
  const byNumber = new Map<number, string>();
  for (const v of (statusEnum.type as { value: { name: string; number: number }[] }).value) {
    byName.set(v.name, v.number);
    byNumber.set(v.number, v.name);
  }
  setStatusCodes(byName);
  loaded = {
    definition,
    Authorization: lookup(root, AUTHORIZATION_SERVICE),
    ExternalProcessor: lookup(root, EXTERNAL_PROCESSOR_SERVICE),
    Health: lookup(root, HEALTH_SERVICE),
    RateLimitService: lookup(root, RATE_LIMIT_SERVICE),
    httpStatusNumber(value) {
      if (typeof value === "number") return value;
      if (value === undefined) return 0;
      return byName.get(value) ?? 0;
    },
    // Statuses outside Envoy's enum (e.g. 207) still encode: protobuf enums are open in proto3.
    httpStatusName: (status) => byNumber.get(status) ?? status,
  };
  return loaded;
}
