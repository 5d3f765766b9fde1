import type { MessageTypeDefinition } from "@grpc/proto-loader";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { EncodedStruct } from "../../ext-service/src/envoy/encoded-struct.js";
import { envoyProtos } from "../../ext-service/src/envoy/protos.js";
import { encodeCheckResponse, encodeProcessingResponse } from "../../ext-service/src/envoy/reply-codec.js";
import { encodeStruct } from "../../ext-service/src/envoy/wire.js";
import { continueFor } from "../../bench/noop-ext-service.js";
import { message, root } from "./schema-arbitrary.js";

/**
 * The direct reply encoders (reply-codec.ts) against proto-loader: for replies generated from the
 * loaded .proto schema (every field of every message reachable from ProcessingResponse and
 * CheckResponse), our bytes must decode, with proto-loader, to the same message as proto-loader's
 * own encoding of the same object; where proto-loader refuses an object, the encoder must leave it
 * to proto-loader (give up) rather than write bytes.
 */

const { definition } = envoyProtos();
type Codec = MessageTypeDefinition<object, object>;
const processingResponse = definition["envoy.service.ext_proc.v3.ProcessingResponse"] as Codec;
const checkResponse = definition["envoy.service.auth.v3.CheckResponse"] as Codec;

function reference(codec: Codec, reply: object): object | "refused" {
  try {
    return codec.deserialize(codec.serialize(reply));
  } catch {
    return "refused";
  }
}

for (const [name, codec, encode] of [
  ["ProcessingResponse", processingResponse, encodeProcessingResponse],
  ["CheckResponse", checkResponse, encodeCheckResponse],
] as const) {
  const type = root.lookupType(
    name === "CheckResponse"
      ? "envoy.service.auth.v3.CheckResponse"
      : "envoy.service.ext_proc.v3.ProcessingResponse",
  );

  describe(`${name}: direct encoder (reply-codec.ts)`, () => {
    it("writes bytes that decode to what proto-loader's encoding decodes to, most replies without proto-loader", () => {
      let direct = 0;
      let total = 0;
      fc.assert(
        fc.property(message(type, 9), (reply) => {
          total++;
          const ours = encode(reply);
          const theirs = reference(codec, reply);
          if (ours === undefined) return;
          direct++;
          expect(theirs).not.toBe("refused");
          expect(codec.deserialize(ours)).toEqual(theirs);
        }),
        { numRuns: 1500 },
      );
      // The direct path must be what was tested, not only the fallback.
      expect(direct / total).toBeGreaterThan(0.3);
    });

    it("a Struct field given already encoded (EncodedStruct) is written as the Struct itself", () => {
      const struct = type.fieldsArray.find((f) => f.name === "dynamic_metadata")!.resolvedType!;
      fc.assert(
        fc.property(message(type, 6), message(struct as never, 6), (reply, metadata) => {
          let bytes: Buffer;
          try {
            bytes = encodeStruct(metadata);
          } catch {
            return; // a Struct wire.ts refuses (a negative null_value) is never encoded ahead
          }
          const plain = { ...reply, dynamic_metadata: metadata };
          const ours = encode({ ...reply, dynamic_metadata: new EncodedStruct(bytes) });
          if (ours === undefined) return;
          expect(codec.deserialize(ours)).toEqual(reference(codec, plain));
        }),
        { numRuns: 300 },
      );
    });

    it("leaves to proto-loader what it converts or refuses", () => {
      const forms: object[] =
        name === "CheckResponse"
          ? [
              { status: { code: -1 } }, // a negative int32 (a ten-byte varint)
              { status: { code: "0" } }, // a number as a string
              { status: { code: 0, details: [{ type_url: "t", value: Buffer.from("v") }] } }, // Any
              { ok_response: { headers_to_remove: "x-a" } }, // not an array: proto-loader throws
              { denied_response: { status: { code: "NoSuchStatus" } } }, // an unknown enum name
              [], // an array: proto-loader throws
            ]
          : [
              { immediate_response: { body: "aGk=" } }, // bytes as base64
              { request_headers: { response: { clear_route_cache: 1 } } }, // a number for a bool
              { mode_override: { request_body_mode: "SOMETIMES" } }, // an unknown enum name
              { request_headers: "continue" }, // not an object: proto-loader throws
              { dynamic_metadata: { fields: { a: "not a Value" } } }, // a Struct protobufjs refuses
              { request_headers: { response: { header_mutation: { remove_headers: [null] } } } },
            ];
      for (const reply of forms) expect(encode(reply)).toBeUndefined();
    });
  });
}

describe("the replies the ext-service and the do-nothing server write", () => {
  const struct = { fields: { mcp_gateway: { structValue: { fields: { agent: { stringValue: "bot" } } } } } };
  const metadata = new EncodedStruct(encodeStruct(struct));
  /** The same reply with its metadata as the plain Struct, for proto-loader. */
  const plain = (reply: object) =>
    "dynamic_metadata" in reply ? { ...reply, dynamic_metadata: struct } : reply;
  const processing: object[] = [
    ...(["request_headers", "request_body", "response_headers", "response_body"] as const).map((kind) =>
      continueFor({ request: kind }),
    ),
    {
      response_headers: { response: {} },
      mode_override: {
        request_header_mode: "SEND",
        request_body_mode: "BUFFERED",
        request_trailer_mode: "SKIP",
        response_header_mode: "SEND",
        response_body_mode: "STREAMED",
        response_trailer_mode: "SKIP",
      },
    },
    {
      response_body: { response: { body_mutation: { body: Buffer.from("{}") } } },
      dynamic_metadata: metadata,
    },
    {
      response_body: {
        response: {
          header_mutation: {
            set_headers: [{ header: { key: ":status", raw_value: Buffer.from("403") } }],
            remove_headers: ["content-encoding"],
          },
          body_mutation: { body: Buffer.from("{}") },
        },
      },
      dynamic_metadata: metadata,
    },
    {
      immediate_response: {
        status: { code: "Forbidden" },
        headers: {
          set_headers: [{ header: { key: "content-type", raw_value: Buffer.from("application/json") } }],
        },
        body: Buffer.from('{"error":"denied"}'),
        details: "tool_denied",
      },
      dynamic_metadata: metadata,
    },
    { immediate_response: { status: { code: 207 } } }, // a status outside Envoy's enum
  ];
  const check: object[] = [
    {
      status: { code: 0 },
      ok_response: { headers: [{ header: { key: "x-mcp-agent", value: "noop" }, append: { value: false } }] },
    },
    {
      status: { code: 7 },
      denied_response: {
        status: { code: "Unauthorized" },
        headers: [{ header: { key: "www-authenticate", value: "Bearer" }, append: { value: false } }],
        body: '{"error":"unauthorized"}',
      },
      dynamic_metadata: metadata,
    },
  ];

  it("are encoded directly, to what proto-loader's encoding decodes to", () => {
    for (const [codec, encode, replies] of [
      [processingResponse, encodeProcessingResponse, processing],
      [checkResponse, encodeCheckResponse, check],
    ] as const) {
      for (const reply of replies) {
        const ours = encode(reply);
        expect(ours).toBeDefined();
        expect(codec.deserialize(ours!)).toEqual(reference(codec, plain(reply)));
      }
    }
  });
});
