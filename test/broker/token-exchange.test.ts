import { importJWK, SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEV_AUDIENCE, DEV_ISSUER } from "../../ext-service/src/config/devkeys.js";
import type { Principal } from "../../ext-service/src/policy/identity.js";
import { connectClient, httpCall, MCP_HEADERS, rpc, waitFor, type Gateway } from "../e2e/harness.js";
import { startCredentialMcpServers, type CredentialMcpServers } from "../upstream/credential-mcp-servers.js";
import type { TokenEndpoint } from "../upstream/token-endpoint.js";
import {
  CLIENT_SECRET,
  startTokenExchangeFixture,
  tokenExchangeServers,
  type ErrorBody,
  type TokenExchangeFixture,
} from "../upstream/token-exchange-fixture.js";
import { connectModern } from "./support.js";

/**
 * Per-agent upstream credentials (RFC 8693 token exchange) through the aggregated endpoint, on
 * both planes: the broker seals the agent's verified token into its hop to a token-exchange
 * server (policy/hop-token.ts), the hop's per-server path (the edge, or ext_authz behind the
 * Envoy-role front) opens it, verifies it again and exchanges it at the test token endpoint, and
 * the real MCP servers (v2 SDK, both eras) check the credential they receive. The 1.x SDK client
 * (2025 sessions) and the v2 client pinned to 2026-07-28 drive it.
 */

const SECRET_ENV = "MCPGW_TEST_BROKER_TOKEN_EXCHANGE_SECRET";
const AGENTS = ["tester", "other", "leaky", "unlucky"];

const textOf = (result: unknown) => (result as { content: { text: string }[] }).content[0]!.text;

describe.each(["edge", "envoy"] as const)("token exchange through /mcp, %s plane", (plane) => {
  let fx: TokenExchangeFixture<CredentialMcpServers>;
  let gw: Gateway;
  let endpoint: TokenEndpoint;
  let servers: CredentialMcpServers;
  let tokens: Map<string, string>;

  beforeAll(async () => {
    fx = await startTokenExchangeFixture({
      secretEnv: SECRET_ENV,
      agents: AGENTS,
      startServers: startCredentialMcpServers,
      registry: (endpoint, servers) => tokenExchangeServers(endpoint, servers.urls, SECRET_ENV),
      envoyFront: plane === "envoy",
    });
    ({ gw, endpoint, servers, tokens } = fx);
  });
  afterAll(() => fx?.close());

  const base = () => fx.front?.url ?? gw.edge.url;

  /** What reached the servers since `mark`: each with a credential for `agent`, never a token of the agent's or a hop's. */
  function expectOnlyIssuedCredentials(mark: number, agent: string) {
    const seen = servers.seen.slice(mark);
    expect(seen.length).toBeGreaterThan(0);
    for (const r of seen) {
      expect(r.holder, `${r.httpMethod} ${r.server}`).toBe(agent);
      const sent = JSON.stringify(r.headers);
      for (const agentToken of tokens.values()) expect(sent).not.toContain(agentToken);
      // The hop identity (and the agent token sealed in it) was stripped: Authorization is the
      // issued token on jira, absent on wiki (its token travels in X-Wiki-Token).
      if (r.server === "jira") expect(r.headers.authorization).toMatch(/^Bearer xt-/);
      else expect(r.headers.authorization).toBeUndefined();
      expect(r.headers["x-mcp-agent"]).toBe(agent);
    }
  }

  async function hopAudits(agent: string, server: string) {
    await waitFor(() =>
      gw.log.audits.some((a) => a.plane === plane && a.agent === agent && a.server === server),
    );
    return gw.log.audits.filter((a) => a.plane === plane && a.agent === agent && a.server === server);
  }

  it("1.x client (2025 session): each server gets a token issued for it and the agent, exchanged once per pair, shared with direct calls", async () => {
    const mark = servers.seen.length;
    const before = endpoint.calls;
    const mcp = await connectClient(`${base()}/mcp`, tokens.get("tester"));
    try {
      const tools = (await mcp.client.listTools()).tools.map((t) => t.name).sort();
      expect(tools).toEqual(["jira__echo", "wiki__echo"]);
      expect(textOf(await mcp.client.callTool({ name: "jira__echo", arguments: { text: "hi" } }))).toBe(
        "hello tester",
      );
      expect(textOf(await mcp.client.callTool({ name: "wiki__echo", arguments: { text: "hi" } }))).toBe(
        "hello tester",
      );
    } finally {
      await mcp.close();
    }
    expect(servers.calls).toEqual(expect.arrayContaining(["tester@jira", "tester@wiki"]));
    expectOnlyIssuedCredentials(mark, "tester");
    // initialize, lists, the pin check and the calls of each server: one exchange per server.
    expect(endpoint.calls - before).toBe(2);
    // The cache is keyed as for direct calls: the agent's own request to /mcp/jira reuses it.
    const direct = await connectClient(`${base()}/mcp/jira`, tokens.get("tester"));
    try {
      const r = await direct.client.callTool({ name: "echo", arguments: { text: "hi" } });
      expect(textOf(r)).toBe("hello tester");
    } finally {
      await direct.close();
    }
    expect(endpoint.calls - before).toBe(2);
    for (const hop of (await hopAudits("tester", "jira")).filter((a) => a.counters.via_broker === 1)) {
      expect(hop.decision).toBe("allow");
    }
    expect(
      (await hopAudits("tester", "jira")).some(
        (a) => a.tools.includes("echo") && a.counters.via_broker === 1,
      ),
    ).toBe(true);
  });

  it("v2 client (2026-07-28): the same, stateless", async () => {
    const mark = servers.seen.length;
    const client = await connectModern(`${base()}/mcp`, tokens.get("other")!);
    try {
      const tools = (await client.listTools()).tools.map((t) => t.name).sort();
      expect(tools).toEqual(["jira__echo", "wiki__echo"]);
      expect(textOf(await client.callTool({ name: "wiki__echo", arguments: { text: "hi" } }))).toBe(
        "hello other",
      );
      expect(textOf(await client.callTool({ name: "jira__echo", arguments: { text: "hi" } }))).toBe(
        "hello other",
      );
    } finally {
      await client.close();
    }
    expect(servers.calls).toEqual(expect.arrayContaining(["other@jira", "other@wiki"]));
    expectOnlyIssuedCredentials(mark, "other");
  });

  it("a token issued without expires_in is still found by DLP when the server echoes it", async () => {
    endpoint.expiresIn = undefined;
    try {
      const mcp = await connectClient(`${base()}/mcp`, tokens.get("leaky"));
      try {
        const r = await mcp.client.callTool({ name: "jira__echo", arguments: { text: "leak" } });
        expect(textOf(r)).toBe("acting for leaky with [REDACTED:gateway_credential]");
      } finally {
        await mcp.close();
      }
      // And on the per-server route itself (Envoy plane: ext_authz hands the uncached token to ext_proc).
      const direct = await connectClient(`${base()}/mcp/wiki`, tokens.get("leaky"));
      try {
        const r = await direct.client.callTool({ name: "echo", arguments: { text: "leak" } });
        expect(textOf(r)).toBe("acting for leaky with [REDACTED:gateway_credential]");
      } finally {
        await direct.close();
      }
    } finally {
      endpoint.expiresIn = 300;
    }
    const issued = [...endpoint.issued.values()].filter((t) => t.subject === "leaky").map((t) => t.token);
    expect(issued.length).toBeGreaterThan(1);
    const logged = JSON.stringify(gw.log.lines);
    for (const secret of [...issued, CLIENT_SECRET, ...tokens.values()]) expect(logged).not.toContain(secret);
  });

  it("a hop whose agent token is expired, another agent's or not the gateway's fails closed; a hop stays on its server", async () => {
    const tester = await gw.engine.authenticator.authenticate(`Bearer ${tokens.get("tester")}`);
    if (!tester.ok) throw new Error("tester's token does not verify");
    const principal: Principal = tester.principal;
    const key = await importJWK(gw.privateJwk, "ES256");
    const sign = (claims: { exp: number; aud?: string }) =>
      new SignJWT({})
        .setProtectedHeader({ alg: "ES256", kid: gw.privateJwk.kid, typ: "JWT" })
        .setSubject("tester")
        .setIssuer(DEV_ISSUER)
        .setAudience(claims.aud ?? DEV_AUDIENCE)
        .setIssuedAt(claims.exp - 120)
        .setExpirationTime(claims.exp)
        .sign(key);
    const now = Math.floor(Date.now() / 1000);
    const expired = await sign({ exp: now - 60 });
    const otherAudience = await sign({ exp: now + 600, aud: "someone-else" });
    const mark = servers.seen.length;
    const before = endpoint.calls;
    const cases: [string, string, string][] = [
      ["jira", gw.engine.hopTokens.mint(principal, "jira", expired), "hop_token_invalid"],
      ["jira", gw.engine.hopTokens.mint(principal, "jira", tokens.get("other")), "hop_subject_mismatch"],
      [
        "jira",
        gw.engine.hopTokens.mint(principal, "jira", otherAudience),
        "hop_subject_invalid:jwt_audience_invalid",
      ],
      ["wiki", gw.engine.hopTokens.mint(principal, "jira", tokens.get("tester")), "hop_token_invalid"],
    ];
    for (const [server, hop, cause] of cases) {
      const res = await httpCall(`${base()}/mcp/${server}`, {
        headers: { ...MCP_HEADERS, authorization: `Bearer ${hop}` },
        body: rpc("tools/call", { name: "echo", arguments: { text: "hi" } }, 9),
      });
      expect(res.status, cause).toBe(401);
      const body = JSON.parse(res.text) as ErrorBody;
      expect(body.error.data.reason).toBe("hop_token_invalid");
      const [record] = await gw.log.auditFor(body.error.data.request_id);
      expect(record).toMatchObject({ decision: "deny", reasons: ["hop_token_invalid"], causes: [cause] });
    }
    expect(servers.seen.slice(mark)).toEqual([]);
    expect(endpoint.calls).toBe(before);
    // Without an agent token inside, a hop to a token-exchange server has nothing to exchange.
    const bare = await httpCall(`${base()}/mcp/jira`, {
      headers: { ...MCP_HEADERS, authorization: `Bearer ${gw.engine.hopTokens.mint(principal, "jira")}` },
      body: rpc("tools/call", { name: "echo", arguments: { text: "hi" } }, 10),
    });
    expect(bare.status).toBe(502);
    const bareBody = JSON.parse(bare.text) as ErrorBody;
    const [bareRecord] = await gw.log.auditFor(bareBody.error.data.request_id);
    expect(bareRecord).toMatchObject({
      reasons: ["upstream_credential_unavailable"],
      causes: ["token_exchange_no_subject"],
    });
  });

  it("counts exchanges by server and outcome", async () => {
    endpoint.mode = "refuse";
    try {
      const res = await httpCall(`${base()}/mcp/jira`, {
        headers: { ...MCP_HEADERS, authorization: `Bearer ${tokens.get("unlucky")}` },
        body: rpc("tools/call", { name: "echo", arguments: { text: "hi" } }, 11),
      });
      expect(res.status).toBe(502);
    } finally {
      endpoint.mode = "ok";
    }
    const text = await gw.metrics.registry.getSingleMetricAsString("mcp_gateway_token_exchanges_total");
    expect(text).toMatch(/mcp_gateway_token_exchanges_total\{server="jira",outcome="issued"\} [1-9]/);
    expect(text).toMatch(/mcp_gateway_token_exchanges_total\{server="jira",outcome="cached"\} [1-9]/);
    expect(text).toMatch(
      /mcp_gateway_token_exchanges_total\{server="jira",outcome="failed",reason="refused"\} [1-9]/,
    );
    // Low-cardinality labels: no agent, no OAuth error code.
    expect(text).not.toMatch(/unlucky|invalid_grant/);
  });
});
