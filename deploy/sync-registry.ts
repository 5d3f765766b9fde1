/**
 * Rewrites deploy/registry.yaml from registry/registry.yaml: the same servers and tools, with
 * upstreams at the compose service names. Run after every registry change:
 *   npx tsx deploy/sync-registry.ts
 * test/deploy/compose.test.ts fails while the two differ.
 */
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { format } from "prettier";
import { parseDocument } from "yaml";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const HEADER = `# yaml-language-server: $schema=../schemas/registry.schema.json
# COMPOSE COPY of registry/registry.yaml, written by deploy/sync-registry.ts: identical except the
# upstreams, which name the compose services. test/deploy/compose.test.ts fails when they drift.
`;

/** Demo server -> compose service URL. */
const COMPOSE_UPSTREAMS: Record<string, string> = {
  kb: "http://mcp-kb:3101/mcp",
  tickets: "http://mcp-tickets:3102/mcp",
  deploy: "http://mcp-deploy:3103/mcp",
};

const doc = parseDocument(readFileSync(join(ROOT, "registry/registry.yaml"), "utf8"));
const servers = doc.get("servers") as {
  items: { get(k: string): unknown; set(k: string, v: unknown): void }[];
};
for (const server of servers.items) {
  const name = String(server.get("name"));
  const url = COMPOSE_UPSTREAMS[name];
  if (!url) throw new Error(`no compose service for registry server '${name}'`);
  server.set("upstreams", doc.createNode([url], { flow: true }));
}
const target = join(ROOT, "deploy/registry.yaml");
// The source's own header comments describe the source; the copy gets its own header instead.
const body = doc.toString({ lineWidth: 0 }).replace(/^(#.*\n)+/, "");
writeFileSync(`${target}.tmp`, await format(HEADER + body, { parser: "yaml", printWidth: 110 }));
renameSync(`${target}.tmp`, target);
process.stdout.write("wrote deploy/registry.yaml\n");
