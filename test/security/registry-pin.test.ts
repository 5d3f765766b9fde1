import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { toNodeHandler } from "@modelcontextprotocol/node";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { createMcpHandler, McpServer as McpServerV2 } from "@modelcontextprotocol/server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { z } from "zod";
import { startSdkUpstream, unusedPort, type SdkUpstream } from "../e2e/harness.js";
import { runCli } from "./helpers.js";

/**
 * `registry pin` as someone onboarding a server does it (new-user trial B6, B10): a registry that
 * lists the server with `tools: []`, a real SDK server offering three tools, and servers that
 * cannot be listed (nothing listening, a wrong path).
 */

let upstream: SdkUpstream;
let base: string;
let closedPort: number;
let dir: string;

beforeAll(async () => {
  upstream = await startSdkUpstream(() => {
    const mcp = new McpServer({ name: "tools", version: "1.0.0" });
    for (const name of ["alpha", "beta", "gamma"]) {
      mcp.registerTool(
        name,
        {
          description: `The ${name} tool: a long description so a flow-style line would be long.`,
          inputSchema: { q: z.string() },
        },
        async ({ q }) => ({ content: [{ type: "text", text: q }] }),
      );
    }
    return mcp;
  });
  base = upstream.base;
  closedPort = await unusedPort();
  dir = mkdtempSync(join(tmpdir(), "mcp-pin-cli-"));
});

afterAll(async () => {
  await upstream.close();
  rmSync(dir, { recursive: true, force: true });
});

function writeConfig(name: string, servers: string[]): { config: string; registry: string } {
  const config = join(dir, `${name}.gateway.yaml`);
  const registry = join(dir, `${name}.registry.yaml`);
  writeFileSync(
    config,
    [
      `registry: ${name}.registry.yaml`,
      "auth:",
      "  mode: optional",
      "  anonymous: { agent: tester, roles: [] }",
      "",
    ].join("\n"),
  );
  writeFileSync(registry, ['version: "1"', "servers:", ...servers, ""].join("\n"));
  return { config, registry };
}

describe("new-user trial B6: registry pin onboarding a server listed with tools: []", () => {
  let files: { config: string; registry: string };
  beforeAll(() => {
    files = writeConfig("onboard", ["  - name: tools", `    upstreams: ["${base}/mcp"]`, "    tools: []"]);
  });

  it("without --write, the hint names --add-new for new tools, exit 1", async () => {
    const run = await runCli(["registry", "pin", "--config", files.config]);
    expect(run.code).toBe(1);
    expect(run.out).toContain("3 new, 0 changed");
    expect(run.out).toContain(
      "run again with --write --add-new (3 new tool(s) are added only with --add-new)",
    );
  });

  it("--write alone adds nothing, says why, and exits 1 while new tools remain", async () => {
    const run = await runCli(["registry", "pin", "--config", files.config, "--write"]);
    expect(run.out).toContain("0 added");
    expect(run.out).toContain(
      "3 new tool(s) not added (tools/alpha, tools/beta, tools/gamma): review them, then run again with --write --add-new",
    );
    expect(run.code).toBe(1);
    expect(readFileSync(files.registry, "utf8")).toContain("tools: []");
  });

  it("--write --add-new writes the tools in block style, one field a line, exit 0", async () => {
    const run = await runCli(["registry", "pin", "--config", files.config, "--write", "--add-new"]);
    expect(run.out).toContain("3 added");
    expect(run.code).toBe(0);
    const text = readFileSync(files.registry, "utf8");
    const tools = text.slice(text.indexOf("    tools:"));
    expect(tools).not.toMatch(/[[{]/);
    expect(Math.max(...text.split("\n").map((l) => l.length))).toBeLessThan(120);
    expect(text).toMatch(/^ {4}tools:\n {6}- name: alpha\n/m);
    const written = parse(text) as { servers: { tools: { name: string; risk: string; pin: string }[] }[] };
    expect(written.servers[0]!.tools.map((t) => [t.name, t.risk])).toEqual([
      ["alpha", "high"],
      ["beta", "high"],
      ["gamma", "high"],
    ]);
    const again = await runCli(["registry", "pin", "--config", files.config]);
    expect(again.out).toContain("0 new, 0 changed, 0 removed, 0 unpinned, 3 unchanged");
    expect(again.code).toBe(0);
  });
});

describe("new-user trial B10: registry pin says why a server cannot be listed", () => {
  it("prints each upstream's URL with the cause: connection refused, HTTP 404 on a wrong path", async () => {
    const { config } = writeConfig("broken", [
      "  - name: down",
      `    upstreams: ["http://127.0.0.1:${closedPort}/mcp"]`,
      "    tools: []",
      "  - name: wrongpath",
      `    upstreams: ["${base}/mpc"]`,
      "    tools: []",
    ]);
    const run = await runCli(["registry", "pin", "--config", config]);
    expect(run.code).toBe(1);
    expect(run.out).toContain(
      `server down: unreachable\n  http://127.0.0.1:${closedPort}/mcp: connect ECONNREFUSED 127.0.0.1:${closedPort}\n`,
    );
    expect(run.out).toContain(
      `server wrongpath: unreachable\n  ${base}/mpc: HTTP 404: <pre>Cannot POST /mpc</pre> (is this the server's MCP endpoint path?)\n`,
    );
  });
});

describe("issue 11: registry pin speaks both eras", () => {
  it("pins a 2026-07-28-only server (createMcpHandler with legacy: 'reject')", async () => {
    const handler = createMcpHandler(
      () => {
        const mcp = new McpServerV2({ name: "modern-only", version: "1.0.0" });
        mcp.registerTool(
          "delta",
          {
            description: "The delta tool, served to 2026-07-28 clients only.",
            inputSchema: z.object({ q: z.string() }),
          },
          async ({ q }) => ({ content: [{ type: "text", text: q }] }),
        );
        return mcp;
      },
      { legacy: "reject" },
    );
    const node = toNodeHandler(handler);
    const modern = createServer((req, res) => void node(req, res));
    await new Promise<void>((resolve) => modern.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(modern.address() as AddressInfo).port}/mcp`;
    try {
      const { config, registry } = writeConfig("modern", [
        "  - name: modern",
        `    upstreams: ["${url}"]`,
        "    tools: []",
      ]);
      const run = await runCli(["registry", "pin", "--config", config, "--write", "--add-new"]);
      expect(run.out).toContain(`server modern (${url}): 1 new`);
      expect(run.code, run.out).toBe(0);
      const written = parse(readFileSync(registry, "utf8")) as {
        servers: { tools: { name: string; pin: string }[] }[];
      };
      expect(written.servers[0]!.tools.map((t) => t.name)).toEqual(["delta"]);
      expect(written.servers[0]!.tools[0]!.pin).toMatch(/^sha256:[0-9a-f]{64}$/);
      const again = await runCli(["registry", "pin", "--config", config]);
      expect(again.out).toContain("0 new, 0 changed, 0 removed, 0 unpinned, 1 unchanged");
    } finally {
      modern.closeAllConnections();
      await new Promise<void>((resolve) => modern.close(() => resolve()));
      await handler.close();
    }
  });
});
