import { mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDemoGateway, type DemoGateway } from "./harness.js";

/**
 * New-user trial B3: `mcp-remote`, the stdio bridge many desktop clients (Claude Desktop) use for
 * remote servers, crashed on the demo because the RFC 9728 metadata named the issuer
 * (`mcp-gateway-dev`) as an authorization server, which is not a URL. The real bridge (the
 * exact devDependency), spawned as a desktop client spawns it, against the unchanged demo: it
 * runs its discovery, then connects with the bearer token passed by `--header`, lists and calls.
 */

const PROXY = createRequire(import.meta.url).resolve("mcp-remote/dist/proxy.js");

let gw: DemoGateway;
let configDir: string;
beforeAll(async () => {
  gw = await startDemoGateway();
  // mcp-remote keeps OAuth state under MCP_REMOTE_CONFIG_DIR: a fresh one, never the user's.
  configDir = mkdtempSync(join(tmpdir(), "mcp-remote-"));
});
afterAll(async () => {
  await gw?.close();
  rmSync(configDir, { recursive: true, force: true });
});

async function bridge(url: string, token: string): Promise<{ client: Client; stderr: () => string }> {
  let stderr = "";
  const transport = new StdioClientTransport({
    command: process.execPath,
    // The config README.md documents: the token from the environment (mcp-remote substitutes
    // ${VAR} in header values), no space after the colon (some hosts split arguments on spaces).
    args: [PROXY, url, "--header", "Authorization:Bearer ${MCP_GATEWAY_TOKEN}", "--transport", "http-only"],
    env: {
      ...(process.env as Record<string, string>),
      MCP_GATEWAY_TOKEN: token,
      MCP_REMOTE_CONFIG_DIR: configDir,
    },
    stderr: "pipe",
  });
  transport.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  const client = new Client({ name: "desktop-host", version: "1.0.0" });
  await client.connect(transport);
  return { client, stderr: () => stderr };
}

describe("mcp-remote through the edge (trial B3)", () => {
  it("connects with a bearer header after its metadata discovery, lists the agent's tools and calls one", async () => {
    const { client, stderr } = await bridge(gw.dev.urls.tickets!, gw.token("support-bot"));
    try {
      const tools = (await client.listTools()).tools.map((t) => t.name).sort();
      expect(tools).toEqual(["create_ticket", "get_ticket", "list_tickets"]);
      const listed = await client.callTool({ name: "list_tickets", arguments: {} });
      expect(listed.isError).toBeFalsy();
      expect(JSON.stringify(listed.content)).toContain("T-1");
      // A tool the agent may not use reads as unknown through the bridge too.
      const denied = await client.callTool({ name: "delete_ticket", arguments: { id: "T-1" } }).then(
        (r) => JSON.stringify(r),
        (e: Error) => e.message,
      );
      expect(denied).toContain("delete_ticket");
      // It ran its OAuth discovery on the gateway's RFC 9728 metadata and then used the header.
      expect(stderr()).toContain("Discovering OAuth server configuration");
      expect(stderr()).toContain("Connected to remote server");
      expect(stderr()).not.toContain("Invalid URL");
      expect(stderr()).not.toContain(gw.token("support-bot"));
    } finally {
      await client.close();
    }
  });

  it("bridges the aggregated endpoint (/mcp, README's one URL): tools, a call, a resource, a prompt", async () => {
    const { client, stderr } = await bridge(`${gw.dev.edge.url}/mcp`, gw.token("support-bot"));
    try {
      const tools = (await client.listTools()).tools.map((t) => t.name).sort();
      expect(tools).toEqual([
        "kb__get_article",
        "kb__search_articles",
        "tickets__create_ticket",
        "tickets__get_ticket",
        "tickets__list_tickets",
      ]);
      const listed = await client.callTool({ name: "tickets__list_tickets", arguments: {} });
      expect(listed.isError).toBeFalsy();
      expect(JSON.stringify(listed.content)).toContain("T-1");
      const read = await client.readResource({ uri: "kb.kb://style-guide" });
      expect(read.contents[0]!.uri).toBe("kb.kb://style-guide");
      const prompt = await client.getPrompt({
        name: "kb__answer_from_kb",
        arguments: { question: "refunds?" },
      });
      expect(JSON.stringify(prompt.messages)).toContain("refunds?");
      expect(stderr()).toContain("Connected to remote server");
      expect(stderr()).not.toContain(gw.token("support-bot"));
    } finally {
      await client.close();
    }
  });
});
