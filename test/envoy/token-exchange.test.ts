import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEnvoyRoleFront } from "../../ext-service/src/envoy/envoy-role-front.js";
import { startExtService } from "../../ext-service/src/envoy/server.js";
import { httpCall, MCP_HEADERS, rpc, type Gateway } from "../e2e/harness.js";
import type { TokenEndpoint } from "../upstream/token-endpoint.js";
import {
  CLIENT_SECRET,
  startCredentialCheckingServers,
  startTokenExchangeFixture,
  textOf,
  tokenExchangeServers,
  type CheckingServers,
  type ErrorBody,
  type TokenExchangeFixture,
} from "../upstream/token-exchange-fixture.js";

/**
 * Per-agent credentials by token exchange on the Envoy plane: ext_authz exchanges the agent's
 * token and sets the issued one in its OK response, the modelled Envoy applies it to the upstream
 * request, the MCP server checks it; ext_proc's pin check lists tools with the same token. A
 * failed exchange is ext_authz's denied response, audited there.
 */

const SECRET_ENV = "MCPGW_TEST_ENVOY_TOKEN_EXCHANGE_SECRET";

describe("token exchange through the Envoy-role front", () => {
  let fx: TokenExchangeFixture<CheckingServers>;
  let gw: Gateway;
  let endpoint: TokenEndpoint;
  let servers: CheckingServers;
  let tokens: Map<string, string>;

  beforeAll(async () => {
    fx = await startTokenExchangeFixture({
      secretEnv: SECRET_ENV,
      agents: ["tester", "other", "unlucky"],
      startServers: startCredentialCheckingServers,
      registry: (endpoint, servers) => tokenExchangeServers(endpoint, servers.upstream.url, SECRET_ENV),
      envoyFront: true,
    });
    ({ gw, endpoint, servers, tokens } = fx);
  });
  afterAll(() => fx?.close());

  const call = (agent: string, server: string, text = "hi") =>
    httpCall(`${fx.front!.url}/mcp/${server}`, {
      headers: { ...MCP_HEADERS, authorization: `Bearer ${tokens.get(agent)}` },
      body: rpc("tools/call", { name: "echo", arguments: { text } }, 5),
    });

  it("each server gets a token issued for it and the calling agent, exchanged once per pair", async () => {
    const mark = servers.received.length;
    const before = endpoint.calls;
    for (const agent of ["tester", "other"]) {
      for (const server of ["jira", "wiki"]) {
        for (let i = 0; i < 2; i++) {
          const res = await call(agent, server);
          expect(res.status).toBe(200);
          expect(textOf(res)).toBe(`hello ${agent}`);
        }
      }
    }
    expect(endpoint.calls - before).toBe(4);
    const got = servers.received.slice(mark);
    expect(got.filter((r) => r.method === "tools/call").map((r) => `${r.holder}@${r.server}`)).toEqual([
      "tester@jira",
      "tester@jira",
      "tester@wiki",
      "tester@wiki",
      "other@jira",
      "other@jira",
      "other@wiki",
      "other@wiki",
    ]);
    // ext_proc's pin check got through with a token too (the servers refuse anything else).
    expect(got.some((r) => r.method === "tools/list")).toBe(true);
    for (const r of got) {
      expect(r.holder).toBeDefined();
      const sent = JSON.stringify(r.headers);
      for (const agentToken of tokens.values()) expect(sent).not.toContain(agentToken);
      if (r.server === "wiki") expect(r.headers.authorization).toBeUndefined();
    }
  });

  it("refuses with upstream_credential_unavailable when the exchange fails, forwarding nothing", async () => {
    endpoint.mode = "refuse";
    const mark = servers.received.length;
    try {
      const res = await call("unlucky", "jira");
      expect(res.status).toBe(502);
      const body = JSON.parse(res.text) as ErrorBody;
      expect(body.error.code).toBe(-32050);
      expect(body.error.data.reason).toBe("upstream_credential_unavailable");
      expect(servers.received.slice(mark)).toEqual([]);
      const [record] = await gw.log.auditFor(body.error.data.request_id);
      expect(record).toMatchObject({
        plane: "envoy",
        decision: "error",
        reasons: ["upstream_credential_unavailable"],
        causes: ["token_exchange_refused:invalid_grant"],
      });
    } finally {
      endpoint.mode = "ok";
    }
  });

  it("keeps the credentials out of the log and the audit records", async () => {
    const res = await call("tester", "jira", "leak");
    expect(res.status).toBe(200);
    // ext_proc's DLP finds the token the server echoes, as ext_authz had it issued.
    expect(textOf(res)).toBe("acting for tester with [REDACTED:gateway_credential]");
    for (const token of endpoint.issued.keys()) expect(res.text).not.toContain(token);
    const logged = JSON.stringify(gw.log.lines);
    expect(gw.log.audits.length).toBeGreaterThan(0);
    for (const secret of [CLIENT_SECRET, ...tokens.values(), ...endpoint.issued.keys()]) {
      expect(logged).not.toContain(secret);
    }
  });

  it("ext_proc on another replica than ext_authz still knows the issued token, also one without expires_in", async () => {
    // A second replica with the same sealing keys but its own exchanger and cache: Envoy balances
    // each gRPC call on its own, so Check may go to the first replica and Process to this one.
    const replica = await startExtService({
      engine: gw.engine,
      logger: gw.log.logger,
      metrics: gw.metrics,
      grpcHost: "127.0.0.1",
      grpcPort: 0,
      adminHost: "127.0.0.1",
      adminPort: 0,
    });
    const split = await startEnvoyRoleFront({
      extService: { engine: gw.engine, logger: gw.log.logger, metrics: gw.metrics },
      client: { extProcAddress: replica.grpcAddress },
    });
    try {
      for (const expiresIn of [300, undefined]) {
        endpoint.expiresIn = expiresIn;
        const res = await httpCall(`${split.url}/mcp/jira`, {
          headers: { ...MCP_HEADERS, authorization: `Bearer ${tokens.get("other")}` },
          body: rpc("tools/call", { name: "echo", arguments: { text: "leak" } }, 6),
        });
        expect(res.status, String(expiresIn)).toBe(200);
        // The pin check on this replica listed tools with the token, and DLP matched it.
        expect(textOf(res)).toBe("acting for other with [REDACTED:gateway_credential]");
      }
    } finally {
      endpoint.expiresIn = 300;
      await split.close();
      await replica.close();
    }
    const logged = JSON.stringify(gw.log.lines);
    for (const secret of [CLIENT_SECRET, ...tokens.values(), ...endpoint.issued.keys()]) {
      expect(logged).not.toContain(secret);
    }
  });
});
