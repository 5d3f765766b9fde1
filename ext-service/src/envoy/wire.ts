import { EncodedMessage, EncodedStruct } from "./encoded-struct.js";
import type { Struct, StructValue } from "./types.js";

export { EncodedMessage, EncodedStruct };

/**
 * Protobuf wire-format helpers for two fields that cost more than the rest of their messages
 * when @grpc/proto-loader converts them (decode + toObject, fromObject + encode), measured on
 * the bench's tools/call exchange:
 *
 * - ProcessingRequest.metadata_context (field 8): Envoy repeats the ext_authz Struct in every
 *   message of an ext_proc stream, and only the request headers' copy is read. `withoutField`
 *   takes it out of the other messages' buffers, so they decode without it.
 * - The replies' dynamic_metadata Struct: `encodeStructField` writes it straight from the plain
 *   object, to be appended after the rest of the message (fields may come in any order).
 *
 * Both follow https://protobuf.dev/programming-guides/encoding/.
 */

const enum WireType {
  Varint = 0,
  Fixed64 = 1,
  Length = 2,
  Fixed32 = 5,
}

/** Reads a varint at `pos`; returns the value and leaves its end in `end`, or -1 when cut. */
let end = 0;
function readVarint(buf: Uint8Array, pos: number): number {
  let value = 0;
  let factor = 1;
  for (let i = 0; i < 10; i++) {
    if (pos >= buf.length) return -1;
    const byte = buf[pos++]!;
    value += (byte & 0x7f) * factor;
    if (byte < 0x80) {
      end = pos;
      return value;
    }
    factor *= 128;
  }
  return -1;
}

/**
 * The message without every occurrence of the length-delimited field `fieldNumber`: the same
 * buffer when that field is absent, or when field `unlessField` is present (the caller needs
 * the whole message then). Undefined when the bytes are not a well-formed message (or use
 * groups): the caller then decodes the buffer whole, so protobufjs reports the problem as before.
 */
export function withoutField(buf: Buffer, fieldNumber: number, unlessField?: number): Buffer | undefined {
  let pos = 0;
  let kept: Buffer[] | undefined;
  let keptFrom = 0;
  let keep = false;
  while (pos < buf.length) {
    const start = pos;
    const tag = readVarint(buf, pos);
    if (tag < 0) return undefined;
    pos = end;
    const field = Math.floor(tag / 8);
    if (field === unlessField) keep = true;
    switch (tag & 7) {
      case WireType.Varint:
        if (readVarint(buf, pos) < 0) return undefined;
        pos = end;
        break;
      case WireType.Fixed64:
        pos += 8;
        break;
      case WireType.Fixed32:
        pos += 4;
        break;
      case WireType.Length: {
        const length = readVarint(buf, pos);
        if (length < 0) return undefined;
        pos = end + length;
        if (pos > buf.length) return undefined;
        if (field === fieldNumber) {
          (kept ??= []).push(buf.subarray(keptFrom, start));
          keptFrom = pos;
        }
        break;
      }
      default:
        return undefined; // groups (3, 4) are not used by these APIs
    }
    if (pos > buf.length) return undefined;
  }
  if (!kept || keep) return buf;
  if (keptFrom < buf.length) kept.push(buf.subarray(keptFrom));
  return kept.length === 1 ? kept[0] : Buffer.concat(kept);
}

// google.protobuf.Struct { map<string, Value> fields = 1; }
// Value { oneof kind { NullValue null_value = 1; double number_value = 2; string string_value = 3;
//                      bool bool_value = 4; Struct struct_value = 5; ListValue list_value = 6; } }
// ListValue { repeated Value values = 1; }

export function varintSize(n: number): number {
  let size = 1;
  while (n >= 128) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

/** UTF-8 length, as Buffer.byteLength counts it (a lone surrogate becomes U+FFFD: 3 bytes). */
export function utf8Length(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) n += 1;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 2; // a pair: 2 UTF-16 units, 4 bytes
        i++;
      } else n += 2;
    } else n += 2;
  }
  return n;
}

function checkValue(value: unknown): StructValue {
  if (typeof value !== "object" || value === null) {
    throw new TypeError(".google.protobuf.Struct.fields: object expected");
  }
  return value as StructValue;
}

/**
 * Sizes of the nested messages, in the order they are written, so each length prefix is known
 * before its content: pass 1 (`*Size`) fills it, pass 2 (`Writer`) reads it in the same order.
 */
type Sizes = number[];

/**
 * The number written for Value.null_value, as protobufjs converts it: NULL_VALUE (0), another
 * number as it is, and -1 (nothing written) for a name the enum lacks or a value of another type.
 * A negative or fractional number, which protobufjs would write as its int32 writer does, is refused.
 */
function nullValueNumber(n: unknown): number {
  if (n === "NULL_VALUE" || n === 0) return 0;
  if (typeof n !== "number") return -1;
  if (Number.isInteger(n) && n > 0 && n <= 0x7fffffff) return n;
  throw new TypeError(".google.protobuf.Value.nullValue: a non-negative enum value expected");
}

function valueSize(v: StructValue, sizes: Sizes): number {
  let size = 0;
  if (v.nullValue !== undefined && v.nullValue !== null) {
    const n = nullValueNumber(v.nullValue);
    if (n >= 0) size += 1 + varintSize(n);
  }
  if (v.numberValue !== undefined && v.numberValue !== null) size += 9;
  if (v.stringValue !== undefined && v.stringValue !== null) {
    const n = utf8Length(v.stringValue);
    size += 1 + varintSize(n) + n;
  }
  if (v.boolValue !== undefined && v.boolValue !== null) size += 2;
  if (v.structValue !== undefined && v.structValue !== null) {
    const n = structSize(v.structValue, sizes);
    size += 1 + varintSize(n) + n;
  }
  if (v.listValue !== undefined && v.listValue !== null) {
    const slot = sizes.length;
    sizes.push(0);
    let n = 0;
    for (const item of v.listValue.values ?? []) {
      const itemSlot = sizes.length;
      sizes.push(0);
      const m = valueSize(checkValue(item), sizes);
      sizes[itemSlot] = m;
      n += 1 + varintSize(m) + m;
    }
    sizes[slot] = n;
    size += 1 + varintSize(n) + n;
  }
  return size;
}

function structSize(struct: Struct, sizes: Sizes): number {
  const slot = sizes.length;
  sizes.push(0);
  let size = 0;
  const fields = struct.fields;
  if (fields !== undefined && fields !== null) {
    // Own keys only, as protobufjs encodes them.
    for (const key of Object.keys(fields)) {
      const k = utf8Length(key);
      const valueSlot = sizes.length;
      sizes.push(0);
      const v = valueSize(checkValue(fields[key]), sizes);
      sizes[valueSlot] = v;
      const entry = 1 + varintSize(k) + k + 1 + varintSize(v) + v;
      size += 1 + varintSize(entry) + entry;
    }
  }
  sizes[slot] = size;
  return size;
}

export class Writer {
  pos = 0;
  next = 0;
  constructor(
    readonly buf: Buffer,
    readonly sizes: Sizes,
  ) {}

  varint(n: number): void {
    while (n >= 128) {
      this.buf[this.pos++] = (n % 128) | 0x80;
      n = Math.floor(n / 128);
    }
    this.buf[this.pos++] = n;
  }

  /** Length-prefixed UTF-8; ASCII is copied here, anything else by Buffer.write. */
  string(s: string, length: number): void {
    this.varint(length);
    if (length === s.length) {
      for (let i = 0; i < s.length; i++) this.buf[this.pos++] = s.charCodeAt(i);
    } else {
      this.pos += this.buf.write(s, this.pos, "utf8");
    }
  }

  value(v: StructValue): void {
    const buf = this.buf;
    if (v.nullValue !== undefined && v.nullValue !== null) {
      const n = nullValueNumber(v.nullValue);
      if (n >= 0) {
        buf[this.pos++] = 0x08;
        this.varint(n);
      }
    }
    if (v.numberValue !== undefined && v.numberValue !== null) {
      buf[this.pos++] = 0x11;
      this.pos = buf.writeDoubleLE(v.numberValue, this.pos);
    }
    if (v.stringValue !== undefined && v.stringValue !== null) {
      buf[this.pos++] = 0x1a;
      this.string(v.stringValue, utf8Length(v.stringValue));
    }
    if (v.boolValue !== undefined && v.boolValue !== null) {
      buf[this.pos++] = 0x20;
      buf[this.pos++] = v.boolValue ? 1 : 0;
    }
    if (v.structValue !== undefined && v.structValue !== null) {
      buf[this.pos++] = 0x2a;
      this.struct(v.structValue);
    }
    if (v.listValue !== undefined && v.listValue !== null) {
      buf[this.pos++] = 0x32;
      this.varint(this.sizes[this.next++]!);
      for (const item of v.listValue.values ?? []) {
        buf[this.pos++] = 0x0a;
        this.varint(this.sizes[this.next++]!);
        this.value(item);
      }
    }
  }

  /** A Struct with its length prefix. */
  struct(struct: Struct): void {
    this.varint(this.sizes[this.next++]!);
    const fields = struct.fields;
    if (fields === undefined || fields === null) return;
    for (const key of Object.keys(fields)) {
      const k = utf8Length(key);
      const v = this.sizes[this.next++]!;
      this.buf[this.pos++] = 0x0a;
      this.varint(1 + varintSize(k) + k + 1 + varintSize(v) + v);
      this.buf[this.pos++] = 0x0a;
      this.string(key, k);
      this.buf[this.pos++] = 0x12;
      this.varint(v);
      this.value(fields[key]!);
    }
  }
}

/** A Struct as field `fieldNumber` of an enclosing message: tag, length, then the Struct. */
export function encodeStructField(fieldNumber: number, struct: Struct): Buffer {
  const sizes: Sizes = [];
  const size = structSize(struct, sizes);
  const tag = fieldNumber * 8 + WireType.Length;
  const buf = Buffer.allocUnsafe(varintSize(tag) + varintSize(size) + size);
  const w = new Writer(buf, sizes);
  w.varint(tag);
  w.struct(struct);
  if (w.pos !== buf.length) throw new Error(`Struct encoding wrote ${w.pos} of ${buf.length} bytes`);
  return buf;
}

/** The bytes of a Struct (without a length prefix), for parts that are encoded once and reused. */
export function encodeStruct(struct: Struct): Buffer {
  const field = encodeStructField(1, struct);
  let pos = 1; // past tag 1 (one byte), then past the length
  while (field[pos]! & 0x80) pos++;
  return field.subarray(pos + 1);
}

/**
 * A Struct of the entries `prefix` (bytes of a Struct, see encodeStruct) followed by string
 * fields `keys[i]: values[i]`, as encodeStructField would write them after the same prefix.
 */
export function structWithStrings(
  prefix: Uint8Array,
  keys: readonly string[],
  values: readonly string[],
): EncodedStruct {
  const count = keys.length;
  const lengths = new Array<number>(count * 2);
  let size = prefix.length;
  for (let i = 0; i < count; i++) {
    const k = utf8Length(keys[i]!);
    const s = utf8Length(values[i]!);
    lengths[2 * i] = k;
    lengths[2 * i + 1] = s;
    const value = 1 + varintSize(s) + s;
    const entry = 1 + varintSize(k) + k + 1 + varintSize(value) + value;
    size += 1 + varintSize(entry) + entry;
  }
  const buf = Buffer.allocUnsafe(size);
  buf.set(prefix, 0);
  const w = new Writer(buf, []);
  w.pos = prefix.length;
  for (let i = 0; i < count; i++) {
    const k = lengths[2 * i]!;
    const s = lengths[2 * i + 1]!;
    const value = 1 + varintSize(s) + s;
    buf[w.pos++] = 0x0a; // fields (map entry)
    w.varint(1 + varintSize(k) + k + 1 + varintSize(value) + value);
    buf[w.pos++] = 0x0a; // key
    w.string(keys[i]!, k);
    buf[w.pos++] = 0x12; // value
    w.varint(value);
    buf[w.pos++] = 0x1a; // string_value
    w.string(values[i]!, s);
  }
  if (w.pos !== size) throw new Error(`Struct encoding wrote ${w.pos} of ${size} bytes`);
  return new EncodedStruct(buf);
}

/** A Struct with the one field `key` holding `inner` as its struct_value. */
export function structOfStruct(key: string, inner: EncodedStruct): EncodedStruct {
  const k = utf8Length(key);
  const n = inner.bytes.length;
  const value = 1 + varintSize(n) + n;
  const entry = 1 + varintSize(k) + k + 1 + varintSize(value) + value;
  const buf = Buffer.allocUnsafe(1 + varintSize(entry) + entry);
  const w = new Writer(buf, []);
  buf[w.pos++] = 0x0a;
  w.varint(entry);
  buf[w.pos++] = 0x0a;
  w.string(key, k);
  buf[w.pos++] = 0x12;
  w.varint(value);
  buf[w.pos++] = 0x2a; // struct_value
  w.varint(n);
  buf.set(inner.bytes, w.pos);
  return new EncodedStruct(buf);
}

/** `message` followed by `struct` as its field `fieldNumber` (fields may come in any order). */
export function appendStructField(message: Uint8Array, fieldNumber: number, struct: EncodedStruct): Buffer {
  const tag = fieldNumber * 8 + WireType.Length;
  const n = struct.bytes.length;
  const buf = Buffer.allocUnsafe(message.length + varintSize(tag) + varintSize(n) + n);
  buf.set(message, 0);
  const w = new Writer(buf, []);
  w.pos = message.length;
  w.varint(tag);
  w.varint(n);
  buf.set(struct.bytes, w.pos);
  return buf;
}

// envoy.service.auth.v3.CheckResponse { google.rpc.Status status = 1; OkHttpResponse ok_response = 3;
//                                       google.protobuf.Struct dynamic_metadata = 4; }
// OkHttpResponse { repeated HeaderValueOption headers = 2; repeated string headers_to_remove = 5; }
// HeaderValueOption { HeaderValue header = 1; google.protobuf.BoolValue append = 2; }
// HeaderValue { string key = 1; string value = 2; }

/** status { code: 0 } as protobufjs writes it (the zero code included). */
const STATUS_OK = [0x0a, 0x02, 0x08, 0x00] as const;
/** append { value: false } */
const APPEND_FALSE = [0x12, 0x02, 0x08, 0x00] as const;

/**
 * The ext_authz allow (status OK, `ok_response` setting each of `set` with `append: false` and
 * removing `remove`, then `metadata`) in wire form, byte for byte what proto-loader writes for
 * the same reply object (headers in `set`'s order): built straight from the strings, without
 * the reply object, protobufjs' fromObject and its writer.
 */
export function encodeCheckAllow(
  set: Readonly<Record<string, string>>,
  remove: readonly string[],
  metadata: EncodedStruct,
): EncodedMessage {
  const keys = Object.keys(set);
  const lengths: number[] = [];
  let ok = 0;
  for (const key of keys) {
    const k = utf8Length(key);
    const v = utf8Length(set[key]!);
    const header = 1 + varintSize(k) + k + 1 + varintSize(v) + v;
    const option = 1 + varintSize(header) + header + APPEND_FALSE.length;
    lengths.push(k, v, header, option);
    ok += 1 + varintSize(option) + option;
  }
  for (const name of remove) {
    const n = utf8Length(name);
    lengths.push(n);
    ok += 1 + varintSize(n) + n;
  }
  const m = metadata.bytes.length;
  const size = STATUS_OK.length + 1 + varintSize(ok) + ok + 1 + varintSize(m) + m;
  const buf = Buffer.allocUnsafe(size);
  const w = new Writer(buf, []);
  for (const b of STATUS_OK) buf[w.pos++] = b;
  buf[w.pos++] = 0x1a; // ok_response
  w.varint(ok);
  let i = 0;
  for (const key of keys) {
    const k = lengths[i++]!;
    const v = lengths[i++]!;
    const header = lengths[i++]!;
    const option = lengths[i++]!;
    buf[w.pos++] = 0x12; // headers
    w.varint(option);
    buf[w.pos++] = 0x0a; // header
    w.varint(header);
    buf[w.pos++] = 0x0a; // key
    w.string(key, k);
    buf[w.pos++] = 0x12; // value
    w.string(set[key]!, v);
    for (const b of APPEND_FALSE) buf[w.pos++] = b;
  }
  for (const name of remove) {
    buf[w.pos++] = 0x2a; // headers_to_remove
    w.string(name, lengths[i++]!);
  }
  buf[w.pos++] = 0x22; // dynamic_metadata
  w.varint(m);
  buf.set(metadata.bytes, w.pos);
  w.pos += m;
  if (w.pos !== size) throw new Error(`CheckResponse encoding wrote ${w.pos} of ${size} bytes`);
  return new EncodedMessage(buf);
}
