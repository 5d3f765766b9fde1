import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { traceIdOf } from "../../ext-service/src/policy/exchange.js";
import { httpCall, MCP_HEADERS, rpc, startDemoGateway, waitFor, type DemoGateway } from "../e2e/harness.js";

describe("trace ids in audit records", () => {
  it("reads the trace id of a W3C traceparent and ignores malformed or all-zero ones", () => {
    const id = "4bf92f3577b34da6a3ce929d0e0e4736";
    expect(traceIdOf(`00-${id}-00f067aa0ba902b7-01`)).toBe(id);
    expect(traceIdOf(undefined)).toBeUndefined();
    expect(traceIdOf("00-xyz-00f067aa0ba902b7-01")).toBeUndefined();
    expect(traceIdOf(`00-${"0".repeat(32)}-00f067aa0ba902b7-01`)).toBeUndefined();
    expect(traceIdOf(`00-${id.toUpperCase()}-00f067aa0ba902b7-01`)).toBeUndefined();
  });

  describe("through the edge", () => {
    let gw: DemoGateway;
    beforeAll(async () => {
      gw = await startDemoGateway();
    });
    afterAll(async () => {
      await gw?.close();
    });

    it("writes the trace id of the client's traceparent into the audit record", async () => {
      const traceId = "0af7651916cd43dd8448eb211c80319c";
      const res = await httpCall(gw.dev.urls.kb!, {
        headers: {
          ...MCP_HEADERS,
          authorization: `Bearer ${gw.token("research-bot")}`,
          traceparent: `00-${traceId}-b7ad6b7169203331-01`,
        },
        body: rpc("initialize", {
          protocolVersion: "2025-06-18",
          capabilities: {},
          clientInfo: { name: "t", version: "1" },
        }),
      });
      expect(res.status).toBe(200);
      await waitFor(() => gw.log.audits.some((a) => a.trace_id === traceId));
      const audit = gw.log.audits.find((a) => a.trace_id === traceId)!;
      expect(audit.methods).toEqual(["initialize"]);
    });
  });
});
