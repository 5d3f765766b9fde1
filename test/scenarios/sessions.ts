import type { JWK } from "jose";
import { agentOf, authorizationFor, requestHeaders, SCENARIO_PROTOCOL_VERSION } from "./request.js";
import type { Scenario } from "./table.js";

/** Sends an initialize request on a data plane; returns the HTTP status and Mcp-Session-Id. */
export type Initialize = (
  path: string,
  headers: Record<string, string>,
  body: string,
) => Promise<{ status: number; sessionId: string | undefined }>;

/** MCP sessions for table rows: "shared" rows reuse one per agent and server, "fresh" rows get their own. */
export function scenarioSessions(initialize: Initialize, devKey: () => JWK) {
  const shared = new Map<string, string>();
  async function open(agent: string, path: string): Promise<string> {
    const headers = requestHeaders(
      { method: "POST", path },
      await authorizationFor({ agent }, devKey()),
      undefined,
    );
    const body = JSON.stringify({
      jsonrpc: "2.0",
      id: 0,
      method: "initialize",
      params: {
        protocolVersion: SCENARIO_PROTOCOL_VERSION,
        capabilities: {},
        clientInfo: { name: "table", version: "1" },
      },
    });
    const { status, sessionId } = await initialize(path, headers, body);
    if (status !== 200 || sessionId === undefined) throw new Error(`initialize failed: ${status}`);
    return sessionId;
  }
  return async function sessionFor(row: Scenario): Promise<string | undefined> {
    const agent = agentOf(row.identity);
    if (!row.request.session || !agent) return undefined;
    if (row.request.session === "fresh") return open(agent, row.request.path);
    const key = `${agent} ${row.request.path}`;
    let id = shared.get(key);
    if (!id) {
      id = await open(agent, row.request.path);
      shared.set(key, id);
    }
    return id;
  };
}
