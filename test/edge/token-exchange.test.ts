import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { httpCall, MCP_HEADERS, rpc, unusedPort, type Gateway } from "../e2e/harness.js";
import type { TokenEndpoint } from "../upstream/token-endpoint.js";
import {
  CLIENT_ID,
  CLIENT_SECRET,
  ECHO,
  startCredentialCheckingServers,
  startTokenExchangeFixture,
  textOf,
  tokenExchangeServers,
  type CheckingServers,
  type ErrorBody,
  type Received,
  type TokenExchangeFixture,
} from "../upstream/token-exchange-fixture.js";

/**
 * Per-agent upstream credentials by OAuth 2.0 token exchange (RFC 8693) on the edge: each agent's
 * verified token is exchanged at the token endpoint for one per server, which the server checks;
 * issued tokens are cached until shortly before they expire; a failing endpoint fails the request
 * closed with `upstream_credential_unavailable`; no credential reaches the agent, a log line or an
 * audit record.
 */

const SECRET_ENV = "MCPGW_TEST_TOKEN_EXCHANGE_SECRET";
const AGENTS = ["tester", "other", "refresher", "unlucky", "patient", "garbled", "noexpiry", "leaky"];

describe("token exchange on the edge", () => {
  let fx: TokenExchangeFixture<CheckingServers>;
  let gw: Gateway;
  let endpoint: TokenEndpoint;
  let servers: CheckingServers;
  let tokens: Map<string, string>;

  beforeAll(async () => {
    fx = await startTokenExchangeFixture({
      secretEnv: SECRET_ENV,
      agents: AGENTS,
      startServers: startCredentialCheckingServers,
      registry: async (endpoint, servers) => [
        ...tokenExchangeServers(endpoint, servers.upstream.url, SECRET_ENV, { refreshSkewSeconds: 1 }),
        {
          name: "offline",
          upstreams: [`${servers.upstream.url}/jira`],
          upstream: {
            tokenExchange: {
              tokenEndpoint: `http://127.0.0.1:${await unusedPort()}/token`,
              clientId: CLIENT_ID,
              clientSecret: `\${env:${SECRET_ENV}}`,
              audience: "jira",
            },
          },
          tools: [ECHO],
        },
      ],
    });
    ({ gw, endpoint, servers, tokens } = fx);
  });
  afterAll(() => fx?.close());

  async function call(agent: string, server: string, text = "hi") {
    return httpCall(gw.url(server), {
      headers: { ...MCP_HEADERS, authorization: `Bearer ${tokens.get(agent)}` },
      body: rpc("tools/call", { name: "echo", arguments: { text } }, 7),
    });
  }

  const since = (mark: number): Received[] => servers.received.slice(mark);

  it("sends each server a token issued for it and for the calling agent", async () => {
    const mark = servers.received.length;
    for (const agent of ["tester", "other"]) {
      for (const server of ["jira", "wiki"]) {
        const res = await call(agent, server);
        expect(res.status).toBe(200);
        expect(textOf(res)).toBe(`hello ${agent}`);
      }
    }
    const got = since(mark);
    // The pin check's tools/list carries the agent's token too (the server refuses it otherwise).
    expect(got.filter((r) => r.method === "tools/call").map((r) => `${r.holder}@${r.server}`)).toEqual([
      "tester@jira",
      "tester@wiki",
      "other@jira",
      "other@wiki",
    ]);
    for (const r of got) {
      expect(r.holder).toBeDefined();
      const sent = JSON.stringify(r.headers);
      for (const agentToken of tokens.values()) expect(sent).not.toContain(agentToken);
      expect(sent).not.toContain(CLIENT_SECRET);
      // wiki's token goes in its own header; no Authorization reaches it at all.
      if (r.server === "wiki") expect(r.headers.authorization).toBeUndefined();
    }
  });

  it("reuses an issued token until shortly before it expires, then exchanges again", async () => {
    endpoint.expiresIn = 2; // refreshSkewSeconds is 1: kept for about one second
    try {
      const before = endpoint.calls;
      const first = await Promise.all([1, 2, 3].map(() => call("refresher", "jira")));
      expect(first.map((r) => r.status)).toEqual([200, 200, 200]);
      await call("refresher", "jira");
      // Three concurrent requests and a fourth: one exchange.
      expect(endpoint.calls - before).toBe(1);
      await new Promise((r) => setTimeout(r, 1_200));
      const mark = servers.received.length;
      const later = await call("refresher", "jira");
      expect(later.status).toBe(200);
      expect(endpoint.calls - before).toBe(2);
      const presented = since(mark).map((r) => r.headers.authorization);
      expect(new Set(presented).size).toBe(1);
    } finally {
      endpoint.expiresIn = 300;
    }
  });

  it("does not keep a token whose expiry the endpoint did not say", async () => {
    endpoint.expiresIn = undefined;
    try {
      const before = endpoint.calls;
      expect((await call("noexpiry", "jira")).status).toBe(200);
      expect((await call("noexpiry", "jira")).status).toBe(200);
      expect(endpoint.calls - before).toBe(2);
    } finally {
      endpoint.expiresIn = 300;
    }
  });

  async function expectUnavailable(agent: string, server: string, cause: string) {
    const mark = servers.received.length;
    const res = await call(agent, server);
    expect(res.status).toBe(502);
    const body = JSON.parse(res.text) as ErrorBody;
    expect(body.error.code).toBe(-32050);
    expect(body.error.data.reason).toBe("upstream_credential_unavailable");
    expect(since(mark)).toEqual([]); // fail closed: nothing reached the server
    const [record] = await gw.log.auditFor(body.error.data.request_id);
    expect(record).toMatchObject({
      decision: "error",
      reasons: ["upstream_credential_unavailable"],
      causes: [cause],
      server,
    });
    return res;
  }

  it("fails closed when the token endpoint is down", async () => {
    await expectUnavailable("unlucky", "offline", "token_exchange_unreachable");
  });

  it("fails closed when the endpoint refuses the exchange, and names its error in the audit", async () => {
    endpoint.mode = "refuse";
    try {
      await expectUnavailable("unlucky", "jira", "token_exchange_refused:invalid_grant");
      endpoint.mode = "error";
      await expectUnavailable("unlucky", "wiki", "token_exchange_refused:server_error");
    } finally {
      endpoint.mode = "ok";
    }
  });

  it("fails closed when the endpoint answers without a usable token", async () => {
    endpoint.mode = "malformed";
    try {
      await expectUnavailable("garbled", "jira", "token_exchange_malformed");
      endpoint.mode = "wrong_token_type";
      await expectUnavailable("garbled", "wiki", "token_exchange_malformed");
    } finally {
      endpoint.mode = "ok";
    }
  });

  it("fails closed when the endpoint is slower than the timeout, and recovers after", async () => {
    endpoint.mode = "slow";
    endpoint.slowMs = 1_500; // the servers' timeout is 1s
    try {
      await expectUnavailable("patient", "jira", "token_exchange_timeout");
    } finally {
      endpoint.mode = "ok";
    }
    // A failure is remembered only briefly (1 s).
    await new Promise((r) => setTimeout(r, 1_100));
    expect((await call("patient", "jira")).status).toBe(200);
  });

  it("keeps every credential out of the agent's answers, the log and the audit records", async () => {
    const res = await call("leaky", "jira", "leak");
    expect(res.status).toBe(200);
    const issued = [...endpoint.issued.values()].filter((t) => t.subject === "leaky").map((t) => t.token);
    expect(issued.length).toBe(1);
    const logged = JSON.stringify(gw.log.lines);
    expect(gw.log.audits.length).toBeGreaterThan(0);
    for (const secret of [...issued, CLIENT_SECRET, ...tokens.values()]) {
      expect(logged).not.toContain(secret);
      expect(JSON.stringify(res.headers)).not.toContain(secret);
    }
    // Every token any agent was issued stays out of the log, not just this one.
    for (const t of endpoint.issued.keys()) expect(logged).not.toContain(t);
    // The server echoed the token it was sent: DLP finds it like a static credential.
    expect(textOf(res)).toBe("acting for leaky with [REDACTED:gateway_credential]");
    expect(res.text).not.toContain(issued[0]);
  });
});
