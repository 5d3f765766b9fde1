import { Pool, request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDemoGateway, type DemoGateway } from "../e2e/harness.js";
import { expectOutcome } from "./outcome.js";
import { scenarioSessions } from "./sessions.js";
import { authorizationFor, bodyBytes, requestHeaders } from "./request.js";
import { scenarios } from "./table.js";

/** Every row of the scenario table through the local edge, over HTTP, against the demo servers. */
describe("scenario table: local edge", () => {
  let gw: DemoGateway;
  // A dispatcher of its own: paths go on the wire exactly as the table writes them (no URL
  // normalisation of "..", percent-escapes or slashes).
  let pool: Pool;

  beforeAll(async () => {
    gw = await startDemoGateway();
    pool = new Pool(gw.dev.edge.url);
  });
  afterAll(async () => {
    await pool?.close();
    await gw?.close();
  });

  const sessionFor = scenarioSessions(
    async (path, headers, body) => {
      const res = await request(`${gw.dev.edge.url}${path}`, { method: "POST", headers, body });
      await res.body.text();
      const id = res.headers["mcp-session-id"];
      return { status: res.statusCode, sessionId: typeof id === "string" ? id : undefined };
    },
    () => gw.privateJwk,
  );

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
      const stream = row.expect.verdict === "forward" && row.expect.stream === true;
      if (stream) controller.abort(); // the server stream would stay open
      const text = stream ? "" : await res.body.text();
      if (stream) await res.body.text().catch(() => undefined);
      expectOutcome(row, {
        status: res.statusCode,
        header: (name) => {
          const v = res.headers[name];
          return v === undefined ? undefined : String(v);
        },
        text,
      });
    });
  }
});
