import type { MessageTypeDefinition, MethodDefinition, ServiceDefinition } from "@grpc/proto-loader";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  AUTHORIZATION_SERVICE,
  EXTERNAL_PROCESSOR_SERVICE,
  RATE_LIMIT_SERVICE,
  constantMessage,
  envoyProtos,
} from "../../ext-service/src/envoy/protos.js";
import type { Principal } from "../../ext-service/src/policy/identity.js";
import { encodeAuthzMetadata } from "../../ext-service/src/envoy/principal.js";
import { toStruct } from "../../ext-service/src/envoy/struct.js";
import type { Struct } from "../../ext-service/src/envoy/types.js";
import {
  EncodedMessage,
  EncodedStruct,
  appendStructField,
  encodeCheckAllow,
  encodeStruct,
  encodeStructField,
  structOfStruct,
  structWithStrings,
  withoutField,
} from "../../ext-service/src/envoy/wire.js";

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
const rateLimitMethod = method(RATE_LIMIT_SERVICE, "ShouldRateLimit");
const rateLimitResponse = codec("envoy.service.ratelimit.v3.RateLimitResponse");

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

describe("Structs built from encoded parts (wire.ts)", () => {
  // toStruct, the reference, assigns fields one by one: an own "__proto__" key would set the
  // prototype of its result instead. The metadata's keys are fixed names, never that one.
  const key = text.filter((k) => k !== "__proto__");
  const strings = fc.array(fc.tuple(key, text), { maxLength: 8 });

  it("a prefix and string fields: the bytes of the whole Struct", () => {
    fc.assert(
      fc.property(json, strings, fc.integer({ min: 1, max: 20 }), (value, pairs, field) => {
        // Later keys replace earlier ones in an object: keep each key once, prefix first.
        const fresh = pairs.filter(([k], i) => !(k in value) && pairs.findIndex(([j]) => j === k) === i);
        const built = structWithStrings(
          encodeStruct(toStruct(value)),
          fresh.map(([k]) => k),
          fresh.map(([, v]) => v),
        );
        const whole = toStruct({ ...value, ...Object.fromEntries(fresh) });
        expect(
          appendStructField(Buffer.alloc(0), field, built).equals(referenceStructField(field, whole)),
        ).toBe(true);
      }),
      { numRuns: 500 },
    );
  });

  it("a Struct nested under one key", () => {
    fc.assert(
      fc.property(key, strings, (outer, pairs) => {
        const inner = Object.fromEntries(pairs);
        const built = structOfStruct(
          outer,
          structWithStrings(Buffer.alloc(0), Object.keys(inner), Object.values(inner)),
        );
        const whole = toStruct({ [outer]: inner });
        expect(appendStructField(Buffer.alloc(0), 8, built).equals(referenceStructField(8, whole))).toBe(
          true,
        );
      }),
      { numRuns: 300 },
    );
  });

  it("appended to a message, after its other fields", () => {
    const message = Buffer.from([0x08, 0x01]);
    const built = structWithStrings(Buffer.alloc(0), ["a"], ["b"]);
    expect(appendStructField(message, 4, built)).toEqual(
      Buffer.concat([message, referenceStructField(4, toStruct({ a: "b" }))]),
    );
  });

  const principal: fc.Arbitrary<Principal> = fc.record({
    agent: text,
    roles: fc.array(text, { maxLength: 4 }),
    claims: json,
    issuer: fc.option(text, { nil: undefined }),
    anonymous: fc.boolean(),
  });

  /** The ext_authz identity as one Struct object, as it was built before it was cached. */
  const authzStruct = (p: Principal, requestId: string, server: string, httpMethod: string) =>
    toStruct({
      agent: p.agent,
      roles: [...p.roles],
      claims: JSON.stringify(p.claims),
      issuer: p.issuer ?? null,
      anonymous: p.anonymous,
      request_id: requestId,
      server,
      http_method: httpMethod,
    });

  it("the ext_authz identity: the bytes of its Struct, the principal's part cached", () => {
    fc.assert(
      fc.property(
        principal,
        fc.array(fc.tuple(text, text, text), { minLength: 1, maxLength: 3 }),
        (p, requests) => {
          const frozen = Object.freeze({ ...p, roles: Object.freeze([...p.roles]) });
          for (const [requestId, server, httpMethod] of requests) {
            const ours = encodeAuthzMetadata(frozen, requestId, server, httpMethod);
            expect(ours).toBeInstanceOf(EncodedStruct);
            expect(
              appendStructField(Buffer.alloc(0), 4, ours).equals(
                referenceStructField(4, authzStruct(frozen, requestId, server, httpMethod)),
              ),
            ).toBe(true);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});

/** What the server reads: proto-loader's decoding, without metadata_context unless the message
 * carries request or response headers. */
function expectedRequest(bytes: Buffer): object {
  const full = requestCodec.deserialize(bytes) as Record<string, unknown>;
  if (full.request_headers !== undefined || full.response_headers !== undefined) return full;
  const { metadata_context: _, ...rest } = full;
  return rest;
}

describe("server-side ext_proc requests: metadata_context read with headers only", () => {
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

  it("an encoded Struct goes out as the Struct it encodes", () => {
    const encoded = new EncodedStruct(encodeStruct(struct));
    const ext = { response_body: { response: {} } };
    expect(
      processingResponse.deserialize(processMethod.responseSerialize({ ...ext, dynamic_metadata: encoded })),
    ).toEqual(
      processingResponse.deserialize(processingResponse.serialize({ ...ext, dynamic_metadata: struct })),
    );
    const check = { status: { code: 0 }, ok_response: { headers_to_remove: ["authorization"] } };
    expect(
      checkResponse.deserialize(checkMethod.responseSerialize({ ...check, dynamic_metadata: encoded })),
    ).toEqual(checkResponse.deserialize(checkResponse.serialize({ ...check, dynamic_metadata: struct })));
  });

  it("a constant reply is encoded once, to what proto-loader's encoding decodes to, and cannot change", () => {
    const override = { response_body_mode: "BUFFERED", response_header_mode: "SEND" };
    const reply = constantMessage({ response_headers: { response: {} }, mode_override: override });
    const first = processMethod.responseSerialize(reply);
    // The direct encoder (reply-codec.ts) writes fields in the object's order, not by number.
    expect(processingResponse.deserialize(first)).toEqual(
      processingResponse.deserialize(processingResponse.serialize(reply)),
    );
    expect(processMethod.responseSerialize(reply)).toBe(first);
    expect(Object.isFrozen(reply) && Object.isFrozen(reply.response_headers.response)).toBe(true);
    expect(Object.isFrozen(override)).toBe(true);
    // An equal message that is not marked is encoded afresh.
    const other = { response_headers: { response: {} }, mode_override: { ...override } };
    expect(processMethod.responseSerialize(other)).not.toBe(first);
    expect(processMethod.responseSerialize(other).equals(first)).toBe(true);
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

describe("the ext_authz allow in wire form (encodeCheckAllow)", () => {
  const headerName = fc.oneof(
    fc.constantFrom("x-mcp-agent", "x-mcp-request-id", "x-mcp-issuer", "authorization", ""),
    fc.string({ unit: "binary", maxLength: 12 }),
  );

  it("writes the bytes proto-loader writes for the same reply", () => {
    fc.assert(
      fc.property(
        fc.dictionary(headerName, text, { maxKeys: 5 }),
        fc.array(headerName, { maxLength: 4 }),
        fc.dictionary(fc.string({ maxLength: 8 }), json, { maxKeys: 4 }),
        (set, remove, metadata) => {
          const struct = toStruct(metadata);
          const ours = encodeCheckAllow(set, remove, new EncodedStruct(encodeStruct(struct)));
          expect(ours).toBeInstanceOf(EncodedMessage);
          const reference = checkResponse.serialize({
            status: { code: 0 },
            ok_response: {
              headers: Object.entries(set).map(([key, value]) => ({
                header: { key, value },
                append: { value: false },
              })),
              headers_to_remove: remove,
            },
            dynamic_metadata: struct,
          });
          expect(ours.bytes.equals(reference)).toBe(true);
          // The server-side serializer sends it as it is.
          expect(checkMethod.responseSerialize(ours)).toBe(ours.bytes);
        },
      ),
    );
  });

  it("the identity metadata the Check handler sends", () => {
    const principal: Principal = Object.freeze({
      agent: "support-bot",
      roles: Object.freeze(["reader"]),
      claims: Object.freeze({ sub: "support-bot" }),
      issuer: "https://issuer.example",
      anonymous: false,
    });
    const set = { "x-mcp-agent": "support-bot", "x-mcp-request-id": "r-1", "x-mcp-issuer": "iss" };
    const ours = encodeCheckAllow(
      set,
      ["authorization"],
      encodeAuthzMetadata(principal, "r-1", "kb", "POST"),
    );
    const decoded = checkResponse.deserialize(ours.bytes) as {
      status: { code: number };
      ok_response: { headers: { header: { key: string; value: string } }[]; headers_to_remove: string[] };
      dynamic_metadata: Struct;
    };
    expect(decoded.status.code).toBe(0);
    expect(decoded.ok_response.headers.map((h) => [h.header.key, h.header.value])).toEqual(
      Object.entries(set),
    );
    expect(decoded.ok_response.headers_to_remove).toEqual(["authorization"]);
    expect(decoded.dynamic_metadata.fields?.request_id?.stringValue).toBe("r-1");
  });
});

describe("rate limit service replies", () => {
  it("a constant all-OK answer is encoded once, as proto-loader encodes it", () => {
    const reply = constantMessage({ overall_code: "OK", statuses: [{ code: "OK" }, { code: "OK" }] });
    const first = rateLimitMethod.responseSerialize(reply);
    expect(first.equals(rateLimitResponse.serialize(reply))).toBe(true);
    expect(rateLimitMethod.responseSerialize(reply)).toBe(first);
    const over = { overall_code: "OVER_LIMIT", statuses: [{ code: "OVER_LIMIT" }] };
    expect(rateLimitMethod.responseSerialize(over).equals(rateLimitResponse.serialize(over))).toBe(true);
  });
});
