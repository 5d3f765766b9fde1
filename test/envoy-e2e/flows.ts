/**
 * End-to-end flows against a running gateway, through its public HTTP routes only: the ones an
 * MCP client sees. Used by .github/workflows/envoy-e2e.yml against the Envoy listener of
 * `docker compose up`, and by flows.test.ts against the local edge (so the script itself is
 * exercised on every CI run; the Envoy run needs Docker, which this project's CI does not have).
 *
 *   MCP_GATEWAY_URL=http://127.0.0.1:8080 MCP_GATEWAY_TOKEN=<support-bot token> npx tsx test/envoy-e2e/flows.ts
 *
 * The token must be for an agent that may use the kb server (the demo's support-bot or
 * research-bot), through /mcp too. Exit code 0 when every flow passes; each result is printed.
 */
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

export interface FlowResult {
  name: string;
  ok: boolean;
  detail: string;
}

const MCP_HEADERS = { "content-type": "application/json", accept: "application/json, text/event-stream" };

async function flow(name: string, body: () => Promise<string>): Promise<FlowResult> {
  try {
    return { name, ok: true, detail: await body() };
  } catch (err) {
    return { name, ok: false, detail: (err as Error).message };
  }
}

function check(condition: boolean, message: string): void {
  if (!condition) throw new Error(message);
}

/** Runs every flow against `baseUrl` (scheme://host:port, no path); never throws. */
export async function runGatewayFlows(baseUrl: string, token: string): Promise<FlowResult[]> {
  const server = new URL("/mcp/kb", baseUrl);
  const results: FlowResult[] = [];

  results.push(
    await flow("no token: 401 with a WWW-Authenticate challenge naming the resource metadata", async () => {
      const res = await fetch(server, {
        method: "POST",
        headers: MCP_HEADERS,
        body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" }),
      });
      const challenge = res.headers.get("www-authenticate") ?? "";
      check(res.status === 401, `status ${res.status}, expected 401`);
      check(/^Bearer .*resource_metadata="[^"]+"/.test(challenge), `WWW-Authenticate '${challenge}'`);
      return challenge;
    }),
  );

  results.push(
    await flow("RFC 9728 protected resource metadata: 200 JSON naming the resource", async () => {
      const res = await fetch(new URL("/.well-known/oauth-protected-resource/mcp/kb", baseUrl));
      check(res.status === 200, `status ${res.status}, expected 200`);
      const doc = (await res.json()) as { resource?: string; authorization_servers?: unknown };
      check(
        typeof doc.resource === "string" && doc.resource.endsWith("/mcp/kb"),
        `resource '${doc.resource}'`,
      );
      return doc.resource!;
    }),
  );

  const client = new Client({ name: "mcp-gateway-e2e", version: "1.0.0" });
  let connected = false;
  results.push(
    await flow("tools/list with a token (official SDK client, Streamable HTTP)", async () => {
      const transport = new StreamableHTTPClientTransport(server, {
        requestInit: { headers: { Authorization: `Bearer ${token}` } },
      });
      await client.connect(transport);
      connected = true;
      const { tools } = await client.listTools();
      const names = tools.map((t) => t.name);
      check(names.includes("search_articles"), `tools: ${names.join(", ")}`);
      return names.join(", ");
    }),
  );

  results.push(
    await flow("tools/call search_articles", async () => {
      check(connected, "not connected");
      const result = await client.callTool({ name: "search_articles", arguments: { query: "gateway" } });
      check(result.isError !== true, `tool error: ${JSON.stringify(result.content)}`);
      return JSON.stringify(result.content).slice(0, 120);
    }),
  );
  if (connected) await client.close();

  // The aggregated endpoint: Envoy routes /mcp to the ext-service's broker listener, whose hops come
  // back through Envoy's per-server routes (broker.hopUrl), so every hop is decided there.
  const aggregate = new Client({ name: "mcp-gateway-e2e-aggregate", version: "1.0.0" });
  let aggregated = false;
  results.push(
    await flow("/mcp (the broker): initialize, tools/list, tools/call kb__search_articles", async () => {
      const transport = new StreamableHTTPClientTransport(new URL("/mcp", baseUrl), {
        requestInit: { headers: { Authorization: `Bearer ${token}` } },
      });
      await aggregate.connect(transport);
      aggregated = true;
      check(typeof transport.sessionId === "string", "no Mcp-Session-Id from initialize");
      const names = (await aggregate.listTools()).tools.map((t) => t.name);
      check(names.includes("kb__search_articles"), `tools: ${names.join(", ")}`);
      const result = await aggregate.callTool({
        name: "kb__search_articles",
        arguments: { query: "gateway" },
      });
      check(result.isError !== true, `tool error: ${JSON.stringify(result.content)}`);
      return `${names.length} tools; ${JSON.stringify(result.content).slice(0, 100)}`;
    }),
  );
  if (aggregated) await aggregate.close();

  results.push(
    await flow("over the per-agent rate limit: 429 with the JSON-RPC rate_limited error", async () => {
      // The demo allows 50 requests/s per agent with a burst of 100: 400 at once exceed it even on
      // a slow machine (100 + 50/s x the seconds the burst takes).
      const burst = Array.from({ length: 400 }, (_v, i) =>
        fetch(server, {
          method: "POST",
          headers: { ...MCP_HEADERS, authorization: `Bearer ${token}` },
          body: JSON.stringify({ jsonrpc: "2.0", id: i, method: "ping" }),
        }).then(async (res) => ({ status: res.status, text: await res.text() })),
      );
      const answers = await Promise.all(burst);
      const limited = answers.filter((a) => a.status === 429);
      const statuses = new Map<number, number>();
      for (const a of answers) statuses.set(a.status, (statuses.get(a.status) ?? 0) + 1);
      check(limited.length > 0, `no 429 in ${answers.length} requests: ${JSON.stringify([...statuses])}`);
      const body = JSON.parse(limited[0]!.text) as { error?: { code?: number; data?: { reason?: string } } };
      check(body.error?.data?.reason === "rate_limited", `429 body ${limited[0]!.text.slice(0, 200)}`);
      return `${limited.length} of ${answers.length} limited`;
    }),
  );
  return results;
}

async function main(): Promise<number> {
  const url = process.env.MCP_GATEWAY_URL;
  const token = process.env.MCP_GATEWAY_TOKEN;
  if (!url || !token) {
    process.stderr.write("MCP_GATEWAY_URL and MCP_GATEWAY_TOKEN are required\n");
    return 2;
  }
  const results = await runGatewayFlows(url, token);
  for (const r of results) process.stdout.write(`${r.ok ? "ok  " : "FAIL"} ${r.name}: ${r.detail}\n`);
  return results.every((r) => r.ok) ? 0 : 1;
}

if (process.argv[1] && import.meta.filename === process.argv[1]) {
  main().then(
    (code) => (process.exitCode = code),
    (err: unknown) => {
      process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
