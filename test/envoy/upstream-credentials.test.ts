import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEnvoyRoleFront, type EnvoyRoleFront } from "../../ext-service/src/envoy/envoy-role-front.js";
import {
  ECHO_TOOL,
  httpCall,
  MCP_HEADERS,
  rpc,
  startCredentialedUpstream,
  startGateway,
  type CredentialedUpstream,
  type Gateway,
} from "../e2e/harness.js";

/**
 * Static per-server credentials on the Envoy plane: ext_authz's OK response sets the header
 * (and removes the agent's own), the modelled Envoy applies it to the upstream request, the MCP
 * server checks it. A credential the server echoes is redacted by ext_proc's DLP.
 */

const TOKEN = "envoyPlaneT0ken-0123456789abcdefABCD";
const ENV = "MCPGW_TEST_ENVOY_UPSTREAM_TOKEN";
describe("static upstream credentials through the Envoy-role front", () => {
  let gw: Gateway;
  let front: EnvoyRoleFront;
  let upstream: CredentialedUpstream;
  let agentToken: string;

  beforeAll(async () => {
    process.env[ENV] = TOKEN;
    upstream = await startCredentialedUpstream({
      token: () => TOKEN,
      reply: (req) => `token ${req.headers.authorization?.slice(7)}`,
    });
    gw = await startGateway({
      servers: [
        {
          name: "github",
          upstreams: [upstream.url],
          upstream: { headers: { Authorization: `Bearer \${env:${ENV}}` } },
          tools: [ECHO_TOOL],
        },
      ],
    });
    front = await startEnvoyRoleFront({
      extService: { engine: gw.engine, logger: gw.log.logger, metrics: gw.metrics },
    });
    agentToken = await gw.token("tester");
  });
  afterAll(async () => {
    await front?.close();
    await gw?.close();
    await upstream?.close();
    delete process.env[ENV];
  });

  it("the server receives the gateway's credential, the agent gets it redacted", async () => {
    upstream.seen.length = 0;
    const res = await httpCall(`${front.url}/mcp/github`, {
      headers: { ...MCP_HEADERS, authorization: `Bearer ${agentToken}` },
      body: rpc("tools/call", { name: "echo", arguments: { text: "hi" } }, 3),
    });
    expect(res.status).toBe(200);
    expect(upstream.seen.length).toBeGreaterThan(0);
    for (const { headers } of upstream.seen) {
      expect(headers.authorization).toBe(`Bearer ${TOKEN}`);
      expect(JSON.stringify(headers)).not.toContain(agentToken);
    }
    expect(res.messages[0]).toMatchObject({
      result: { content: [{ type: "text", text: "token [REDACTED:gateway_credential]" }] },
    });
    expect(res.text).not.toContain(TOKEN);
    expect(JSON.stringify(gw.log.lines)).not.toContain(TOKEN);
  });
});
