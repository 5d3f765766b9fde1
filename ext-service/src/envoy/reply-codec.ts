/**
 * Direct encoders for the replies the ext-service writes (ext_proc ProcessingResponse, four per
 * exchange, and ext_authz CheckResponse): the plain reply objects straight to wire bytes, without
 * protobufjs' fromObject (a message instance per nested object) and its writer's list of
 * operations. The bytes decode, with proto-loader, to the same message as proto-loader's own
 * encoding of the same object (the fields in the object's order, see messageSize).
 *
 * The schema below is the loaded .proto's (the version @grpc/grpc-js-xds ships), written out by
 * hand as codec.ts's decoders are. A value in the form the adapters write is encoded here: strings
 * as strings, bytes as Buffer/Uint8Array, bools as booleans, enums by name or non-negative number,
 * Struct fields as plain objects or EncodedStruct. Anything else (a number as a string, bytes as
 * base64, a negative int32, an enum name the schema lacks, a repeated field that is not an array, a
 * Struct protobufjs would refuse) makes the encoder give up on the whole reply, and the caller
 * encodes it with proto-loader, which converts it, or rejects it, as before.
 * test/envoy/reply-codec.property.test.ts checks both against proto-loader on generated replies.
 *
 * Wire format: https://protobuf.dev/programming-guides/encoding/.
 */

import { EncodedStruct } from "./encoded-struct.js";
import { Writer, encodeStruct, utf8Length, varintSize } from "./wire.js";

/** Thrown to give up on a reply (see above); one object, so a throw allocates nothing. */
const GIVE_UP: unique symbol = Symbol("give up");

/** Nesting the direct path encodes; these schemas are not recursive, so only a bug reaches it. */
const MAX_DEPTH = 16;

/** `other`: a field these encoders leave to proto-loader (google.rpc.Status details: protobufjs reads an Any's JSON form). */
type Kind =
  "string" | "bytes" | "bool" | "uint32" | "int32" | "int64" | "enum" | "message" | "struct" | "other";

interface Field {
  name: string;
  number: number;
  kind: Kind;
  repeated: boolean;
  /** The tag's bytes (field number and wire type), written before each value. */
  tag: number;
  message?: Schema;
  values?: ReadonlyMap<string, number>;
  /** A member of the message's oneof (each message here has at most one). */
  oneof: boolean;
}

/** A message's fields by name: a reply is read by its own keys, mostly one or two of many fields. */
type Schema = ReadonlyMap<string, Field>;

type FieldSpec = [
  name: string,
  number: number,
  kind: Kind,
  extra?: Schema | Record<string, number> | ReadonlyMap<string, number>,
];

function schema(specs: FieldSpec[], repeated: readonly string[] = [], oneof: readonly string[] = []): Schema {
  const fields = specs.map(([name, number, kind, extra]): Field => {
    const length = kind === "string" || kind === "bytes" || kind === "message" || kind === "struct";
    return {
      name,
      number,
      kind,
      repeated: repeated.includes(name),
      tag: number * 8 + (length ? 2 : 0),
      message: kind === "message" ? (extra as Schema) : undefined,
      values:
        kind !== "enum"
          ? undefined
          : extra instanceof Map
            ? extra
            : new Map(Object.entries(extra as Record<string, number>)),
      oneof: oneof.includes(name),
    };
  });
  return new Map(fields.map((f) => [f.name, f]));
}

// envoy.config.core.v3 and well-known types
const BOOL_VALUE = schema([["value", 1, "bool"]]);
const DURATION = schema([
  ["seconds", 1, "int64"],
  ["nanos", 2, "int32"],
]);
const HEADER_VALUE = schema([
  ["key", 1, "string"],
  ["value", 2, "string"],
  ["raw_value", 3, "bytes"],
]);
const HEADER_VALUE_OPTION = schema([
  ["header", 1, "message", HEADER_VALUE],
  ["append", 2, "message", BOOL_VALUE],
  [
    "append_action",
    3,
    "enum",
    { APPEND_IF_EXISTS_OR_ADD: 0, ADD_IF_ABSENT: 1, OVERWRITE_IF_EXISTS_OR_ADD: 2, OVERWRITE_IF_EXISTS: 3 },
  ],
  ["keep_empty_value", 4, "bool"],
]);
const HEADER_MAP = schema([["headers", 1, "message", HEADER_VALUE]], ["headers"]);
const QUERY_PARAMETER = schema([
  ["key", 1, "string"],
  ["value", 2, "string"],
]);

/** envoy.type.v3.StatusCode, filled from the loaded enum (protos.ts) on first use. */
const statusCodes = new Map<string, number>();
const HTTP_STATUS = schema([["code", 1, "enum", statusCodes]]);

// envoy.service.ext_proc.v3
const HEADER_MUTATION = schema(
  [
    ["set_headers", 1, "message", HEADER_VALUE_OPTION],
    ["remove_headers", 2, "string"],
  ],
  ["set_headers", "remove_headers"],
);
const COMMON_RESPONSE = schema([
  ["status", 1, "enum", { CONTINUE: 0, CONTINUE_AND_REPLACE: 1 }],
  ["header_mutation", 2, "message", HEADER_MUTATION],
  [
    "body_mutation",
    3,
    "message",
    schema(
      [
        ["body", 1, "bytes"],
        ["clear_body", 2, "bool"],
      ],
      [],
      ["body", "clear_body"],
    ),
  ],
  ["trailers", 4, "message", HEADER_MAP],
  ["clear_route_cache", 5, "bool"],
]);
const WITH_COMMON_RESPONSE = schema([["response", 1, "message", COMMON_RESPONSE]]);
const TRAILERS_RESPONSE = schema([["header_mutation", 1, "message", HEADER_MUTATION]]);
const HEADER_SEND_MODE = { DEFAULT: 0, SEND: 1, SKIP: 2 };
const BODY_SEND_MODE = { NONE: 0, STREAMED: 1, BUFFERED: 2, BUFFERED_PARTIAL: 3 };
const PROCESSING_RESPONSE = schema(
  [
    ["request_headers", 1, "message", WITH_COMMON_RESPONSE],
    ["response_headers", 2, "message", WITH_COMMON_RESPONSE],
    ["request_body", 3, "message", WITH_COMMON_RESPONSE],
    ["response_body", 4, "message", WITH_COMMON_RESPONSE],
    ["request_trailers", 5, "message", TRAILERS_RESPONSE],
    ["response_trailers", 6, "message", TRAILERS_RESPONSE],
    [
      "immediate_response",
      7,
      "message",
      schema([
        ["status", 1, "message", HTTP_STATUS],
        ["headers", 2, "message", HEADER_MUTATION],
        ["body", 3, "bytes"],
        ["grpc_status", 4, "message", schema([["status", 1, "uint32"]])],
        ["details", 5, "string"],
      ]),
    ],
    ["dynamic_metadata", 8, "struct"],
    [
      "mode_override",
      9,
      "message",
      schema([
        ["request_header_mode", 1, "enum", HEADER_SEND_MODE],
        ["response_header_mode", 2, "enum", HEADER_SEND_MODE],
        ["request_body_mode", 3, "enum", BODY_SEND_MODE],
        ["response_body_mode", 4, "enum", BODY_SEND_MODE],
        ["request_trailer_mode", 5, "enum", HEADER_SEND_MODE],
        ["response_trailer_mode", 6, "enum", HEADER_SEND_MODE],
      ]),
    ],
    ["override_message_timeout", 10, "message", DURATION],
  ],
  [],
  [
    "request_headers",
    "response_headers",
    "request_body",
    "response_body",
    "request_trailers",
    "response_trailers",
    "immediate_response",
  ],
);

// envoy.service.auth.v3
const CHECK_RESPONSE = schema(
  [
    [
      "status",
      1,
      "message",
      schema(
        [
          ["code", 1, "int32"],
          ["message", 2, "string"],
          ["details", 3, "other"],
        ],
        ["details"],
      ),
    ],
    [
      "denied_response",
      2,
      "message",
      schema(
        [
          ["status", 1, "message", HTTP_STATUS],
          ["headers", 2, "message", HEADER_VALUE_OPTION],
          ["body", 3, "string"],
        ],
        ["headers"],
      ),
    ],
    [
      "ok_response",
      3,
      "message",
      schema(
        [
          ["headers", 2, "message", HEADER_VALUE_OPTION],
          ["dynamic_metadata", 3, "struct"],
          ["headers_to_remove", 5, "string"],
          ["response_headers_to_add", 6, "message", HEADER_VALUE_OPTION],
          ["query_parameters_to_set", 7, "message", QUERY_PARAMETER],
          ["query_parameters_to_remove", 8, "string"],
        ],
        [
          "headers",
          "headers_to_remove",
          "response_headers_to_add",
          "query_parameters_to_set",
          "query_parameters_to_remove",
        ],
      ),
    ],
    ["dynamic_metadata", 4, "struct"],
  ],
  [],
  ["denied_response", "ok_response"],
);

// The reply being encoded; module state, as nothing here awaits.
/** Lengths of nested messages and strings, in the order they are written (pass 1 fills, pass 2 reads). */
let sizes: number[] = [];
/** The bytes of each Struct field, in the order they are written. */
let structs: Buffer[] = [];
let nextSize = 0;
let nextStruct = 0;

type Obj = Record<string, unknown>;

function enumNumber(field: Field, value: unknown): number {
  if (typeof value === "string") {
    const n = field.values!.get(value);
    if (n === undefined) throw GIVE_UP; // protobufjs leaves an unknown name out
    return n;
  }
  // Negative numbers are ten-byte varints; protobufjs' other conversions are its own.
  if (typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= 0x7fffffff) return value;
  throw GIVE_UP;
}

/** The size of one value of `field` (without its tag); records what pass 2 needs. */
function valueSize(field: Field, value: unknown, depth: number): number {
  switch (field.kind) {
    case "string": {
      if (typeof value !== "string") throw GIVE_UP;
      const n = utf8Length(value);
      sizes.push(n);
      return varintSize(n) + n;
    }
    case "bytes":
      if (!(value instanceof Uint8Array)) throw GIVE_UP;
      return varintSize(value.length) + value.length;
    case "bool":
      if (typeof value !== "boolean") throw GIVE_UP;
      return 1;
    case "uint32":
      if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > 0xffffffff)
        throw GIVE_UP;
      return varintSize(value);
    case "int32":
      if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > 0x7fffffff)
        throw GIVE_UP;
      return varintSize(value);
    case "int64":
      if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) throw GIVE_UP;
      return varintSize(value);
    case "enum":
      return varintSize(enumNumber(field, value));
    case "other":
      throw GIVE_UP;
    case "struct": {
      let bytes: Buffer;
      if (value instanceof EncodedStruct) bytes = value.bytes;
      else if (typeof value === "object") {
        try {
          bytes = encodeStruct(value as Obj);
        } catch {
          throw GIVE_UP; // proto-loader's own path reports it
        }
      } else throw GIVE_UP;
      structs.push(bytes);
      return varintSize(bytes.length) + bytes.length;
    }
    case "message": {
      // protobufjs' fromObject throws on a non-object; a Uint8Array or array would be read oddly.
      if (typeof value !== "object" || value === null || value instanceof Uint8Array || Array.isArray(value))
        throw GIVE_UP;
      if (depth >= MAX_DEPTH) throw GIVE_UP;
      const slot = sizes.length;
      sizes.push(0);
      const n = messageSize(field.message!, value as Obj, depth + 1);
      sizes[slot] = n;
      return varintSize(n) + n;
    }
  }
}

/**
 * Fields are read in the reply's own key order (for...in, as the adapters' literals have few of a
 * message's fields), so they are written in that order rather than protobufjs' field-number order:
 * the same message once decoded, except where two members of one oneof are set (the later one
 * wins), which gives up. Keys the schema lacks are skipped, as protobufjs' fromObject skips them.
 */
function messageSize(fields: Schema, message: Obj, depth: number): number {
  let size = 0;
  let oneof = false;
  for (const key in message) {
    const field = fields.get(key);
    if (field === undefined) continue;
    const value = message[key];
    if (value === undefined || value === null) continue;
    if (field.oneof) {
      if (oneof) throw GIVE_UP;
      oneof = true;
    }
    if (field.repeated) {
      if (!Array.isArray(value)) throw GIVE_UP;
      const tag = varintSize(field.tag);
      for (let j = 0; j < value.length; j++) {
        const item: unknown = value[j];
        if (item === undefined || item === null) throw GIVE_UP;
        size += tag + valueSize(field, item, depth);
      }
    } else size += varintSize(field.tag) + valueSize(field, value, depth);
  }
  return size;
}

function writeValue(w: Writer, field: Field, value: unknown): void {
  const buf = w.buf;
  switch (field.kind) {
    case "string":
      w.string(value as string, sizes[nextSize++]!);
      return;
    case "bytes": {
      const bytes = value as Uint8Array;
      w.varint(bytes.length);
      buf.set(bytes, w.pos);
      w.pos += bytes.length;
      return;
    }
    case "bool":
      buf[w.pos++] = value ? 1 : 0;
      return;
    case "uint32":
    case "int32":
    case "int64":
      w.varint(value as number);
      return;
    case "enum":
      w.varint(enumNumber(field, value));
      return;
    case "struct": {
      const bytes = structs[nextStruct++]!;
      w.varint(bytes.length);
      buf.set(bytes, w.pos);
      w.pos += bytes.length;
      return;
    }
    case "message":
      w.varint(sizes[nextSize++]!);
      writeMessage(w, field.message!, value as Obj);
      return;
    case "other":
      throw new Error("unreachable: pass 1 gives up on it");
  }
}

function writeMessage(w: Writer, fields: Schema, message: Obj): void {
  for (const key in message) {
    const field = fields.get(key);
    if (field === undefined) continue;
    const value = message[key];
    if (value === undefined || value === null) continue;
    if (field.repeated) {
      const items = value as unknown[];
      for (let j = 0; j < items.length; j++) {
        w.varint(field.tag);
        writeValue(w, field, items[j]);
      }
    } else {
      w.varint(field.tag);
      writeValue(w, field, value);
    }
  }
}

function encode(fields: Schema, message: object): Buffer | undefined {
  // proto-loader refuses an array; anything but a plain object is its to convert or refuse.
  if (typeof message !== "object" || message === null || Array.isArray(message)) return undefined;
  sizes = [];
  structs = [];
  nextSize = 0;
  nextStruct = 0;
  let size: number;
  try {
    size = messageSize(fields, message as Obj, 0);
  } catch (err) {
    if (err === GIVE_UP) return undefined;
    throw err;
  }
  const buf = Buffer.allocUnsafe(size);
  const w = new Writer(buf, sizes);
  writeMessage(w, fields, message as Obj);
  if (w.pos !== size) throw new Error(`reply encoding wrote ${w.pos} of ${size} bytes`);
  sizes = [];
  structs = [];
  return buf;
}

/** Every name of envoy.type.v3.StatusCode, as loaded (the ImmediateResponse and denial status). */
export function setStatusCodes(byName: ReadonlyMap<string, number>): void {
  statusCodes.clear();
  for (const [name, number] of byName) statusCodes.set(name, number);
}

/** A ProcessingResponse in wire form, or undefined when the caller must encode it with proto-loader. */
export function encodeProcessingResponse(reply: object): Buffer | undefined {
  return encode(PROCESSING_RESPONSE, reply);
}

/** A CheckResponse in wire form, or undefined when the caller must encode it with proto-loader. */
export function encodeCheckResponse(reply: object): Buffer | undefined {
  return encode(CHECK_RESPONSE, reply);
}

type Serialize = (value: object) => Buffer;

/** The server side's reply serializer: the direct encoder, with `fallback` for what it leaves. */
export function replyEncoder(direct: (reply: object) => Buffer | undefined, fallback: Serialize): Serialize {
  return (reply: object): Buffer => direct(reply) ?? fallback(reply);
}
