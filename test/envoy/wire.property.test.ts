import type { MessageTypeDefinition, MethodDefinition, ServiceDefinition } from "@grpc/proto-loader";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  AUTHORIZATION_SERVICE,
  EXTERNAL_PROCESSOR_SERVICE,
  envoyProtos,
} from "../../ext-service/src/envoy/protos.js";
import { toStruct } from "../../ext-service/src/envoy/struct.js";
import type { Struct } from "../../ext-service/src/envoy/types.js";
import { encodeStructField, withoutField } from "../../ext-service/src/envoy/wire.js";

/**
 * The ext-service's hand-tuned wire paths (wire.ts, protos.ts) against proto-loader's own
 * conversions, which they must match exactly: the same bytes for a Struct, the same decoded
 * request, the same decoded reply.
 */

const { definition } = envoyProtos();
type Codec = MessageTypeDefinition<object, object>;
const codec = (name: string) => definition[name] as Codec;
const structCodec = codec("google.protobuf.Struct");
const requestCodec = codec("envoy.service.ext_proc.v3.ProcessingRequest");
const processingResponse = codec("envoy.service.ext_proc.v3.ProcessingResponse");
const checkResponse = codec("envoy.service.auth.v3.CheckResponse");
const method = (service: string, name: string) =>
  (definition[service] as ServiceDefinition)[name] as MethodDefinition<object, object>;
const processMethod = method(EXTERNAL_PROCESSOR_SERVICE, "Process");
const checkMethod = method(AUTHORIZATION_SERVICE, "Check");

function varint(n: number): number[] {
  const out: number[] = [];
  while (n >= 128) {
    out.push((n % 128) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

/** proto-loader's encoding of a Struct as field `field` of an enclosing message. */
function referenceStructField(field: number, struct: Struct): Buffer {
  const body = structCodec.serialize(struct);
  return Buffer.concat([Buffer.from([...varint(field * 8 + 2), ...varint(body.length)]), body]);
}

const text = fc.oneof(
  fc.string({ unit: "binary", maxLength: 20 }),
  fc.constantFrom("", "é", "😀", "\u0000", "a".repeat(200)),
);
// Numbers as a Struct holds them (doubles); -0 is left out: JSON cannot tell it from 0.
const number = fc.oneof(
  fc.integer(),
  fc.double({ noNaN: true }).filter((n) => !Object.is(n, -0)),
  fc.constantFrom(0, 2 ** 53, 1e-300),
);
const json = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: "small" },
    fc.constant(null),
    fc.boolean(),
    number,
    text,
    fc.array(tie("value"), { maxLength: 4 }),
    tie("object"),
  ),
  object: fc.dictionary(text, tie("value"), { maxKeys: 5 }),
})).object as fc.Arbitrary<Record<string, unknown>>;

const metadata = json.map((m) => ({
  filter_metadata: { "envoy.filters.http.ext_authz": toStruct(m) },
}));

const headers = fc.array(
  fc.record({ key: fc.constantFrom(":path", ":method", "content-type", "x-a"), raw_value: fc.uint8Array() }),
  { maxLength: 4 },
);
const request = fc.oneof(
  fc.record({ request_headers: fc.record({ headers: fc.record({ headers }), end_of_stream: fc.boolean() }) }),
  fc.record({
    request_body: fc.record({ body: fc.uint8Array({ maxLength: 300 }), end_of_stream: fc.boolean() }),
  }),
  fc.record({ response_headers: fc.record({ headers: fc.record({ headers }) }) }),
  fc.record({ response_body: fc.record({ body: fc.uint8Array({ maxLength: 300 }) }) }),
);
const requestWithMetadata = fc
  .tuple(request, fc.option(metadata, { nil: undefined }), fc.boolean())
  .map(([r, m, observability]) => ({
    ...r,
    ...(m ? { metadata_context: m } : {}),
    ...(observability ? { observability_mode: true } : {}),
  }));

describe("Struct encoding (wire.ts)", () => {
  it("writes the same bytes as proto-loader", () => {
    fc.assert(
      fc.property(json, fc.integer({ min: 1, max: 20 }), (value, field) => {
        const struct = toStruct(value);
        expect(encodeStructField(field, struct).equals(referenceStructField(field, struct))).toBe(true);
      }),
      { numRuns: 500 },
    );
  });

  it("writes what Structs from elsewhere hold: NULL_VALUE by name or number, empty ones", () => {
    const struct: Struct = {
      fields: {
        a: { nullValue: "NULL_VALUE" },
        b: { nullValue: 0 },
        c: { structValue: {} },
        d: { listValue: {} },
      },
    };
    expect(encodeStructField(8, struct).equals(referenceStructField(8, struct))).toBe(true);
    expect(encodeStructField(4, {}).equals(referenceStructField(4, {}))).toBe(true);
    // Own keys only, whatever the prototype holds; an own "__proto__" key is a key like any other.
    const own = { fields: JSON.parse('{"__proto__": {"boolValue": true}}') as Struct["fields"] };
    const inherited = { fields: Object.create({ a: { boolValue: true } }) as Struct["fields"] };
    for (const struct of [own, inherited]) {
      expect(encodeStructField(8, struct).equals(referenceStructField(8, struct))).toBe(true);
    }
  });

  it("refuses a field that is not a Value, as proto-loader does", () => {
    const bad = { fields: { a: "text" } } as unknown as Struct;
    expect(() => structCodec.serialize(bad)).toThrow(TypeError);
    expect(() => encodeStructField(8, bad)).toThrow(TypeError);
  });
});

/** What the server reads: proto-loader's decoding, without metadata_context unless the message
 * carries request headers. */
function expectedRequest(bytes: Buffer): object {
  const full = requestCodec.deserialize(bytes) as Record<string, unknown>;
  if (full.request_headers !== undefined) return full;
  const { metadata_context: _, ...rest } = full;
  return rest;
}

describe("server-side ext_proc requests: metadata_context read with the request headers only", () => {
  it("decode as proto-loader does, whole or merged from two parts", () => {
    fc.assert(
      fc.property(requestWithMetadata, fc.option(requestWithMetadata, { nil: undefined }), (a, b) => {
        // Two serialized messages concatenated are one message with both merged (protobuf rule),
        // so this also covers fields out of order and metadata_context more than once.
        const bytes = b
          ? Buffer.concat([requestCodec.serialize(a), requestCodec.serialize(b)])
          : requestCodec.serialize(a);
        expect(processMethod.requestDeserialize(bytes)).toEqual(expectedRequest(bytes));
      }),
      { numRuns: 300 },
    );
  });

  it("keeps the identity on request headers", () => {
    const message = {
      request_headers: { headers: { headers: [{ key: ":path", raw_value: Buffer.from("/mcp/kb") }] } },
      metadata_context: { filter_metadata: { "envoy.filters.http.ext_authz": toStruct({ agent: "bot" }) } },
    };
    const bytes = requestCodec.serialize(message);
    const decoded = processMethod.requestDeserialize(bytes) as { metadata_context?: unknown };
    expect(decoded.metadata_context).toBeDefined();
    expect(decoded).toEqual(requestCodec.deserialize(bytes));
  });

  it("a cut buffer fails as proto-loader's does", () => {
    fc.assert(
      fc.property(requestWithMetadata, fc.nat(), (message, at) => {
        const whole = requestCodec.serialize(message);
        const cut = whole.subarray(0, at % (whole.length + 1));
        let expected: object | undefined;
        try {
          expected = expectedRequest(cut);
        } catch {
          expected = undefined;
        }
        let got: object | undefined;
        try {
          got = processMethod.requestDeserialize(cut);
        } catch {
          got = undefined;
        }
        if (expected === undefined) expect(got).toBeUndefined();
        else expect(got).toEqual(expected);
      }),
      { numRuns: 300 },
    );
  });

  it("withoutField returns the same buffer when there is nothing to take out, and refuses groups", () => {
    const bytes = requestCodec.serialize({ request_body: { body: Buffer.from("x"), end_of_stream: true } });
    expect(withoutField(bytes, 8)).toBe(bytes);
    const headers = requestCodec.serialize({
      request_headers: {},
      metadata_context: { filter_metadata: {} },
    });
    expect(withoutField(headers, 8, 2)).toBe(headers);
    expect(withoutField(headers, 8)?.length).toBeLessThan(headers.length);
    expect(withoutField(Buffer.from([0x0b]), 8)).toBeUndefined(); // a group
  });
});

describe("server-side replies: dynamic_metadata written last", () => {
  const struct = toStruct({ mcp_gateway: { request_id: "r-1", agent: "bot", decision: "allow" } });

  it("ext_proc replies decode to what proto-loader's encoding decodes to", () => {
    for (const reply of [
      {
        response_body: { response: { body_mutation: { body: Buffer.from("new") } } },
        dynamic_metadata: struct,
      },
      {
        immediate_response: {
          status: { code: "Forbidden" },
          body: Buffer.from("{}"),
          details: "tool_unknown",
        },
        dynamic_metadata: struct,
      },
      { request_headers: { response: {} } },
    ]) {
      const ours = processMethod.responseSerialize(reply);
      expect(processingResponse.deserialize(ours)).toEqual(
        processingResponse.deserialize(processingResponse.serialize(reply)),
      );
    }
  });

  it("ext_authz replies too", () => {
    const reply = {
      status: { code: 0 },
      ok_response: { headers_to_remove: ["authorization"] },
      dynamic_metadata: struct,
    };
    expect(checkResponse.deserialize(checkMethod.responseSerialize(reply))).toEqual(
      checkResponse.deserialize(checkResponse.serialize(reply)),
    );
  });
});
