import { describe, expect, it } from "vitest";
import { accepts, checkMcpMedia, isJsonContentType } from "../../ext-service/src/mcp/media.js";

describe("MCP media-type rules", () => {
  it("reads Accept lists with parameters, wildcards and q=0", () => {
    expect(accepts("application/json, text/event-stream", "text/event-stream")).toBe(true);
    expect(accepts("text/event-stream;q=0.5", "text/event-stream")).toBe(true);
    expect(accepts("*/*", "application/json")).toBe(true);
    expect(accepts("text/*", "text/event-stream")).toBe(true);
    expect(accepts("text/*", "application/json")).toBe(false);
    expect(accepts("*/*, text/event-stream;q=0", "text/event-stream")).toBe(false);
    expect(accepts("application/json", "text/event-stream")).toBe(false);
    expect(accepts(undefined, "application/json")).toBe(false);
    expect(accepts("", "application/json")).toBe(false);
    expect(accepts("garbage", "application/json")).toBe(false);
  });

  it("takes JSON in UTF-8 only", () => {
    expect(isJsonContentType("application/json")).toBe(true);
    expect(isJsonContentType("Application/JSON; charset=UTF-8")).toBe(true);
    expect(isJsonContentType('application/json; charset="utf-8"')).toBe(true);
    expect(isJsonContentType("application/json; charset=latin1")).toBe(false);
    expect(isJsonContentType("text/plain")).toBe(false);
    expect(isJsonContentType("application/jsonx")).toBe(false);
    expect(isJsonContentType(undefined)).toBe(false);
  });

  it("decides per HTTP method", () => {
    const both = "application/json, text/event-stream";
    expect(checkMcpMedia("POST", { "content-type": "application/json", accept: both })).toBeUndefined();
    expect(checkMcpMedia("POST", { "content-type": "text/plain", accept: both })).toBe(
      "unsupported_media_type",
    );
    expect(checkMcpMedia("POST", { accept: both })).toBe("unsupported_media_type");
    expect(checkMcpMedia("POST", { "content-type": "application/json", accept: "application/json" })).toBe(
      "not_acceptable",
    );
    expect(checkMcpMedia("POST", { "content-type": "application/json" })).toBe("not_acceptable");
    expect(checkMcpMedia("GET", { accept: "text/event-stream" })).toBeUndefined();
    expect(checkMcpMedia("GET", { accept: "application/json" })).toBe("not_acceptable");
    expect(checkMcpMedia("GET", {})).toBe("not_acceptable");
    expect(checkMcpMedia("DELETE", {})).toBeUndefined();
  });

  it("gives the same verdict for a header value seen again, whatever came between", () => {
    const both = "application/json, text/event-stream";
    const sequence: [string, Record<string, string>, string | undefined][] = [
      ["POST", { "content-type": "application/json", accept: both }, undefined],
      ["POST", { "content-type": "application/json", accept: both }, undefined],
      ["POST", { "content-type": "text/plain", accept: both }, "unsupported_media_type"],
      ["POST", { "content-type": "application/json", accept: "application/json" }, "not_acceptable"],
      ["POST", { "content-type": "application/json", accept: "application/json" }, "not_acceptable"],
      ["POST", { "content-type": "application/json", accept: both }, undefined],
      ["GET", { accept: both }, undefined],
      ["GET", { accept: "application/json" }, "not_acceptable"],
      ["GET", { accept: both }, undefined],
      ["POST", { "content-type": "text/plain", accept: both }, "unsupported_media_type"],
    ];
    for (const [method, headers, expected] of sequence) expect(checkMcpMedia(method, headers)).toBe(expected);
  });
});
