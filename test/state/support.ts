import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { JWK } from "jose";
import { request } from "undici";
import { stringify } from "yaml";
import { loadEngine } from "../../ext-service/src/config/compile.js";
import { DEV_ISSUER, ensureDevKeys, signDevToken } from "../../ext-service/src/config/devkeys.js";
import type { PolicyEngine } from "../../ext-service/src/policy/engine.js";

/**
 * A gateway.yaml and registry.yaml in a temp dir for the shared-state tests: one `tickets`
 * server (a fake MCP upstream in this process) with tools of different costs, agents in roles.
 */
export interface StateFiles {
  dir: string;
  configFile: string;
  engine(): PolicyEngine;
  token(agent: string): Promise<string>;
  privateJwk: JWK;
  remove(): void;
}

export async function writeStateFiles(options: {
  upstream: string;
  state?: Record<string, unknown>;
  budgets?: Record<string, unknown>;
  edge?: Record<string, unknown>;
  security?: Record<string, unknown>;
  cache?: Record<string, unknown>;
  tools?: Record<string, unknown>[];
}): Promise<StateFiles> {
  const dir = mkdtempSync(join(tmpdir(), "mcp-gw-state-"));
  const keys = await ensureDevKeys(join(dir, "keys"));
  const config = {
    registry: "registry.yaml",
    auth: {
      mode: "required",
      issuers: [
        {
          issuer: DEV_ISSUER,
          audiences: ["mcp-gateway"],
          jwks: { file: keys.jwksFile },
          algorithms: ["ES256"],
          trustTokenRoles: false,
        },
      ],
    },
    roles: { support: { rules: [{ effect: "allow", tools: ["tickets/*"] }] } },
    agents: {
      "bot-a": { roles: ["support"] },
      "bot-b": { roles: ["support"] },
      "bot-c": { roles: ["support"] },
    },
    ...(options.state ? { state: options.state } : {}),
    ...(options.budgets ? { budgets: options.budgets } : {}),
    ...(options.edge ? { edge: options.edge } : {}),
    // The fake upstream here is not a pinning target: pins verified before the first call (trial
    // B4) are tested in test/e2e/pin-verification.test.ts.
    security: {
      ...options.security,
      pins: { verifyBeforeCall: false, ...(options.security?.pins as Record<string, unknown> | undefined) },
    },
    ...(options.cache ? { cache: options.cache } : {}),
    logLevel: "info",
  };
  const tools = options.tools ?? [
    { name: "cheap", description: "A cheap call.", annotations: { readOnlyHint: true } },
    { name: "pricey", description: "An expensive call.", cost: 5 },
    { name: "free", description: "Not counted by the tickets budget.", cost: 0 },
  ];
  const configFile = join(dir, "gateway.yaml");
  writeFileSync(configFile, stringify(config));
  writeFileSync(
    join(dir, "registry.yaml"),
    stringify({
      version: "state-test",
      servers: [{ name: "tickets", upstreams: [options.upstream], tools }],
    }),
  );
  return {
    dir,
    configFile,
    engine: () => loadEngine(configFile).engine,
    token: (agent) => signDevToken(keys.privateJwk, { subject: agent }),
    privateJwk: keys.privateJwk,
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** A fake MCP server answering every tools/call with a text result naming the tool; counts calls. */
export interface FakeMcp {
  url: string;
  calls: { name: string; arguments: unknown }[];
  /** Replaces the answer for the next calls. */
  answer: (name: string, args: unknown) => Record<string, unknown>;
  close(): Promise<void>;
}

export async function startFakeMcp(): Promise<FakeMcp> {
  const fake: FakeMcp = {
    url: "",
    calls: [],
    answer: (name) => ({ content: [{ type: "text", text: `ok ${name}` }] }),
    close: () => Promise.resolve(),
  };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const message = JSON.parse(Buffer.concat(chunks).toString("utf8") || "null") as {
        id: number;
        method: string;
        params?: { name: string; arguments?: unknown };
      } | null;
      if (!message || message.method !== "tools/call") {
        res.writeHead(202).end();
        return;
      }
      fake.calls.push({ name: message.params!.name, arguments: message.params!.arguments });
      const body = JSON.stringify({
        jsonrpc: "2.0",
        id: message.id,
        result: fake.answer(message.params!.name, message.params!.arguments),
      });
      res.writeHead(200, { "content-type": "application/json" }).end(body);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  fake.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`;
  fake.close = () =>
    new Promise<void>((r) => {
      server.close(() => r());
      server.closeAllConnections();
    });
  return fake;
}

export const MCP_HEADERS = {
  "content-type": "application/json",
  accept: "application/json, text/event-stream",
} as const;

let nextId = 1;
export function toolCall(name: string, args: Record<string, unknown> = {}, id: number = nextId++) {
  return { jsonrpc: "2.0", id, method: "tools/call", params: { name, arguments: args } };
}

/** POSTs a JSON-RPC body to the edge; returns the HTTP status and the parsed JSON answer. */
export async function postEdge(
  url: string,
  token: string,
  body: unknown,
): Promise<{ status: number; json: Record<string, unknown> & { error?: Record<string, unknown> } }> {
  const res = await request(url, {
    method: "POST",
    headers: { ...MCP_HEADERS, authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
  const text = await res.body.text();
  return { status: res.statusCode, json: JSON.parse(text) as Record<string, unknown> };
}
