import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ProtocolError } from "@modelcontextprotocol/client";
import { MAX_HOP_TOKEN_LENGTH } from "../../ext-service/src/policy/hop-token.js";
import { MAX_REQUEST_HEADER_BYTES } from "../../ext-service/src/policy/header-limits.js";
import { httpCall, MCP_HEADERS, parseRawResponse, rawHttp, rpc, waitFor } from "../e2e/harness.js";
import { startCredentialMcpServers, type CredentialMcpServers } from "../upstream/credential-mcp-servers.js";
import {
  startTokenExchangeFixture,
  tokenExchangeServers,
  type TokenExchangeFixture,
} from "../upstream/token-exchange-fixture.js";
import { connectModern } from "./support.js";

/**
 * Header size limits on both planes (policy/header-limits.ts), through real HTTP:
 *  - the broker's hop identity for a token-exchange server seals the agent's token in: one up to
 *    MAX_HOP_TOKEN_LENGTH is sent and works, a longer one is never sent and the request gets
 *    agent_token_too_large (audited), while the same token still works on /mcp/<server>;
 *  - an agent's own headers beyond the listener's limit (64 KiB on the edge; Envoy's
 *    max_request_headers_kb, 60 KiB, on the Envoy-role front) get a 431 with the JSON-RPC error
 *    headers_too_large on /mcp/<server> and /mcp, not a reset; just under it, the request is read.
 */

const SECRET_ENV = "MCPGW_TEST_HEADER_LIMITS_SECRET";

const textOf = (result: unknown) => (result as { content: { text: string }[] }).content[0]!.text;

describe.each(["edge", "envoy"] as const)("header size limits, %s plane", (plane) => {
  let fx: TokenExchangeFixture<CredentialMcpServers>;
  /** The largest padded token whose hop identity to jira fits, and the smallest that does not. */
  let fits: string;
  let tooLarge: string;

  beforeAll(async () => {
    fx = await startTokenExchangeFixture({
      secretEnv: SECRET_ENV,
      agents: ["tester", "big"],
      startServers: startCredentialMcpServers,
      registry: (endpoint, servers) => tokenExchangeServers(endpoint, servers.urls, SECRET_ENV),
      envoyFront: plane === "envoy",
    });
    const { gw } = fx;
    const padded = (n: number) => gw.token("big", { extraClaims: { pad: "p".repeat(n) } });
    const hopLength = async (token: string) => {
      const auth = await gw.engine.authenticator.authenticate(`Bearer ${token}`);
      if (!auth.ok) throw new Error(`padded token refused: ${auth.reason}`);
      return gw.engine.hopTokens.mint(auth.principal, "jira", token).length;
    };
    // The longest padding whose hop still fits (the hop grows with the padding, 16/9 per char).
    let lo = 0;
    let hi = MAX_HOP_TOKEN_LENGTH;
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      if ((await hopLength(await padded(mid))) <= MAX_HOP_TOKEN_LENGTH) lo = mid;
      else hi = mid - 1;
    }
    fits = await padded(lo);
    tooLarge = await padded(lo + 1);
    expect(await hopLength(fits)).toBeLessThanOrEqual(MAX_HOP_TOKEN_LENGTH);
    expect(await hopLength(tooLarge)).toBeGreaterThan(MAX_HOP_TOKEN_LENGTH);
  }, 60_000);
  afterAll(() => fx?.close());

  const base = () => fx.front?.url ?? fx.gw.edge.url;
  const port = () => fx.front?.port ?? fx.gw.edge.port;

  it("a hop identity of MAX_HOP_TOKEN_LENGTH is sent and works; one character more is refused before sending (agent_token_too_large, audited), and the token still works on /mcp/<server>", async () => {
    // An agent token of about 24 KB: over Node's default 16 KiB of headers once sealed.
    expect(fits.length).toBeGreaterThan(20_000);
    const ok = await connectModern(`${base()}/mcp`, fits);
    try {
      expect(textOf(await ok.callTool({ name: "jira__echo", arguments: { text: "hi" } }))).toBe("hello big");
    } finally {
      await ok.close();
    }

    const mark = fx.servers.seen.length;
    const client = await connectModern(`${base()}/mcp`, tooLarge);
    try {
      const err = await client.callTool({ name: "jira__echo", arguments: { text: "hi" } }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(ProtocolError);
      const data = (err as ProtocolError).data as { reason: string; request_id: string; server: string };
      expect(data).toMatchObject({ reason: "agent_token_too_large", server: "jira" });
      expect((err as ProtocolError).code).toBe(-32600);
      const records = await fx.gw.log.auditFor(data.request_id);
      expect(records.some((r) => r.reasons.includes("agent_token_too_large") && r.agent === "big")).toBe(
        true,
      );
      // A list leaves the servers out rather than failing.
      expect((await client.listTools()).tools).toEqual([]);
    } finally {
      await client.close();
    }
    expect(fx.servers.seen.slice(mark)).toEqual([]);

    // The per-server route takes the same token: only the hop would have been too long.
    const direct = await connectModern(`${base()}/mcp/jira`, tooLarge);
    try {
      expect(textOf(await direct.callTool({ name: "echo", arguments: { text: "hi" } }))).toBe("hello big");
    } finally {
      await direct.close();
    }
  });

  /** A raw POST whose header names and values (and, on the edge, the request target) add up to `size`. */
  function requestOfSize(path: string, size: number): string {
    const fixed: [string, string][] = [
      ["host", "127.0.0.1"],
      ["content-type", MCP_HEADERS["content-type"]],
      ["accept", MCP_HEADERS.accept],
      ["connection", "close"],
    ];
    const body = rpc("tools/list");
    fixed.push(["content-length", String(Buffer.byteLength(body))]);
    // Node counts the request target too; Envoy only names and values.
    let used = plane === "edge" ? path.length : 0;
    for (const [n, v] of fixed) used += n.length + v.length;
    const token = "a".repeat(size - used - "authorization".length - "Bearer ".length);
    const lines = [
      `POST ${path} HTTP/1.1`,
      ...fixed.map(([n, v]) => `${n}: ${v}`),
      `authorization: Bearer ${token}`,
    ];
    return `${lines.join("\r\n")}\r\n\r\n${body}`;
  }

  const limit = () => (plane === "edge" ? MAX_REQUEST_HEADER_BYTES : 60 * 1024);

  it.each(["/mcp/jira", "/mcp"])(
    "agent headers at the listener's limit are read; one byte over gets 431 headers_too_large on %s",
    async (path) => {
      // Node's own count differs from the sum by a byte or two: a margin below its limit.
      const under = parseRawResponse(
        await rawHttp(port(), requestOfSize(path, limit() - (plane === "edge" ? 64 : 0))),
      );
      // Read, and refused for what it is: a bearer value that is no JWT.
      expect(under.status).toBe(401);
      expect(JSON.parse(under.body)).toMatchObject({ error: { data: { reason: "token_malformed" } } });

      const over = parseRawResponse(await rawHttp(port(), requestOfSize(path, limit() + 1)));
      expect(over.status).toBe(431);
      expect(over.headers["content-type"]).toBe("application/json");
      const body = JSON.parse(over.body) as {
        id: unknown;
        error: { code: number; data: { reason: string } };
      };
      expect(body).toMatchObject({
        jsonrpc: "2.0",
        id: null,
        error: { code: -32600, data: { reason: "headers_too_large" } },
      });
    },
  );

  it.each(["/mcp/jira", "/mcp"])(
    "a client sending far larger headers on %s reads the 431, not a connection reset",
    async (path) => {
      for (let i = 0; i < 3; i++) {
        const r = await httpCall(`${base()}${path}`, {
          headers: { ...MCP_HEADERS, authorization: `Bearer ${"a".repeat(400_000)}` },
          body: rpc("tools/list"),
        });
        expect(r.status).toBe(431);
        expect(r.messages).toMatchObject([{ id: null, error: { data: { reason: "headers_too_large" } } }]);
      }
      if (plane === "edge") {
        // The edge audits it (no agent is known); behind Envoy, Envoy's access log has it.
        await waitFor(() =>
          fx.gw.log.audits.some((a) => a.status === 431 && a.reasons.includes("headers_too_large")),
        );
      }
    },
  );
});
