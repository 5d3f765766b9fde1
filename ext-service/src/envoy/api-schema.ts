import { existsSync, readFileSync, readdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative } from "node:path";
import protobuf from "protobufjs";

/**
 * Envoy's v3 API as shipped in `@grpc/grpc-js-xds` (a mid-2024 snapshot of envoy/api, xds,
 * googleapis and protoc-gen-validate). Every `.proto` under envoy/ and xds/ whose imports resolve
 * is loaded into one protobufjs Root; the files whose imports the package lacks are skipped and
 * listed, so a test can pin how many there are.
 */
export interface EnvoyApi {
  readonly root: protobuf.Root;
  /** Files under envoy-api/ and xds/ considered. */
  readonly total: number;
  readonly loaded: number;
  /** Files left out, each with the first import that does not resolve. */
  readonly skipped: readonly { file: string; missing: string }[];
  /** The message type with this full name (no leading dot), or undefined. */
  message(name: string): protobuf.Type | undefined;
}

/** Well-known types that protobufjs ships in its `common` bundle. */
const BUNDLED = new Set(
  ["any", "duration", "empty", "field_mask", "struct", "timestamp", "wrappers"].map(
    (n) => `google/protobuf/${n}.proto`,
  ),
);

const IMPORT = /^\s*import\s+(?:public\s+|weak\s+)?"([^"]+)"\s*;/gm;

function listProtos(dir: string, out: string[]): string[] {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) listProtos(path, out);
    else if (entry.name.endsWith(".proto")) out.push(path);
  }
  return out;
}

let cached: EnvoyApi | undefined;

/** Loads the Envoy API once per process (about 450 files, a few hundred milliseconds). */
export function loadEnvoyApi(): EnvoyApi {
  if (cached) return cached;
  const require = createRequire(import.meta.url);
  const deps = join(dirname(require.resolve("@grpc/grpc-js-xds/package.json")), "deps");
  const protobufDir = dirname(require.resolve("protobufjs/package.json"));
  const includeDirs = [
    join(deps, "envoy-api"),
    join(deps, "xds"),
    join(deps, "googleapis"),
    join(deps, "protoc-gen-validate"),
    protobufDir, // google/protobuf/descriptor.proto, imported by the annotation protos
  ];
  const resolveImport = (name: string): string | undefined =>
    BUNDLED.has(name) ? name : includeDirs.map((d) => join(d, name)).find((p) => existsSync(p));

  // A file is loadable when every import, transitively, resolves.
  const verdict = new Map<string, string | null>(); // import name -> first missing import, or null
  const missingImport = (name: string, visiting: Set<string>): string | null => {
    if (BUNDLED.has(name)) return null;
    const known = verdict.get(name);
    if (known !== undefined) return known;
    if (visiting.has(name)) return null;
    visiting.add(name);
    const file = resolveImport(name);
    let missing: string | null = file ? null : name;
    if (file) {
      for (const match of readFileSync(file, "utf8").matchAll(IMPORT)) {
        const inner = missingImport(match[1]!, visiting);
        if (inner) {
          missing = inner;
          break;
        }
      }
    }
    verdict.set(name, missing);
    return missing;
  };

  const roots = [includeDirs[0]!, includeDirs[1]!];
  const files = roots.flatMap((root) => listProtos(root, []).map((f) => relative(root, f)));
  const loadable: string[] = [];
  const skipped: { file: string; missing: string }[] = [];
  for (const file of files.sort()) {
    const missing = missingImport(file, new Set());
    if (missing) skipped.push({ file, missing });
    else loadable.push(file);
  }

  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => resolveImport(target) ?? target;
  root.loadSync(loadable, { keepCase: true });
  root.resolveAll();

  const types = new Map<string, protobuf.Type | null>();
  cached = {
    root,
    total: files.length,
    loaded: loadable.length,
    skipped,
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
