import { createRequire } from "node:module";
import type { MessageTypeDefinition } from "@grpc/proto-loader";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { checkRequestDecoder, processingRequestDecoder } from "../../ext-service/src/envoy/codec.js";
import { envoyProtoSources, envoyProtos } from "../../ext-service/src/envoy/protos.js";

/**
 * The direct request decoders (codec.ts) against proto-loader's own decoding, which they must
 * match exactly: messages generated from the loaded .proto schema itself (every field of every
 * message reachable from ProcessingRequest and CheckRequest), alone, merged (two encodings
 * concatenated: fields repeated, out of order, two oneof members), with fields the schema does
 * not have, and cut short.
 */

// The schema as protobufjs reflects it, loaded as proto-loader loads it.
interface PbEnum {
  values: Record<string, number>;
}
interface PbField {
  name: string;
  id: number;
  type: string;
  repeated: boolean;
  map: boolean;
  keyType?: string;
  partOf: { name: string } | null;
  resolvedType: PbType | PbEnum | null;
}
interface PbType {
  fullName: string;
  fieldsArray: PbField[];
}
interface PbRoot {
  lookupType(name: string): PbType;
}
const require = createRequire(import.meta.url);
const { loadProtosWithOptionsSync } = require("@grpc/proto-loader/build/src/util.js") as {
  loadProtosWithOptionsSync(files: string[], options: object): PbRoot;
};
const sources = envoyProtoSources();
const root = loadProtosWithOptionsSync(sources.files, sources.options);

const { definition } = envoyProtos();
type Codec = MessageTypeDefinition<object, object>;
const processingRequest = definition["envoy.service.ext_proc.v3.ProcessingRequest"] as Codec;
const checkRequest = definition["envoy.service.auth.v3.CheckRequest"] as Codec;

const text = fc.oneof(
  fc.string({ unit: "binary", maxLength: 12 }),
  fc.string({ unit: "grapheme-ascii", maxLength: 40 }),
  fc.constantFrom("", "é", "😀", "\u0000", "a".repeat(200), ":path", "content-type"),
);
const key = text.filter((k) => k !== "__proto__");

function scalar(field: PbField, type: string): fc.Arbitrary<unknown> {
  switch (type) {
    case "string":
      return text;
    case "bytes":
      return fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b));
    case "bool":
      return fc.boolean();
    case "uint32":
      return fc.oneof(fc.nat(300), fc.integer({ min: 0, max: 2 ** 32 - 1 }));
    case "int32":
      return fc.oneof(fc.nat(300), fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }));
    case "int64":
      return fc.oneof(fc.nat(1000), fc.maxSafeNat(), fc.integer({ min: -1000, max: -1 }));
    case "uint64":
      return fc.oneof(fc.nat(1000), fc.maxSafeNat());
    case "double":
      return fc.oneof(fc.double(), fc.constantFrom(0, -0, 1.5, 2 ** 53));
    default:
      // A type the generator does not know would leave its field untested: fail instead.
      throw new Error(`no generator for ${field.name}: ${type}`);
  }
}

function value(field: PbField, depth: number): fc.Arbitrary<unknown> {
  const resolved = field.resolvedType;
  if (resolved && "values" in resolved) {
    return fc.oneof(fc.constantFrom(...Object.keys(resolved.values)), fc.integer({ min: -3, max: 40 }));
  }
  if (resolved) return message(resolved, depth - 1);
  return scalar(field, field.type);
}

const cache = new Map<string, fc.Arbitrary<Record<string, unknown>>>();

/** Any message of `type`: each field present or not, at most one member per oneof. */
function message(type: PbType, depth: number): fc.Arbitrary<Record<string, unknown>> {
  if (depth <= 0) return fc.constant({});
  const id = `${type.fullName}@${depth}`;
  const known = cache.get(id);
  if (known) return known;
  const plain: Record<string, fc.Arbitrary<unknown>> = {};
  const oneofs = new Map<string, [string, fc.Arbitrary<unknown>][]>();
  for (const field of type.fieldsArray) {
    let arb: fc.Arbitrary<unknown>;
    if (field.map) arb = fc.dictionary(key, value(field, depth), { maxKeys: 3 });
    else if (field.repeated) arb = fc.array(value(field, depth), { maxLength: 3 });
    else arb = value(field, depth);
    if (field.partOf) {
      const members = oneofs.get(field.partOf.name) ?? [];
      members.push([field.name, arb]);
      oneofs.set(field.partOf.name, members);
    } else plain[field.name] = fc.option(arb, { nil: undefined, freq: 2 });
  }
  const chosen = [...oneofs.values()].map((members) =>
    fc.option(fc.oneof(...members.map(([name, arb]) => arb.map((v) => [name, v] as const))), {
      nil: undefined,
    }),
  );
  const arb = fc.tuple(fc.record(plain), fc.tuple(...chosen)).map(([fields, picks]) => {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(fields)) if (v !== undefined) out[k] = v;
    for (const pick of picks) if (pick) out[pick[0]] = pick[1];
    return out;
  });
  cache.set(id, arb);
  return arb;
}

function varint(n: number): number[] {
  const out: number[] = [];
  while (n >= 128) {
    out.push((n % 128) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

/** A field numbered past the schema's (each wire type), which protobufjs skips. */
const unknownField = fc
  .tuple(fc.integer({ min: 100, max: 5000 }), fc.constantFrom(0, 1, 2, 5), fc.uint8Array({ maxLength: 8 }))
  .map(([field, wireType, data]) => {
    const tag = varint(field * 8 + wireType);
    switch (wireType) {
      case 0:
        return Buffer.from([...tag, ...varint(data.length * 1000)]);
      case 1:
        return Buffer.from([...tag, 1, 2, 3, 4, 5, 6, 7, 8]);
      case 2:
        return Buffer.from([...tag, data.length, ...data]);
      default:
        return Buffer.from([...tag, 1, 2, 3, 4]);
    }
  });

/** Encodings of one message, of two merged (concatenated), and with a field the schema does not have. */
function wire(type: PbType, codec: Codec): fc.Arbitrary<Buffer> {
  const one = message(type, 9).map((m) => codec.serialize(m));
  return fc.oneof(
    { arbitrary: one, weight: 3 },
    fc.tuple(one, one).map(([a, b]) => Buffer.concat([a, b])),
    fc.tuple(one, unknownField, fc.boolean()).map(([m, u, first]) => Buffer.concat(first ? [u, m] : [m, u])),
  );
}

function outcome(decode: (bytes: Buffer) => object, bytes: Buffer): { value?: object; threw?: true } {
  try {
    return { value: decode(bytes) };
  } catch {
    return { threw: true };
  }
}

for (const [name, codec, decoder] of [
  ["ProcessingRequest", processingRequest, processingRequestDecoder],
  ["CheckRequest", checkRequest, checkRequestDecoder],
] as const) {
  const type = root.lookupType(
    name === "CheckRequest"
      ? "envoy.service.auth.v3.CheckRequest"
      : "envoy.service.ext_proc.v3.ProcessingRequest",
  );
  const reference = (bytes: Buffer) => codec.deserialize(bytes);

  describe(`${name}: direct decoder (codec.ts)`, () => {
    it("decodes what proto-loader decodes, most of it without proto-loader", () => {
      let direct = 0;
      let total = 0;
      const decode = decoder((bytes) => {
        direct--;
        return reference(bytes);
      });
      fc.assert(
        fc.property(wire(type, codec), (bytes) => {
          total++;
          direct++;
          expect(decode(bytes)).toEqual(reference(bytes));
        }),
        { numRuns: 1500 },
      );
      // The direct path must be what was tested, not only the fallback.
      expect(direct / total).toBeGreaterThan(0.3);
    });

    it("a cut or corrupted message: the same result or the same refusal as proto-loader", () => {
      const decode = decoder(reference);
      fc.assert(
        fc.property(wire(type, codec), fc.nat(), fc.nat(255), (bytes, at, byte) => {
          const cut = bytes.subarray(0, at % (bytes.length + 1));
          expect(outcome(decode, cut)).toEqual(outcome(reference, cut));
          if (bytes.length > 0) {
            const changed = Buffer.from(bytes);
            changed[at % bytes.length] = byte;
            expect(outcome(decode, changed)).toEqual(outcome(reference, changed));
          }
        }),
        { numRuns: 1500 },
      );
    });
  });
}

describe("what the direct decoders leave to proto-loader", () => {
  const leftToFallback = (
    decode: (fallback: (b: Buffer) => object) => (b: Buffer) => object,
    bytes: Buffer,
  ) => {
    let used = false;
    decode((b) => {
      used = true;
      return processingRequest.deserialize(b);
    })(bytes);
    return used;
  };

  it("typed_filter_metadata, an internal address and Struct keys named __proto__", () => {
    expect(
      leftToFallback(
        processingRequestDecoder,
        processingRequest.serialize({
          request_headers: {},
          metadata_context: { typed_filter_metadata: { a: { type_url: "x", value: Buffer.from("y") } } },
        }),
      ),
    ).toBe(true);
    expect(
      leftToFallback(
        checkRequestDecoder,
        checkRequest.serialize({
          attributes: { source: { address: { envoy_internal_address: { server_listener_name: "l" } } } },
        }),
      ),
    ).toBe(true);
    // map entry { key "__proto__", value Struct {} } under filter_metadata, by hand: objects cannot hold that key
    const entry = Buffer.from([0x0a, 9, ...Buffer.from("__proto__"), 0x12, 0]);
    const meta = Buffer.from([0x0a, entry.length, ...entry]);
    const bytes = Buffer.concat([Buffer.from([0x12, 0]), Buffer.from([0x42, meta.length]), meta]);
    expect(leftToFallback(processingRequestDecoder, bytes)).toBe(true);
  });

  it("decodes an exchange's messages as Envoy sends them without proto-loader", () => {
    const identity = {
      filter_metadata: {
        "envoy.filters.http.ext_authz": {
          fields: {
            agent: { stringValue: "bot" },
            roles: { listValue: { values: [{ stringValue: "support" }] } },
            exp: { numberValue: 1.7e9 },
            ok: { boolValue: true },
            none: { nullValue: "NULL_VALUE" },
          },
        },
      },
    };
    const headers = { headers: [{ key: ":path", raw_value: Buffer.from("/mcp/kb") }] };
    const messages = [
      processingRequest.serialize({
        request_headers: { headers, end_of_stream: false },
        metadata_context: identity,
      }),
      processingRequest.serialize({ request_body: { body: Buffer.from("{}"), end_of_stream: true } }),
      processingRequest.serialize({ response_headers: { headers }, metadata_context: identity }),
      processingRequest.serialize({ response_body: { body: Buffer.alloc(0), end_of_stream: true } }),
    ];
    for (const bytes of messages) expect(leftToFallback(processingRequestDecoder, bytes)).toBe(false);
    const check = checkRequest.serialize({
      attributes: {
        source: { address: { socket_address: { address: "10.0.0.1", port_value: 40000 } } },
        destination: { address: { socket_address: { address: "10.0.0.2", port_value: 8080 } } },
        request: {
          time: { seconds: 1_764_900_000, nanos: 5 },
          http: {
            id: "1",
            method: "POST",
            header_map: headers,
            path: "/mcp/kb",
            host: "gateway",
            scheme: "https",
            protocol: "HTTP/1.1",
            size: 120,
          },
        },
        context_extensions: { server: "kb" },
        metadata_context: {},
      },
    });
    expect(leftToFallback(checkRequestDecoder, check)).toBe(false);
    expect(checkRequestDecoder(checkRequest.deserialize)(check)).toEqual(checkRequest.deserialize(check));
  });
});
