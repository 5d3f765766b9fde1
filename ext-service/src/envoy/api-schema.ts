import { existsSync, readdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative } from "node:path";
import protobuf from "protobufjs";
import { packageProtoDir } from "./protos.js";

/**
 * Envoy's v3 API for checking configuration: the protos vendored in proto/envoy-api/ (Envoy's
 * data-plane-api, cncf/xds, protoc-gen-validate and googleapis files; proto/envoy-api/README.md
 * names the commits). Only the files that define the types our configs use, with everything they
 * import, are vendored (deploy/vendor-envoy-api.ts), so a type outside that set is "unknown".
 */
export interface EnvoyApi {
  readonly root: protobuf.Root;
  /** The vendored .proto files loaded. */
  readonly loaded: number;
  /** The message type with this full name (no leading dot), or undefined. */
  message(name: string): protobuf.Type | undefined;
}

/** Well-known types that protobufjs ships in its `common` bundle. */
const BUNDLED = new Set(
  ["any", "duration", "empty", "field_mask", "struct", "timestamp", "wrappers"].map(
    (n) => `google/protobuf/${n}.proto`,
  ),
);

function listProtos(dir: string, base: string, out: string[]): string[] {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) listProtos(path, base, out);
    else if (entry.name.endsWith(".proto")) out.push(relative(base, path));
  }
  return out;
}

let cached: EnvoyApi | undefined;

/** Loads the vendored Envoy API once per process (about a hundred files). */
export function loadEnvoyApi(): EnvoyApi {
  if (cached) return cached;
  const require = createRequire(import.meta.url);
  const vendored = join(packageProtoDir(), "envoy-api");
  const protobufDir = dirname(require.resolve("protobufjs/package.json"));
  // protobufjs holds google/protobuf/descriptor.proto, imported by the annotation protos.
  const includeDirs = [vendored, protobufDir];
  const resolveImport = (name: string): string | undefined =>
    BUNDLED.has(name) ? name : includeDirs.map((d) => join(d, name)).find((p) => existsSync(p));
  const files = listProtos(vendored, vendored, []).sort();

  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => resolveImport(target) ?? target;
  root.loadSync(files, { keepCase: true });
  root.resolveAll();

  const types = new Map<string, protobuf.Type | null>();
  cached = {
    root,
    loaded: files.length,
    message(name) {
      let type = types.get(name);
      if (type === undefined) {
        const found = root.lookup(name.startsWith(".") ? name : `.${name}`);
        type = found instanceof protobuf.Type ? found : null;
        types.set(name, type);
      }
      return type ?? undefined;
    },
  };
  return cached;
}
