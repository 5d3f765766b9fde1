import type { IncomingMessage, ServerResponse } from "node:http";
import { startEnvoyRoleFront, type EnvoyRoleFront } from "../../ext-service/src/envoy/envoy-role-front.js";
import { fakeUpstream, readJsonBody, startGateway, type Gateway, type GatewaySpec } from "../e2e/harness.js";
import { startTokenEndpoint, type TokenEndpoint } from "./token-endpoint.js";

/**
 * Two MCP servers that each need a per-agent token from the test token endpoint: `jira` by
 * audience in `Authorization: Bearer`, `wiki` by resource in `X-Wiki-Token`. Each checks the
 * header it receives (issued by the endpoint, for its own audience or resource, not expired)
 * and answers 401 otherwise, as a real server would. Shared by the edge and Envoy-plane tests.
 */

export const CLIENT_ID = "mcp-gateway";
export const CLIENT_SECRET = "gw-client-s3cret-0123456789abcdef";
export const WIKI_RESOURCE = "https://wiki.example.test/mcp";

export const ECHO = {
  name: "echo",
  description: "Echoes the text it is given.",
  inputSchema: { type: "object", properties: { text: { type: "string" } } },
};

/** A refused request's JSON-RPC error, as the gateway writes it. */
export interface ErrorBody {
  error: { code: number; data: { reason: string; request_id: string } };
}

/** The text of the first content item of an `httpCall` answer's first message. */
export const textOf = (res: { messages: unknown[] }) =>
  (res.messages[0] as { result: { content: { text: string }[] } }).result.content[0]!.text;

export interface Received {
  server: string;
  method: string;
  /** The agent the credential was issued for; undefined when the server refused it. */
  holder: string | undefined;
  headers: IncomingMessage["headers"];
}

export type CheckingServers = Awaited<ReturnType<typeof startCredentialCheckingServers>>;

export async function startCredentialCheckingServers(endpoint: TokenEndpoint) {
  const received: Received[] = [];
  const upstream = await fakeUpstream((req: IncomingMessage, res: ServerResponse) => {
    void (async () => {
      const msg = (await readJsonBody(req)) as {
        id: number;
        method: string;
        params?: { arguments?: { text?: string } };
      };
      const server = req.url === "/mcp/wiki" ? "wiki" : "jira";
      const presented =
        server === "wiki" ? req.headers["x-wiki-token"] : req.headers.authorization?.replace(/^Bearer /, "");
      const holder =
        typeof presented === "string"
          ? endpoint.holder(presented, server === "wiki" ? WIKI_RESOURCE : "jira")
          : undefined;
      received.push({ server, method: msg.method, holder: holder?.subject, headers: req.headers });
      if (!holder) {
        res.writeHead(401, { "content-type": "application/json" });
        res.end("{}");
        return;
      }
      const text = msg.params?.arguments?.text;
      const result =
        msg.method === "tools/list"
          ? { tools: [ECHO] }
          : {
              content: [
                {
                  type: "text",
                  // A careless server that echoes its credential when asked.
                  text:
                    text === "leak"
                      ? `acting for ${holder.subject} with ${presented}`
                      : `hello ${holder.subject}`,
                },
              ],
            };
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ jsonrpc: "2.0", id: msg.id, result }));
    })();
  });
  return { upstream, received, close: () => upstream.close() };
}

/** `upstream`: the fake upstream's URL (paths /jira and /wiki), or each server's own URL. */
export function tokenExchangeServers(
  endpoint: TokenEndpoint,
  upstream: string | { jira: string; wiki: string },
  secretEnv: string,
  extra: Record<string, unknown> = {},
): GatewaySpec["servers"] {
  const common = {
    tokenEndpoint: endpoint.url,
    clientId: CLIENT_ID,
    clientSecret: `\${env:${secretEnv}}`,
    timeout: "1s",
    ...extra,
  };
  return [
    {
      name: "jira",
      upstreams: [typeof upstream === "string" ? `${upstream}/jira` : upstream.jira],
      upstream: { tokenExchange: { ...common, audience: "jira" } },
      tools: [ECHO],
    },
    {
      name: "wiki",
      upstreams: [typeof upstream === "string" ? `${upstream}/wiki` : upstream.wiki],
      upstream: {
        tokenExchange: { ...common, resource: WIKI_RESOURCE, header: "X-Wiki-Token", scope: "read" },
      },
      tools: [ECHO],
    },
  ];
}

export interface TokenExchangeFixture<Servers> {
  gw: Gateway;
  endpoint: TokenEndpoint;
  servers: Servers;
  /** Each agent's token, signed by the gateway's dev issuer. */
  tokens: Map<string, string>;
  /** The Envoy-role front over the gateway's ext-service, when asked for. */
  front: EnvoyRoleFront | undefined;
  close(): Promise<void>;
}

/**
 * The token endpoint, the servers that check its credentials, and a gateway whose registry
 * (`registry`) exchanges for them with the client secret in `secretEnv`; the endpoint then
 * verifies subject tokens with the gateway's dev issuer key, made by startGateway. On a failed
 * start whatever did start is closed again.
 */
export async function startTokenExchangeFixture<Servers extends { close(): Promise<void> }>(options: {
  secretEnv: string;
  agents: readonly string[];
  startServers: (endpoint: TokenEndpoint) => Promise<Servers>;
  registry: (
    endpoint: TokenEndpoint,
    servers: Servers,
  ) => Promise<GatewaySpec["servers"]> | GatewaySpec["servers"];
  envoyFront?: boolean;
}): Promise<TokenExchangeFixture<Servers>> {
  const closers: (() => Promise<void>)[] = [];
  const close = async () => {
    for (const closer of closers.reverse()) await closer();
    delete process.env[options.secretEnv];
  };
  try {
    process.env[options.secretEnv] = CLIENT_SECRET;
    const endpoint = await startTokenEndpoint({
      clientId: CLIENT_ID,
      clientSecret: CLIENT_SECRET,
      targets: ["jira", WIKI_RESOURCE],
    });
    closers.push(() => endpoint.close());
    const servers = await options.startServers(endpoint);
    closers.push(() => servers.close());
    const gw = await startGateway({
      servers: await options.registry(endpoint, servers),
      agents: Object.fromEntries(options.agents.map((a) => [a, { roles: ["all"] }])),
    });
    closers.push(() => gw.close());
    endpoint.setIssuerJwk(gw.privateJwk);
    const tokens = new Map<string, string>();
    for (const agent of options.agents) tokens.set(agent, await gw.token(agent));
    const front = options.envoyFront
      ? await startEnvoyRoleFront({
          extService: { engine: gw.engine, logger: gw.log.logger, metrics: gw.metrics },
        })
      : undefined;
    if (front) closers.push(() => front.close());
    return { gw, endpoint, servers, tokens, front, close };
  } catch (err) {
    await close();
    throw err;
  }
}
