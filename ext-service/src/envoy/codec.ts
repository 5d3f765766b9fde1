/**
 * Direct decoders for the requests the ext-service reads most (ext_proc ProcessingRequest, four
 * per exchange, and ext_authz CheckRequest): wire bytes straight to the plain objects
 * @grpc/proto-loader would give (see protos.ts: snake_case, bytes as Buffer, enums by name,
 * int64 as number, oneofs named, no defaults; Struct/Value camelCase), without protobufjs'
 * message instances and its toObject pass over them.
 *
 * The schema each decoder knows is the loaded .proto's (the version @grpc/grpc-js-xds ships):
 * a field number that is not in it is skipped, as protobufjs skips it. Anything else these
 * decoders leave out (a field they do not handle, such as typed_filter_metadata; a wire type that
 * does not match the field; two members of one oneof; a map entry without its value; the key
 * `__proto__`; nesting deeper than MAX_DEPTH; bytes that are not a well-formed message) makes
 * them give up on that message, and the caller decodes it with proto-loader, which reads it,
 * or rejects it, as before. test/envoy/codec.property.test.ts checks them against proto-loader
 * on generated messages.
 *
 * Wire format: https://protobuf.dev/programming-guides/encoding/.
 */

import type { CheckRequest, ProcessingRequest } from "./types.js";

type Deserialize = (bytes: Buffer) => object;

/** Thrown to give up on a message (see above); one object, so a throw allocates nothing. */
const GIVE_UP: unique symbol = Symbol("give up");

/** Struct/Value nesting the direct path decodes; deeper messages go to proto-loader (limit 100). */
const MAX_DEPTH = 40;

// The message being decoded; module state, as nothing here awaits.
let buf: Buffer = Buffer.alloc(0);
let pos = 0;

type Obj = Record<string, unknown>;

/** A varint of at most 5 bytes, as an unsigned 32-bit number (tags, lengths, uint32, bool, enum). */
function uint32(end: number): number {
  // Tags, and most lengths and values, are one byte.
  if (pos < end) {
    const byte = buf[pos]!;
    if (byte < 0x80) {
      pos++;
      return byte;
    }
  }
  return longerUint32(end);
}

function longerUint32(end: number): number {
  let value = 0;
  let factor = 1;
  for (let i = 0; i < 5; i++) {
    if (pos >= end) throw GIVE_UP;
    const byte = buf[pos++]!;
    value += (byte & 0x7f) * factor;
    if (byte < 0x80) return value > 0xffffffff ? value % 0x100000000 : value;
    factor *= 128;
  }
  throw GIVE_UP; // longer varints (negative int32, large int64): proto-loader's
}

/** int64 as a number, when it is non-negative and below 2^53 (as protobufjs' toNumber gives it). */
function int64(end: number): number {
  let value = 0;
  let factor = 1;
  for (let i = 0; i < 8; i++) {
    if (pos >= end) throw GIVE_UP;
    const byte = buf[pos++]!;
    value += (byte & 0x7f) * factor;
    if (byte < 0x80) {
      if (value > Number.MAX_SAFE_INTEGER) throw GIVE_UP;
      return value;
    }
    factor *= 128;
  }
  throw GIVE_UP;
}

/** int32: protobufjs reads the low 32 bits as signed; non-negative values fit 5 bytes. */
function int32(end: number): number {
  const value = uint32(end);
  return value | 0;
}

function length(end: number): number {
  const n = uint32(end);
  if (n > end - pos) throw GIVE_UP;
  return n;
}

function string(end: number): string {
  const n = length(end);
  const start = pos;
  pos += n;
  if (n === 0) return "";
  // Short ASCII (header names and values, most keys) is built here; anything else by Buffer's decoder.
  if (n <= 32) {
    let s = "";
    for (let i = start; i < pos; i++) {
      const c = buf[i]!;
      if (c >= 0x80) return buf.toString("utf8", start, pos);
      s += String.fromCharCode(c);
    }
    return s;
  }
  return buf.toString("utf8", start, pos);
}

function bytes(end: number): Buffer {
  const n = length(end);
  const start = pos;
  pos += n;
  return n === 0 ? Buffer.alloc(0) : buf.subarray(start, pos);
}

function double(end: number): number {
  if (end - pos < 8) throw GIVE_UP;
  const value = buf.readDoubleLE(pos);
  pos += 8;
  return value;
}

/** Skips a field this schema does not have, as protobufjs does (groups: proto-loader's). */
function skip(wireType: number, end: number): void {
  switch (wireType) {
    case 0:
      for (;;) {
        if (pos >= end) throw GIVE_UP;
        if (buf[pos++]! < 0x80) break;
      }
      return;
    case 1:
      pos += 8;
      break;
    case 2: {
      const n = length(end); // before `pos +=`, which would read pos first
      pos += n;
      return;
    }
    case 5:
      pos += 4;
      break;
    default:
      throw GIVE_UP;
  }
  if (pos > end) throw GIVE_UP;
}

/** The end of a length-delimited field whose tag has just been read, after checking its wire type. */
function sub(wireType: number, end: number): number {
  if (wireType !== 2) throw GIVE_UP;
  const n = length(end);
  return pos + n;
}

function expect(wireType: number, want: number): void {
  if (wireType !== want) throw GIVE_UP;
}

function mapKey(key: string): string {
  if (key === "__proto__") throw GIVE_UP;
  return key;
}

// google.protobuf.Struct { map<string, Value> fields = 1; }
// Value { oneof kind { NullValue null_value = 1; double number_value = 2; string string_value = 3;
//                      bool bool_value = 4; Struct struct_value = 5; ListValue list_value = 6; } }
// ListValue { repeated Value values = 1; }

function struct(end: number, depth: number): Obj {
  if (depth > MAX_DEPTH) throw GIVE_UP;
  let fields: Obj | undefined;
  while (pos < end) {
    const tag = uint32(end);
    if (tag >>> 3 === 1) {
      const entryEnd = sub(tag & 7, end);
      let key = "";
      let value: Obj | undefined;
      while (pos < entryEnd) {
        const t = uint32(entryEnd);
        if (t === 0x0a) key = string(entryEnd);
        else if (t === 0x12) value = valueOf(sub(2, entryEnd), depth + 1);
        else if (t >>> 3 === 1 || t >>> 3 === 2) throw GIVE_UP;
        else skip(t & 7, entryEnd);
      }
      if (pos !== entryEnd || value === undefined) throw GIVE_UP;
      (fields ??= {})[mapKey(key)] = value;
    } else skip(tag & 7, end);
  }
  if (pos !== end) throw GIVE_UP;
  return fields === undefined ? {} : { fields };
}

function valueOf(end: number, depth: number): Obj {
  if (depth > MAX_DEPTH) throw GIVE_UP;
  const out: Obj = {};
  let kind: string | undefined;
  while (pos < end) {
    const tag = uint32(end);
    const field = tag >>> 3;
    const wireType = tag & 7;
    if (field >= 1 && field <= 6 && kind !== undefined) throw GIVE_UP; // two kinds: proto-loader's
    switch (field) {
      case 1: {
        expect(wireType, 0);
        const n = int32(end);
        out.nullValue = n === 0 ? "NULL_VALUE" : n;
        kind = "nullValue";
        break;
      }
      case 2:
        expect(wireType, 1);
        out.numberValue = double(end);
        kind = "numberValue";
        break;
      case 3:
        expect(wireType, 2);
        out.stringValue = string(end);
        kind = "stringValue";
        break;
      case 4:
        expect(wireType, 0);
        out.boolValue = uint32(end) !== 0;
        kind = "boolValue";
        break;
      case 5:
        out.structValue = struct(sub(wireType, end), depth + 1);
        kind = "structValue";
        break;
      case 6:
        out.listValue = listValue(sub(wireType, end), depth + 1);
        kind = "listValue";
        break;
      default:
        skip(wireType, end);
    }
  }
  if (pos !== end) throw GIVE_UP;
  if (kind !== undefined) out.kind = kind;
  return out;
}

function listValue(end: number, depth: number): Obj {
  if (depth > MAX_DEPTH) throw GIVE_UP;
  let values: Obj[] | undefined;
  while (pos < end) {
    const tag = uint32(end);
    if (tag >>> 3 === 1) (values ??= []).push(valueOf(sub(tag & 7, end), depth + 1));
    else skip(tag & 7, end);
  }
  if (pos !== end) throw GIVE_UP;
  return values === undefined ? {} : { values };
}

/** map<string, google.protobuf.Struct>: one entry into `into`. */
function structMapEntry(into: Obj, end: number): void {
  let key = "";
  let value: Obj | undefined;
  while (pos < end) {
    const t = uint32(end);
    if (t === 0x0a) key = string(end);
    else if (t === 0x12) value = struct(sub(2, end), 1);
    else if (t >>> 3 === 1 || t >>> 3 === 2) throw GIVE_UP;
    else skip(t & 7, end);
  }
  if (pos !== end || value === undefined) throw GIVE_UP;
  into[mapKey(key)] = value;
}

/** map<string, string>: one entry into `into` (a missing key or value is "", as in protobufjs). */
function stringMapEntry(into: Obj, end: number): void {
  let key = "";
  let value = "";
  while (pos < end) {
    const t = uint32(end);
    if (t === 0x0a) key = string(end);
    else if (t === 0x12) value = string(end);
    else if (t >>> 3 === 1 || t >>> 3 === 2) throw GIVE_UP;
    else skip(t & 7, end);
  }
  if (pos !== end) throw GIVE_UP;
  into[mapKey(key)] = value;
}

// envoy.config.core.v3.Metadata { map<string, Struct> filter_metadata = 1;
//                                 map<string, Any> typed_filter_metadata = 2; }
function metadata(end: number): Obj {
  let filter: Obj | undefined;
  while (pos < end) {
    const tag = uint32(end);
    const field = tag >>> 3;
    if (field === 1) structMapEntry((filter ??= {}), sub(tag & 7, end));
    else if (field === 2) throw GIVE_UP;
    else skip(tag & 7, end);
  }
  if (pos !== end) throw GIVE_UP;
  return filter === undefined ? {} : { filter_metadata: filter };
}

// HeaderMap { repeated HeaderValue headers = 1; }
// HeaderValue { string key = 1; string value = 2; bytes raw_value = 3; }
function headerMap(end: number): Obj {
  let headers: Obj[] | undefined;
  while (pos < end) {
    const tag = uint32(end);
    if (tag >>> 3 === 1) {
      const hEnd = sub(tag & 7, end);
      const header: Obj = {};
      while (pos < hEnd) {
        const t = uint32(hEnd);
        switch (t >>> 3) {
          case 1:
            expect(t & 7, 2);
            header.key = string(hEnd);
            break;
          case 2:
            expect(t & 7, 2);
            header.value = string(hEnd);
            break;
          case 3:
            expect(t & 7, 2);
            header.raw_value = bytes(hEnd);
            break;
          default:
            skip(t & 7, hEnd);
        }
      }
      if (pos !== hEnd) throw GIVE_UP;
      (headers ??= []).push(header);
    } else skip(tag & 7, end);
  }
  if (pos !== end) throw GIVE_UP;
  return headers === undefined ? {} : { headers };
}

// ext_proc HttpHeaders { HeaderMap headers = 1; map<string, Struct> attributes = 2; bool end_of_stream = 3; }
function httpHeaders(end: number): Obj {
  const out: Obj = {};
  let attributes: Obj | undefined;
  while (pos < end) {
    const tag = uint32(end);
    switch (tag >>> 3) {
      case 1:
        out.headers = headerMap(sub(tag & 7, end));
        break;
      case 2:
        structMapEntry((attributes ??= {}), sub(tag & 7, end));
        break;
      case 3:
        expect(tag & 7, 0);
        out.end_of_stream = uint32(end) !== 0;
        break;
      default:
        skip(tag & 7, end);
    }
  }
  if (pos !== end) throw GIVE_UP;
  if (attributes !== undefined) out.attributes = attributes;
  return out;
}

// ext_proc HttpBody { bytes body = 1; bool end_of_stream = 2; }
function httpBody(end: number): Obj {
  const out: Obj = {};
  while (pos < end) {
    const tag = uint32(end);
    switch (tag >>> 3) {
      case 1:
        expect(tag & 7, 2);
        out.body = bytes(end);
        break;
      case 2:
        expect(tag & 7, 0);
        out.end_of_stream = uint32(end) !== 0;
        break;
      default:
        skip(tag & 7, end);
    }
  }
  if (pos !== end) throw GIVE_UP;
  return out;
}

// ext_proc HttpTrailers { HeaderMap trailers = 1; }
function httpTrailers(end: number): Obj {
  const out: Obj = {};
  while (pos < end) {
    const tag = uint32(end);
    if (tag >>> 3 === 1) out.trailers = headerMap(sub(tag & 7, end));
    else skip(tag & 7, end);
  }
  if (pos !== end) throw GIVE_UP;
  return out;
}

const REQUEST_KINDS = [
  undefined,
  undefined,
  "request_headers",
  "response_headers",
  "request_body",
  "response_body",
  "request_trailers",
  "response_trailers",
] as const;

/**
 * ProcessingRequest { oneof request { HttpHeaders request_headers = 2; response_headers = 3;
 *   HttpBody request_body = 4; response_body = 5; HttpTrailers request_trailers = 6;
 *   response_trailers = 7; } Metadata metadata_context = 8; map<string, Struct> attributes = 9;
 *   bool observability_mode = 10; }
 */
function processingRequest(end: number): Obj {
  return processingRequestOf(end, false);
}

/**
 * Whether the last processingRequestOf(..., true) skipped a metadata_context (see
 * serverProcessingRequestDecoder).
 */
let skippedMetadata = false;

function processingRequestOf(end: number, metadataOnRequestHeaders: boolean): Obj {
  skippedMetadata = false;
  const out: Obj = {};
  let kind: string | undefined;
  let attributes: Obj | undefined;
  while (pos < end) {
    const tag = uint32(end);
    const field = tag >>> 3;
    switch (field) {
      case 2:
      case 3:
      case 4:
      case 5:
      case 6:
      case 7: {
        if (kind !== undefined) throw GIVE_UP; // two members of the oneof (or one twice): proto-loader's
        kind = REQUEST_KINDS[field]!;
        const e = sub(tag & 7, end);
        out[kind] = field <= 3 ? httpHeaders(e) : field <= 5 ? httpBody(e) : httpTrailers(e);
        break;
      }
      case 8: {
        const e = sub(tag & 7, end);
        if (metadataOnRequestHeaders && kind !== undefined && kind !== "request_headers") {
          pos = e;
          skippedMetadata = true;
        } else out.metadata_context = metadata(e);
        break;
      }
      case 9:
        structMapEntry((attributes ??= {}), sub(tag & 7, end));
        break;
      case 10:
        expect(tag & 7, 0);
        out.observability_mode = uint32(end) !== 0;
        break;
      default:
        skip(tag & 7, end);
    }
  }
  if (pos !== end) throw GIVE_UP;
  if (attributes !== undefined) out.attributes = attributes;
  if (kind !== undefined) out.request = kind;
  if (metadataOnRequestHeaders && kind !== "request_headers" && out.metadata_context !== undefined) {
    delete out.metadata_context; // it came before the oneof member
    skippedMetadata = true;
  }
  return out;
}

// --- ext_authz CheckRequest { AttributeContext attributes = 1; } ---

// SocketAddress { Protocol protocol = 1 (TCP = 0, UDP = 1); string address = 2;
//   oneof port_specifier { uint32 port_value = 3; string named_port = 4; }
//   string resolver_name = 5; bool ipv4_compat = 6; }
function socketAddress(end: number): Obj {
  const out: Obj = {};
  let port: string | undefined;
  while (pos < end) {
    const tag = uint32(end);
    const wireType = tag & 7;
    switch (tag >>> 3) {
      case 1: {
        expect(wireType, 0);
        const n = int32(end);
        out.protocol = n === 0 ? "TCP" : n === 1 ? "UDP" : n;
        break;
      }
      case 2:
        expect(wireType, 2);
        out.address = string(end);
        break;
      case 3:
        expect(wireType, 0);
        if (port !== undefined) throw GIVE_UP;
        out.port_value = uint32(end);
        port = "port_value";
        break;
      case 4:
        expect(wireType, 2);
        if (port !== undefined) throw GIVE_UP;
        out.named_port = string(end);
        port = "named_port";
        break;
      case 5:
        expect(wireType, 2);
        out.resolver_name = string(end);
        break;
      case 6:
        expect(wireType, 0);
        out.ipv4_compat = uint32(end) !== 0;
        break;
      default:
        skip(wireType, end);
    }
  }
  if (pos !== end) throw GIVE_UP;
  if (port !== undefined) out.port_specifier = port;
  return out;
}

// Pipe { string path = 1; uint32 mode = 2; }
function pipe(end: number): Obj {
  const out: Obj = {};
  while (pos < end) {
    const tag = uint32(end);
    switch (tag >>> 3) {
      case 1:
        expect(tag & 7, 2);
        out.path = string(end);
        break;
      case 2:
        expect(tag & 7, 0);
        out.mode = uint32(end);
        break;
      default:
        skip(tag & 7, end);
    }
  }
  if (pos !== end) throw GIVE_UP;
  return out;
}

// Address { oneof address { SocketAddress socket_address = 1; Pipe pipe = 2;
//                           EnvoyInternalAddress envoy_internal_address = 3; } }
function address(end: number): Obj {
  const out: Obj = {};
  let kind: string | undefined;
  while (pos < end) {
    const tag = uint32(end);
    const field = tag >>> 3;
    if (field >= 1 && field <= 3 && kind !== undefined) throw GIVE_UP;
    if (field === 1) {
      out.socket_address = socketAddress(sub(tag & 7, end));
      kind = "socket_address";
    } else if (field === 2) {
      out.pipe = pipe(sub(tag & 7, end));
      kind = "pipe";
    } else if (field === 3) throw GIVE_UP;
    else skip(tag & 7, end);
  }
  if (pos !== end) throw GIVE_UP;
  if (kind !== undefined) out.address = kind;
  return out;
}

// Peer { Address address = 1; string service = 2; map<string, string> labels = 3;
//        string principal = 4; string certificate = 5; }
function peer(end: number): Obj {
  const out: Obj = {};
  let labels: Obj | undefined;
  while (pos < end) {
    const tag = uint32(end);
    switch (tag >>> 3) {
      case 1:
        out.address = address(sub(tag & 7, end));
        break;
      case 2:
        expect(tag & 7, 2);
        out.service = string(end);
        break;
      case 3:
        stringMapEntry((labels ??= {}), sub(tag & 7, end));
        break;
      case 4:
        expect(tag & 7, 2);
        out.principal = string(end);
        break;
      case 5:
        expect(tag & 7, 2);
        out.certificate = string(end);
        break;
      default:
        skip(tag & 7, end);
    }
  }
  if (pos !== end) throw GIVE_UP;
  if (labels !== undefined) out.labels = labels;
  return out;
}

// google.protobuf.Timestamp { int64 seconds = 1; int32 nanos = 2; }
function timestamp(end: number): Obj {
  const out: Obj = {};
  while (pos < end) {
    const tag = uint32(end);
    switch (tag >>> 3) {
      case 1:
        expect(tag & 7, 0);
        out.seconds = int64(end);
        break;
      case 2:
        expect(tag & 7, 0);
        out.nanos = int32(end);
        break;
      default:
        skip(tag & 7, end);
    }
  }
  if (pos !== end) throw GIVE_UP;
  return out;
}

const HTTP_REQUEST_STRINGS = [
  undefined,
  "id",
  "method",
  undefined,
  "path",
  "host",
  "scheme",
  "query",
  "fragment",
  undefined,
  "protocol",
  "body",
] as const;

// HttpRequest { string id = 1; method = 2; map<string, string> headers = 3; string path = 4;
//   host = 5; scheme = 6; query = 7; fragment = 8; int64 size = 9; string protocol = 10;
//   string body = 11; bytes raw_body = 12; HeaderMap header_map = 13; }
function httpRequest(end: number): Obj {
  const out: Obj = {};
  let headers: Obj | undefined;
  while (pos < end) {
    const tag = uint32(end);
    const field = tag >>> 3;
    const name = field < HTTP_REQUEST_STRINGS.length ? HTTP_REQUEST_STRINGS[field] : undefined;
    if (name !== undefined) {
      expect(tag & 7, 2);
      out[name] = string(end);
      continue;
    }
    switch (field) {
      case 3:
        stringMapEntry((headers ??= {}), sub(tag & 7, end));
        break;
      case 9:
        expect(tag & 7, 0);
        out.size = int64(end);
        break;
      case 12:
        expect(tag & 7, 2);
        out.raw_body = bytes(end);
        break;
      case 13:
        out.header_map = headerMap(sub(tag & 7, end));
        break;
      default:
        skip(tag & 7, end);
    }
  }
  if (pos !== end) throw GIVE_UP;
  if (headers !== undefined) out.headers = headers;
  return out;
}

// Request { google.protobuf.Timestamp time = 1; HttpRequest http = 2; }
function request(end: number): Obj {
  const out: Obj = {};
  while (pos < end) {
    const tag = uint32(end);
    if (tag >>> 3 === 1) out.time = timestamp(sub(tag & 7, end));
    else if (tag >>> 3 === 2) out.http = httpRequest(sub(tag & 7, end));
    else skip(tag & 7, end);
  }
  if (pos !== end) throw GIVE_UP;
  return out;
}

// AttributeContext { Peer source = 1; Peer destination = 2; Request request = 4;
//   map<string, string> context_extensions = 10; Metadata metadata_context = 11;
//   TLSSession tls_session = 12 { string sni = 1; }; Metadata route_metadata_context = 13; }
function attributeContext(end: number): Obj {
  const out: Obj = {};
  let extensions: Obj | undefined;
  while (pos < end) {
    const tag = uint32(end);
    switch (tag >>> 3) {
      case 1:
        out.source = peer(sub(tag & 7, end));
        break;
      case 2:
        out.destination = peer(sub(tag & 7, end));
        break;
      case 4:
        out.request = request(sub(tag & 7, end));
        break;
      case 10:
        stringMapEntry((extensions ??= {}), sub(tag & 7, end));
        break;
      case 11:
        out.metadata_context = metadata(sub(tag & 7, end));
        break;
      case 12: {
        const e = sub(tag & 7, end);
        const tls: Obj = {};
        while (pos < e) {
          const t = uint32(e);
          if (t >>> 3 === 1) {
            expect(t & 7, 2);
            tls.sni = string(e);
          } else skip(t & 7, e);
        }
        if (pos !== e) throw GIVE_UP;
        out.tls_session = tls;
        break;
      }
      case 13:
        out.route_metadata_context = metadata(sub(tag & 7, end));
        break;
      default:
        skip(tag & 7, end);
    }
  }
  if (pos !== end) throw GIVE_UP;
  if (extensions !== undefined) out.context_extensions = extensions;
  return out;
}

function checkRequest(end: number): Obj {
  const out: Obj = {};
  while (pos < end) {
    const tag = uint32(end);
    if (tag >>> 3 === 1) out.attributes = attributeContext(sub(tag & 7, end));
    else skip(tag & 7, end);
  }
  if (pos !== end) throw GIVE_UP;
  return out;
}

/** Runs `decode` over `bytes`; on giving up, proto-loader's `fallback` decodes them (or throws). */
function directly(decode: (end: number) => Obj, fallback: Deserialize): (bytes: Buffer) => object {
  return (bytes: Buffer): object => {
    buf = bytes;
    pos = 0;
    skippedMetadata = false;
    try {
      return decode(bytes.length);
    } catch (err) {
      if (err !== GIVE_UP) throw err;
      skippedMetadata = false;
      return fallback(bytes);
    } finally {
      buf = EMPTY;
    }
  };
}
const EMPTY = Buffer.alloc(0);

/** ProcessingRequest decoder: direct, proto-loader's `fallback` for what it leaves (see above). */
export function processingRequestDecoder(fallback: Deserialize): (bytes: Buffer) => ProcessingRequest {
  return directly(processingRequest, fallback) as (bytes: Buffer) => ProcessingRequest;
}

/**
 * The server side's ProcessingRequest decoder: as processingRequestDecoder, but metadata_context
 * (field 8) is decoded only on request_headers messages. Envoy repeats the ext_authz Struct in
 * every message of a stream, and the ext-service reads it once, with the request headers. On
 * response_headers it is decoded when read (by `deserialize`, whole message): a stream that
 * starts there is a local reply of an earlier filter, judged by that metadata; on a normal
 * stream nobody reads it. On other messages it is left out. On giving up, `fallback` decodes.
 */
export function serverProcessingRequestDecoder(
  deserialize: Deserialize,
  fallback: Deserialize,
): (bytes: Buffer) => ProcessingRequest {
  const whole = processingRequestDecoder(deserialize);
  const server = directly((end) => processingRequestOf(end, true), fallback);
  return (bytes: Buffer): ProcessingRequest => {
    const message = server(bytes) as ProcessingRequest & Obj;
    if (skippedMetadata && message.request === "response_headers") {
      skippedMetadata = false;
      metadataContextWhenRead(message, () => whole(bytes).metadata_context);
    }
    return message;
  };
}

/**
 * Gives `message` a metadata_context that `decode` reads on first access, once: for a
 * response_headers message decoded without it (both ProcessingRequest decoders of the server).
 */
export function metadataContextWhenRead(message: object, decode: () => unknown): void {
  let metadata: unknown;
  let decoded = false;
  Object.defineProperty(message, "metadata_context", {
    enumerable: true,
    configurable: true,
    get() {
      if (!decoded) {
        metadata = decode();
        decoded = true;
      }
      return metadata;
    },
  });
}

/** CheckRequest decoder: direct, proto-loader's `fallback` for what it leaves (see above). */
export function checkRequestDecoder(fallback: Deserialize): (bytes: Buffer) => CheckRequest {
  return directly(checkRequest, fallback) as (bytes: Buffer) => CheckRequest;
}
