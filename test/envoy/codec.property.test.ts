import type { MessageTypeDefinition } from "@grpc/proto-loader";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { checkRequestDecoder, processingRequestDecoder } from "../../ext-service/src/envoy/codec.js";
import { envoyProtos } from "../../ext-service/src/envoy/protos.js";
import { message, root, type PbType } from "./schema-arbitrary.js";

/**
 * The direct request decoders (codec.ts) against proto-loader's own decoding, which they must
 * match exactly: messages generated from the loaded .proto schema itself (every field of every
 * message reachable from ProcessingRequest and CheckRequest), alone, merged (two encodings
 * concatenated: fields repeated, out of order, two oneof members), with fields the schema does
 * not have, and cut short.
 */

const { definition } = envoyProtos();
type Codec = MessageTypeDefinition<object, object>;
const processingRequest = definition["envoy.service.ext_proc.v3.ProcessingRequest"] as Codec;
const checkRequest = definition["envoy.service.auth.v3.CheckRequest"] as Codec;

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
