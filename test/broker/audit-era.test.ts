import { describe, expect, it } from "vitest";
import type { AuditRecord } from "../../ext-service/src/telemetry/audit.js";
import { waitFor } from "../e2e/harness.js";
import { connect2025, connectModern, demoPlane } from "./support.js";

/**
 * Issue 14, found with Claude Code, mcp-remote and the Inspector against `npm start`: the audit
 * record of a request to `/mcp` said `era: null, protocol_version: null` whatever the client spoke
 * (and so the request was missing from mcp_gateway_protocol_requests_total), while
 * docs/OBSERVABILITY.md says null only before the body or headers were read, and `/mcp/<server>`
 * records both. The aggregated endpoint's own records now name them, on both planes.
 */
describe.each(["edge", "envoy"] as const)(
  "the aggregated endpoint's audit records name the era, %s plane",
  (plane) => {
    const demo = demoPlane(plane);

    /** The aggregated endpoint's own records of `agent` (a hop's name its server). */
    const aggregated = (agent: string): AuditRecord[] =>
      demo.gw.log.audits.filter((a) => a.agent === agent && a.server === null && a.counters.aggregated === 1);

    it("a 2025 session (1.x client): initialize, its requests, the GET stream and the DELETE", async () => {
      const client = await connect2025("1.x", demo.url(), demo.gw.token("support-bot"));
      expect(await client.tools()).toContain("tickets__get_ticket");
      await client.call("tickets__get_ticket", { id: "T-1" });
      await client.terminate();
      await client.close();
      await waitFor(
        () => aggregated("support-bot").some((a) => a.http_method === "DELETE"),
        5_000,
        "the DELETE's record",
      );
      await waitFor(
        () => aggregated("support-bot").some((a) => a.http_method === "GET"),
        5_000,
        "the GET's record",
      );
      const records = aggregated("support-bot");
      const seen = new Set(records.map((a) => `${a.http_method} ${a.methods.join(",")}`));
      for (const kind of ["POST initialize", "POST tools/list", "POST tools/call", "GET ", "DELETE "])
        expect(seen).toContain(kind);
      for (const a of records) {
        expect([a.http_method, a.methods, a.era]).toEqual([a.http_method, a.methods, "2025"]);
        // initialize names the client's revision; every later request the negotiated one in its header.
        expect(a.protocol_version).toMatch(/^2025-/);
      }
      const later = records.filter((a) => !a.methods.includes("initialize"));
      expect(new Set(later.map((a) => a.protocol_version))).toEqual(new Set([client.protocolVersion]));
    });

    it("a 2026-07-28 client (v2): server/discover, lists and calls", async () => {
      const client = await connectModern(demo.url(), demo.gw.token("research-bot"));
      try {
        const { tools } = await client.listTools();
        expect(tools.map((t) => t.name)).toContain("kb__search_articles");
        await client.callTool({ name: "kb__search_articles", arguments: { query: "refund" } });
      } finally {
        await client.close();
      }
      await waitFor(
        () => aggregated("research-bot").some((a) => a.methods.includes("tools/call")),
        5_000,
        "the call's record",
      );
      const records = aggregated("research-bot");
      expect(records.map((a) => a.methods[0])).toEqual(expect.arrayContaining(["tools/list", "tools/call"]));
      for (const a of records)
        expect([a.methods, a.era, a.protocol_version]).toEqual([a.methods, "2026", "2026-07-28"]);
    });
  },
);
