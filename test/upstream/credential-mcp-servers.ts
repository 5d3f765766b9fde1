import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Server } from "@modelcontextprotocol/server";
import { bothErasHandler } from "../../examples/servers/dual-era.js";
import type { TokenEndpoint } from "./token-endpoint.js";
import { ECHO, WIKI_RESOURCE } from "./token-exchange-fixture.js";

/**
 * The two token-exchange servers of token-exchange-fixture.ts (`jira`: the token by audience in
 * `Authorization: Bearer`; `wiki`: by resource in `X-Wiki-Token`) as real MCP servers of the v2
 * SDK, in both protocol eras (examples/servers/dual-era.ts), so SDK clients can reach them
 * through the aggregated endpoint. Every HTTP request's credential is checked before the SDK
 * sees it (issued by the endpoint, for this server, not expired; 401 otherwise, as a real server
 * would); `echo` answers with the agent the credential was issued for, and a careless server's
 * echo of its own credential when asked to "leak".
 */

export interface SeenRequest {
  server: "jira" | "wiki";
  httpMethod: string;
  /** The agent the credential was issued for; undefined when the server refused the request. */
  holder: string | undefined;
  headers: IncomingMessage["headers"];
}

export interface CredentialMcpServers {
  /** Upstream URLs for the registry. */
  urls: { jira: string; wiki: string };
  /** Every HTTP request either server received. */
  seen: SeenRequest[];
  /** `tools/call`s answered, as `<agent>@<server>`. */
  calls: string[];
  /**
   * Sends a log message (`notifications/message`, logger "ping", data `text`) from every session
   * of server `name`, outside any request: it travels on the session's GET stream.
   */
  notify(name: "jira" | "wiki", text: string): Promise<void>;
  close(): Promise<void>;
}

function echoServer(name: "jira" | "wiki", calls: string[]): Server {
  const server = new Server({ name, version: "1.0.0" }, { capabilities: { tools: {}, logging: {} } });
  server.setRequestHandler("tools/list", () => ({ tools: [ECHO] as never }));
  server.setRequestHandler("tools/call", (request, ctx) => {
    const auth = ctx.http?.authInfo;
    const holder = auth?.clientId ?? "nobody";
    calls.push(`${holder}@${name}`);
    const text = (request.params.arguments as { text?: unknown } | undefined)?.text;
    return {
      content: [
        {
          type: "text",
          text: text === "leak" ? `acting for ${holder} with ${auth?.token}` : `hello ${holder}`,
        },
      ],
    };
  });
  return server;
}

export async function startCredentialMcpServers(endpoint: TokenEndpoint): Promise<CredentialMcpServers> {
  const seen: SeenRequest[] = [];
  const calls: string[] = [];
  const created: { name: "jira" | "wiki"; server: Server }[] = [];
  const started = await Promise.all(
    (["jira", "wiki"] as const).map(async (name) => {
      let origin = "";
      const handler = bothErasHandler(
        () => {
          const server = echoServer(name, calls);
          created.push({ name, server });
          return server;
        },
        () => origin,
      );
      const http = createServer((req: IncomingMessage & { auth?: unknown }, res: ServerResponse) => {
        const presented =
          name === "wiki" ? req.headers["x-wiki-token"] : req.headers.authorization?.replace(/^Bearer /, "");
        const issued =
          typeof presented === "string"
            ? endpoint.holder(presented, name === "wiki" ? WIKI_RESOURCE : "jira")
            : undefined;
        seen.push({
          server: name,
          httpMethod: req.method ?? "",
          holder: issued?.subject,
          headers: req.headers,
        });
        if (!issued || typeof presented !== "string") {
          res.writeHead(401, { "content-type": "application/json" }).end("{}");
          return;
        }
        req.auth = { token: presented, clientId: issued.subject, scopes: [] };
        handler.handle(req, res).catch(() => {
          if (!res.headersSent) res.writeHead(500).end();
        });
      });
      await new Promise<void>((r) => http.listen(0, "127.0.0.1", () => r()));
      origin = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
      return {
        url: `${origin}/mcp`,
        close: async () => {
          await handler.close();
          await new Promise<void>((r) => {
            http.close(() => r());
            http.closeAllConnections();
          });
        },
      };
    }),
  );
  return {
    urls: { jira: started[0]!.url, wiki: started[1]!.url },
    seen,
    calls,
    notify: async (name, text) => {
      await Promise.allSettled(
        created
          .filter((c) => c.name === name)
          .map((c) =>
            c.server.notification({
              method: "notifications/message",
              params: { level: "info", logger: "ping", data: text },
            }),
          ),
      );
    },
    close: async () => {
      await Promise.all(started.map((s) => s.close()));
    },
  };
}
