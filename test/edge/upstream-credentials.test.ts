import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadEngine } from "../../ext-service/src/config/compile.js";
import { ConfigError, parseRegistry } from "../../ext-service/src/config/load.js";
import {
  ECHO_TOOL,
  httpCall,
  MCP_HEADERS,
  rpc,
  startCredentialedUpstream,
  startGateway,
  tempDir,
  type CredentialedUpstream,
  type Gateway,
} from "../e2e/harness.js";

/**
 * Static per-server credentials (registry `upstream.headers`) through the edge: the server gets
 * the gateway's credential, never the agent's token; the agent cannot override it, never sees
 * it, and neither does a log line or an audit record, even when the server echoes it.
 */

// No known token format: only the exact-match detector for held credentials can find them.
const TOKEN = "s3rv3rOnlyT0ken-0123456789abcdefABCD";
const ROTATED = "r0tat3dT0ken-9876543210zyxwvuZYXWV";
const FILE_KEY = "k3y-from-a-docker-secret-0a1b2c3d4e5f";
const ENV = "MCPGW_TEST_UPSTREAM_TOKEN";

describe("static upstream credentials on the edge", () => {
  let gw: Gateway;
  let upstream: CredentialedUpstream;
  const secrets = tempDir();
  let agentToken: string;

  beforeAll(async () => {
    process.env[ENV] = TOKEN;
    const keyFile = join(secrets.dir, "api-key");
    writeFileSync(keyFile, `${FILE_KEY}\n`);
    upstream = await startCredentialedUpstream({
      token: () => process.env[ENV],
      // /mcp/plain stands for a server that needs no credential.
      checks: (path) => path === "/mcp",
      reply: (req) => `my token is ${req.headers.authorization?.slice(7)}, key ${FILE_KEY}`,
    });
    gw = await startGateway({
      servers: [
        {
          name: "github",
          upstreams: [upstream.url],
          upstream: {
            headers: { Authorization: `Bearer \${env:${ENV}}`, "X-Api-Key": `\${file:${keyFile}}` },
          },
          tools: [ECHO_TOOL],
        },
        { name: "plain", upstreams: [`${upstream.url}/plain`], tools: [ECHO_TOOL] },
      ],
    });
    agentToken = await gw.token("tester");
  });
  afterAll(async () => {
    await gw?.close();
    await upstream?.close();
    secrets.remove();
    delete process.env[ENV];
  });

  async function call(server: string, extra: Record<string, string> = {}) {
    upstream.seen.length = 0;
    const res = await httpCall(gw.url(server), {
      headers: { ...MCP_HEADERS, authorization: `Bearer ${agentToken}`, ...extra },
      body: rpc("tools/call", { name: "echo", arguments: { text: "hi" } }, 7),
    });
    return res;
  }

  it("sends the server its credential and never the agent's token", async () => {
    const res = await call("github");
    expect(res.status).toBe(200);
    const forwarded = upstream.seen.filter((s) => s.path === "/mcp");
    expect(forwarded.length).toBeGreaterThan(0);
    for (const { headers } of forwarded) {
      expect(headers.authorization).toBe(`Bearer ${TOKEN}`);
      expect(headers["x-api-key"]).toBe(FILE_KEY);
      expect(JSON.stringify(headers)).not.toContain(agentToken);
    }
  });

  it("replaces an agent's own header of that name", async () => {
    await call("github", { "x-api-key": "agent-chosen-key-value" });
    const forwarded = upstream.seen.filter((s) => s.path === "/mcp");
    expect(forwarded.map((s) => s.headers["x-api-key"])).toEqual(forwarded.map(() => FILE_KEY));
  });

  it("gives a server without credentials none of another server's", async () => {
    const res = await call("plain");
    expect(res.status).toBe(200);
    const plain = upstream.seen.filter((s) => s.path === "/mcp/plain");
    expect(plain.length).toBeGreaterThan(0);
    for (const { headers } of plain) {
      expect(headers.authorization).toBeUndefined();
      expect(headers["x-api-key"]).toBeUndefined();
    }
  });

  it("redacts a credential the server echoes, and keeps it out of logs and audit records", async () => {
    const res = await call("github");
    expect(res.status).toBe(200);
    expect(res.text).not.toContain(TOKEN);
    expect(res.text).not.toContain(FILE_KEY);
    expect(JSON.stringify(res.headers)).not.toContain(TOKEN);
    const text = (res.messages[0] as { result: { content: { text: string }[] } }).result.content[0]!.text;
    expect(text).toBe("my token is [REDACTED:gateway_credential], key [REDACTED:gateway_credential]");
    const logged = JSON.stringify(gw.log.lines);
    expect(gw.log.audits.length).toBeGreaterThan(0);
    expect(logged).not.toContain(TOKEN);
    expect(logged).not.toContain(FILE_KEY);
  });

  it("reads the credential again on reload (what SIGHUP does)", async () => {
    process.env[ENV] = ROTATED;
    try {
      gw.edge.setEngine(loadEngine(gw.configFile).engine);
      const res = await call("github");
      expect(res.status).toBe(200);
      const forwarded = upstream.seen.filter((s) => s.path === "/mcp");
      expect(forwarded.map((s) => s.headers.authorization)).toEqual(forwarded.map(() => `Bearer ${ROTATED}`));
      expect(res.text).not.toContain(ROTATED);
    } finally {
      process.env[ENV] = TOKEN;
      gw.edge.setEngine(loadEngine(gw.configFile).engine);
    }
  });

  it("refuses to load when a referenced variable is unset, naming it but no value", () => {
    delete process.env[ENV];
    try {
      expect(() => loadEngine(gw.configFile)).toThrow(ConfigError);
      expect(() => loadEngine(gw.configFile)).toThrow(new RegExp(`environment variable ${ENV} is not set`));
    } finally {
      process.env[ENV] = TOKEN;
    }
  });
});

describe("upstream.headers in the registry", () => {
  const server = (headers: Record<string, string>) =>
    JSON.stringify({
      version: "1",
      servers: [{ name: "s", upstreams: ["http://127.0.0.1:1/mcp"], upstream: { headers } }],
    });

  it("refuses an inline secret in a credential-looking header", () => {
    const refused: Record<string, string>[] = [
      { Authorization: "Bearer ghp_literal0123456789" },
      { "X-Api-Key": "literal-key" },
      { "Private-Token": "Bearer abc123 ${env:TOKEN}" },
      { Authorization: "sk-live-0123 ${env:TOKEN}" },
      { Authorization: "${env:TOKEN}-and-a-literal-tail" },
      { Authorization: "Bearer" },
    ];
    for (const headers of refused) {
      expect(() => parseRegistry(server(headers)), JSON.stringify(headers)).toThrow(
        /looks like a credential: its value must come from \$\{env:NAME\} or \$\{file:\/path\}/,
      );
    }
  });

  it("accepts references, a scheme around them, and literals in ordinary headers", () => {
    expect(() =>
      parseRegistry(
        server({
          Authorization: "Bearer ${env:TOKEN}",
          "X-Api-Key": "${file:/run/secrets/key}",
          "X-Tenant": "acme",
        }),
      ),
    ).not.toThrow();
  });

  it("refuses headers the gateway sets itself", () => {
    expect(() => parseRegistry(server({ "X-Mcp-Agent": "someone" }))).toThrow(/set by the gateway/);
    expect(() => parseRegistry(server({ "Mcp-Session-Id": "x" }))).toThrow(/set by the gateway/);
  });
});
