import type { IncomingMessage, ServerResponse } from "node:http";
import { fakeUpstream, readJsonBody, type GatewaySpec } from "../e2e/harness.js";
import type { TokenEndpoint } from "./token-endpoint.js";

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

export interface Received {
  server: string;
  method: string;
  /** The agent the credential was issued for; undefined when the server refused it. */
  holder: string | undefined;
  headers: IncomingMessage["headers"];
}

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
  return { upstream, received };
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
