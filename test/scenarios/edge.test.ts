import { Pool, request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bodyMessages, startDemoGateway, type DemoGateway } from "../e2e/harness.js";
import {
  agentOf,
  authorizationFor,
  bodyBytes,
  requestHeaders,
  SCENARIO_PROTOCOL_VERSION,
} from "./request.js";
import { scenarios, type Scenario } from "./table.js";

/** Every row of the scenario table through the local edge, over HTTP, against the demo servers. */
describe("scenario table: local edge", () => {
  let gw: DemoGateway;
  // A dispatcher of its own: paths go on the wire exactly as the table writes them (no URL
  // normalisation of "..", percent-escapes or slashes).
  let pool: Pool;
  const shared = new Map<string, string>();

  beforeAll(async () => {
    gw = await startDemoGateway();
    pool = new Pool(gw.dev.edge.url);
  });
  afterAll(async () => {
    await pool?.close();
    await gw?.close();
  });

  async function newSession(agent: string, path: string): Promise<string> {
    const res = await request(`${gw.dev.edge.url}${path}`, {
      method: "POST",
      headers: requestHeaders(
        { method: "POST", path },
        await authorizationFor({ agent }, gw.privateJwk),
        undefined,
      ),
      body: JSON.stringify({
        jsonrpc: "2.0",
        id: 0,
        method: "initialize",
        params: {
          protocolVersion: SCENARIO_PROTOCOL_VERSION,
          capabilities: {},
          clientInfo: { name: "table", version: "1" },
        },
      }),
    });
    await res.body.text();
    const id = res.headers["mcp-session-id"];
    if (res.statusCode !== 200 || typeof id !== "string")
      throw new Error(`initialize failed: ${res.statusCode}`);
    return id;
  }

  async function sessionFor(row: Scenario): Promise<string | undefined> {
    const agent = agentOf(row.identity);
    if (!row.request.session || !agent) return undefined;
    if (row.request.session === "fresh") return newSession(agent, row.request.path);
    const key = `${agent} ${row.request.path}`;
    let id = shared.get(key);
    if (!id) {
      id = await newSession(agent, row.request.path);
      shared.set(key, id);
    }
    return id;
  }

  it("has unique row names", () => {
    expect(new Set(scenarios.map((s) => s.name)).size).toBe(scenarios.length);
  });

  for (const row of scenarios) {
    it(row.name, async () => {
      const sessionId = await sessionFor(row);
      const headers = requestHeaders(
        row.request,
        await authorizationFor(row.identity, gw.privateJwk),
        sessionId,
      );
      const controller = new AbortController();
      const res = await pool.request({
        path: row.request.path,
        method: row.request.method,
        headers,
        body: bodyBytes(row.request.body),
        signal: controller.signal,
      });
      const expected = row.expect;
      expect(res.statusCode).toBe(expected.status);
      const contentType = String(res.headers["content-type"] ?? "");

      if (expected.verdict === "forward" && expected.stream) {
        expect(contentType).toBe("text/event-stream");
        controller.abort(); // the stream would stay open
        await res.body.text().catch(() => undefined);
        return;
      }
      const text = await res.body.text();
      const messages = bodyMessages(contentType, text) as Record<string, unknown>[];

      if (expected.verdict === "local") {
        expect(JSON.parse(text)).toMatchObject(expected.json);
        return;
      }
      if (expected.verdict === "deny") {
        expect(contentType).toBe("application/json");
        for (const [name, prefix] of Object.entries(expected.headers ?? {})) {
          expect(String(res.headers[name])).toMatch(
            new RegExp(`^${prefix.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`),
          );
        }
        const body = JSON.parse(text) as unknown;
        if (expected.batch) {
          expect(Array.isArray(body)).toBe(true);
          expect(
            (body as { error: { code: number; data: { reason: string } } }[]).map((m) => ({
              code: m.error.code,
              reason: m.error.data.reason,
            })),
          ).toEqual(expected.batch);
        } else {
          expect(body).toMatchObject({
            jsonrpc: "2.0",
            error: { code: expected.code, data: { reason: expected.reason } },
          });
          expect((body as { error: { data: { request_id: string } } }).error.data.request_id).toMatch(
            /^[0-9a-f-]{36}$/,
          );
        }
        return;
      }
      // forwarded
      if (expected.answer === "none") {
        expect(text).toBe("");
        return;
      }
      if (expected.answer === "result") {
        const answer = messages.find((m) => "id" in m && ("result" in m || "error" in m));
        expect(answer, text).toMatchObject({ jsonrpc: "2.0" });
        expect(answer).toHaveProperty("result");
        expect((answer!.result as { isError?: boolean }).isError).toBeFalsy();
        if (expected.tools) {
          expect((answer!.result as { tools: { name: string }[] }).tools.map((t) => t.name)).toEqual(
            expected.tools,
          );
        }
      }
    });
  }
});
