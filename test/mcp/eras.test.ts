import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  classifyEra,
  decodeHeaderValue,
  isModernProtocolVersion,
  protocolVersionLabel,
  type StandardHeaders,
} from "../../ext-service/src/mcp/eras.js";
import { classifyMessage, type JsonRpcMessage } from "../../ext-service/src/mcp/jsonrpc.js";

const ENVELOPE = {
  "io.modelcontextprotocol/protocolVersion": "2026-07-28",
  "io.modelcontextprotocol/clientInfo": { name: "test", version: "1.0.0" },
  "io.modelcontextprotocol/clientCapabilities": {},
};

function message(value: Record<string, unknown>): JsonRpcMessage {
  const m = classifyMessage({ jsonrpc: "2.0", ...value });
  if (typeof m === "string") throw new Error(m);
  return m;
}

const call2026 = (name: string, meta: Record<string, unknown> = ENVELOPE) =>
  message({ id: 1, method: "tools/call", params: { name, arguments: {}, _meta: meta } });

const modernHeaders = (name?: string): StandardHeaders => ({
  "mcp-protocol-version": "2026-07-28",
  "mcp-method": "tools/call",
  ...(name === undefined ? {} : { "mcp-name": name }),
});

const b64 = (s: string) => `=?base64?${Buffer.from(s, "utf8").toString("base64")}?=`;

describe("classifyEra", () => {
  it("classifies a 2026-07-28 request by its envelope claim", () => {
    expect(classifyEra(call2026("search"), modernHeaders("search"))).toEqual({
      ok: true,
      era: "2026",
      version: "2026-07-28",
    });
  });

  it("classifies requests without a claim as 2025 traffic, with the version they name", () => {
    const init = message({ id: 0, method: "initialize", params: { protocolVersion: "2025-06-18" } });
    expect(classifyEra(init, {})).toEqual({ ok: true, era: "2025", version: "2025-06-18" });
    const list = message({ id: 2, method: "tools/list" });
    expect(classifyEra(list, { "mcp-protocol-version": "2025-11-25" })).toEqual({
      ok: true,
      era: "2025",
      version: "2025-11-25",
    });
    expect(classifyEra(list, {})).toEqual({ ok: true, era: "2025", version: undefined });
  });

  it("refuses a 2026 request whose headers are missing or disagree with the body (HeaderMismatch)", () => {
    const cases: [StandardHeaders, RegExp][] = [
      [{ "mcp-method": "tools/call", "mcp-name": "search" }, /MCP-Protocol-Version header is missing/],
      [{ ...modernHeaders("search"), "mcp-protocol-version": "2025-11-25" }, /vs envelope/],
      [{ "mcp-protocol-version": "2026-07-28", "mcp-name": "search" }, /Mcp-Method header is missing/],
      [modernHeaders(), /Mcp-Name header is missing/],
      [modernHeaders("delete_all"), /Mcp-Name 'delete_all' vs body 'search'/],
      [{ ...modernHeaders("search"), "mcp-method": "tools/list" }, /Mcp-Method 'tools\/list'/],
      [modernHeaders("=?base64?not*base64?="), /invalid Base64/],
    ];
    for (const [headers, detail] of cases) {
      const r = classifyEra(call2026("search"), headers);
      expect(r.ok, JSON.stringify(headers)).toBe(false);
      if (r.ok) continue;
      expect(r.problem).toBe("header_mismatch");
      expect(r.detail).toMatch(detail);
    }
  });

  it("compares a Base64-encoded Mcp-Name after decoding it", () => {
    const name = "résumé tool";
    expect(classifyEra(call2026(name), modernHeaders(b64(name)))).toMatchObject({ ok: true, era: "2026" });
    expect(classifyEra(call2026(name), modernHeaders(b64("other")))).toMatchObject({
      ok: false,
      problem: "header_mismatch",
    });
  });

  it("refuses a malformed envelope, and a 2026 header on a request without one", () => {
    const bad = call2026("search", { "io.modelcontextprotocol/protocolVersion": "2026-07-28" });
    expect(classifyEra(bad, modernHeaders("search"))).toMatchObject({
      ok: false,
      problem: "invalid_envelope",
      detail: expect.stringMatching(/clientCapabilities: missing/),
    });
    const bare = message({ id: 1, method: "tools/list", params: {} });
    expect(
      classifyEra(bare, { "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/list" }),
    ).toMatchObject({ ok: false, problem: "invalid_envelope" });
  });

  it("refuses a 2026-era revision the gateway cannot parse", () => {
    const future = call2026("search", {
      ...ENVELOPE,
      "io.modelcontextprotocol/protocolVersion": "2027-03-01",
    });
    expect(classifyEra(future, { ...modernHeaders("search"), "mcp-protocol-version": "2027-03-01" })).toEqual(
      { ok: false, problem: "unsupported_protocol_version", detail: "2027-03-01" },
    );
    for (const unknown of ["v999.0.0", "2025-01-01"]) {
      const claim = call2026("search", { ...ENVELOPE, "io.modelcontextprotocol/protocolVersion": unknown });
      expect(
        classifyEra(claim, { ...modernHeaders("search"), "mcp-protocol-version": unknown }),
        unknown,
      ).toEqual({
        ok: false,
        problem: "unsupported_protocol_version",
        detail: unknown,
      });
    }
  });

  it("checks Mcp-Method and Mcp-Name on 2025 traffic only when they are sent", () => {
    const call = message({ id: 1, method: "tools/call", params: { name: "search" } });
    expect(classifyEra(call, { "mcp-method": "tools/call" })).toMatchObject({ ok: true, era: "2025" });
    expect(classifyEra(call, { "mcp-name": "other" })).toMatchObject({
      ok: false,
      problem: "header_mismatch",
    });
    const response = message({ id: 1, result: {} });
    expect(classifyEra(response, { "mcp-method": "tools/call" })).toMatchObject({ ok: false });
  });
});

describe("protocol version labels", () => {
  it("keep metric labels bounded: any string maps to a known revision, 'other' or 'none'", () => {
    fc.assert(
      fc.property(fc.option(fc.string(), { nil: undefined }), (v) => {
        const label = protocolVersionLabel(v);
        expect([
          "none",
          "other",
          "2024-11-05",
          "2025-03-26",
          "2025-06-18",
          "2025-11-25",
          "2026-07-28",
        ]).toContain(label);
      }),
    );
  });

  it("orders revisions as dates; anything else is not a 2026 revision", () => {
    expect(isModernProtocolVersion("2026-07-28")).toBe(true);
    expect(isModernProtocolVersion("2027-01-01")).toBe(true);
    expect(isModernProtocolVersion("2025-11-25")).toBe(false);
    expect(isModernProtocolVersion("zzzz")).toBe(false);
  });
});

describe("decodeHeaderValue", () => {
  it("round-trips any string through the Base64 sentinel", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme" }), (s) => {
        expect(decodeHeaderValue(b64(s))).toBe(s);
      }),
    );
  });

  it("passes plain values and refuses non-canonical Base64", () => {
    expect(decodeHeaderValue("search_articles")).toBe("search_articles");
    expect(decodeHeaderValue("=?base64?YQ?=")).toBeUndefined();
    expect(decodeHeaderValue("=?base64?/w==?=")).toBeUndefined(); // 0xff is not UTF-8
  });
});
