import { cpSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadEngine } from "../../ext-service/src/config/compile.js";
import { ensureDevKeys } from "../../ext-service/src/config/devkeys.js";
import { parseRegistry } from "../../ext-service/src/config/load.js";

const repo = join(import.meta.dirname, "../..");
const tmp = mkdtempSync(join(tmpdir(), "mcp-gateway-example-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("shipped examples", () => {
  it("examples/gateway.yaml compiles with its registry and freshly made dev keys", async () => {
    cpSync(join(repo, "examples"), join(tmp, "examples"), { recursive: true });
    cpSync(join(repo, "registry"), join(tmp, "registry"), { recursive: true });
    await ensureDevKeys(join(tmp, ".dev"));
    const { loaded, engine } = loadEngine(join(tmp, "examples/gateway.yaml"));
    expect(loaded.registryFile).toBe(join(tmp, "registry/registry.yaml"));
    expect(engine.registry.serverNames()).toEqual(["kb", "tickets", "deploy"]);
    expect(Object.keys(loaded.config.agents)).toEqual([
      "research-bot",
      "support-bot",
      "release-bot",
      "ops-bot",
      "release-manager",
      "platform-admin",
    ]);
  });

  it("registry/registry.yaml parses on its own", () => {
    const registry = parseRegistry(readFileSync(join(repo, "registry/registry.yaml"), "utf8"));
    expect(registry.servers.flatMap((s) => s.tools.map((t) => `${s.name}/${t.name}`))).toContain(
      "tickets/delete_ticket",
    );
  });
});
