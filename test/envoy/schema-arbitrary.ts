import { createRequire } from "node:module";
import fc from "fast-check";
import { envoyProtoSources } from "../../ext-service/src/envoy/protos.js";

/**
 * Messages generated from the loaded .proto schema itself (every field of every message reachable
 * from the type asked for), for the codecs' property tests against proto-loader (codec.ts decodes
 * requests, reply-codec.ts encodes replies).
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
export interface PbType {
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
export const root = loadProtosWithOptionsSync(sources.files, sources.options);

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
export function message(type: PbType, depth: number): fc.Arbitrary<Record<string, unknown>> {
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
