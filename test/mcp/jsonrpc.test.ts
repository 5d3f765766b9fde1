import { describe, expect, it } from "vitest";
import {
  classifyMessage,
  decodeUtf8,
  errorResponse,
  jsonDepth,
  parseJsonRpcBody,
  parseJsonRpcText,
  type ParsedBody,
} from "../../ext-service/src/mcp/jsonrpc.js";
import { requestTarget } from "../../ext-service/src/mcp/methods.js";

const limits = { maxJsonDepth: 8, maxBatchSize: 3 };
const parse = (text: string) => parseJsonRpcText(text, limits);
const bytes = (...b: number[]) => new Uint8Array(b);
const failure = (p: ParsedBody) => (p.ok ? "ok" : p.reason);

describe("JSON-RPC: messages", () => {
  it("reads a request", () => {
    const text =
      '{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"search","arguments":{"q":"x"}}}';
    const p = parse(text);
    expect(p).toEqual({
      ok: true,
      batch: false,
      messages: [
        {
          kind: "request",
          id: 7,
          method: "tools/call",
          params: { name: "search", arguments: { q: "x" } },
          raw: JSON.parse(text),
        },
      ],
    });
  });

  it("reads string ids, including the empty string", () => {
    for (const id of ["abc", "", "0"]) {
      const p = parse(JSON.stringify({ jsonrpc: "2.0", id, method: "ping" }));
      expect(p.ok && p.messages[0]).toMatchObject({ kind: "request", id });
    }
  });

  it("reads a notification (no id) and keeps params", () => {
    const p = parse('{"jsonrpc":"2.0","method":"notifications/initialized"}');
    expect(p.ok && p.messages[0]).toMatchObject({
      kind: "notification",
      method: "notifications/initialized",
    });
    const q = parse(
      '{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":5}}',
    );
    expect(q.ok && q.messages[0]).toMatchObject({
      kind: "notification",
      params: { progressToken: 1, progress: 5 },
    });
  });

  it("reads client responses to sampling and elicitation requests", () => {
    const sampling = {
      jsonrpc: "2.0",
      id: 0,
      result: { role: "assistant", content: { type: "text", text: "hi" }, model: "m", stopReason: "endTurn" },
    };
    const elicitation = {
      jsonrpc: "2.0",
      id: "elicit-1",
      result: { action: "accept", content: { name: "x" } },
    };
    const declined = {
      jsonrpc: "2.0",
      id: 3,
      error: { code: -1, message: "User rejected sampling request" },
    };
    for (const m of [sampling, elicitation]) {
      const p = parse(JSON.stringify(m));
      expect(p.ok && p.messages[0]).toEqual({ kind: "response", id: m.id, result: m.result, raw: m });
    }
    const p = parse(JSON.stringify(declined));
    expect(p.ok && p.messages[0]).toEqual({
      kind: "response",
      id: 3,
      error: { code: -1, message: "User rejected sampling request", data: undefined },
      raw: declined,
    });
  });

  it("accepts result: null and an error response with id null", () => {
    expect(failure(parse('{"jsonrpc":"2.0","id":1,"result":null}'))).toBe("ok");
    expect(
      failure(parse('{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}')),
    ).toBe("ok");
  });

  it("keeps positional params but does not expose them as MCP params", () => {
    const p = parse('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["search"]}');
    expect(p.ok && p.messages[0]).toMatchObject({ kind: "request", params: undefined });
    expect(p.ok && p.messages[0]!.raw.params).toEqual(["search"]);
  });
});

describe("JSON-RPC: batches", () => {
  it("reads a mixed batch in order", () => {
    const p = parse(
      '[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":0}},{"jsonrpc":"2.0","id":0,"result":{}}]',
    );
    expect(p.ok && p.batch).toBe(true);
    expect(p.ok && p.messages.map((m) => m.kind)).toEqual(["request", "notification", "response"]);
  });

  it("a one-element batch is still a batch", () => {
    const p = parse('[{"jsonrpc":"2.0","id":1,"method":"ping"}]');
    expect(p.ok && p.batch).toBe(true);
  });

  it("refuses an empty batch and a batch over the limit", () => {
    expect(parse("[]")).toEqual({ ok: false, reason: "batch_empty", detail: "empty batch", id: null });
    const four = JSON.stringify([1, 2, 3, 4].map((id) => ({ jsonrpc: "2.0", id, method: "ping" })));
    expect(parse(four)).toEqual({
      ok: false,
      reason: "batch_too_large",
      detail: "4 messages, limit 3",
      id: null,
    });
  });

  it("refuses the whole batch when one member is not JSON-RPC, naming its id when readable", () => {
    const p = parse('[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"1.0","id":2,"method":"ping"}]');
    expect(p).toEqual({ ok: false, reason: "invalid_request", detail: `'jsonrpc' must be "2.0"`, id: 2 });
    expect(failure(parse('[{"jsonrpc":"2.0","id":1,"method":"ping"}, 5]'))).toBe("invalid_request");
    expect(failure(parse("[[]]"))).toBe("invalid_request");
  });
});

describe("JSON-RPC: bad input", () => {
  const invalid: [string, string, string][] = [
    ["not JSON", "{", "parse_error"],
    ["trailing garbage", '{"jsonrpc":"2.0","id":1,"method":"ping"} x', "parse_error"],
    [
      "two objects",
      '{"jsonrpc":"2.0","id":1,"method":"ping"}{"jsonrpc":"2.0","id":2,"method":"ping"}',
      "parse_error",
    ],
    ["empty body", "", "parse_error"],
    ["single quotes", "{'jsonrpc':'2.0'}", "parse_error"],
    ["a string", '"hello"', "invalid_request"],
    ["a number", "42", "invalid_request"],
    ["null", "null", "invalid_request"],
    ["missing jsonrpc", '{"id":1,"method":"ping"}', "invalid_request"],
    ["jsonrpc 1.0", '{"jsonrpc":"1.0","id":1,"method":"ping"}', "invalid_request"],
    ["jsonrpc as number", '{"jsonrpc":2.0,"id":1,"method":"ping"}', "invalid_request"],
    ["empty method", '{"jsonrpc":"2.0","id":1,"method":""}', "invalid_request"],
    ["numeric method", '{"jsonrpc":"2.0","id":1,"method":5}', "invalid_request"],
    ["params a string", '{"jsonrpc":"2.0","id":1,"method":"ping","params":"x"}', "invalid_request"],
    ["params null", '{"jsonrpc":"2.0","id":1,"method":"ping","params":null}', "invalid_request"],
    ["id null on a request", '{"jsonrpc":"2.0","id":null,"method":"ping"}', "invalid_request"],
    ["id an object", '{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}', "invalid_request"],
    ["id an array", '{"jsonrpc":"2.0","id":[1],"method":"ping"}', "invalid_request"],
    ["id a boolean", '{"jsonrpc":"2.0","id":true,"method":"ping"}', "invalid_request"],
    ["request with result", '{"jsonrpc":"2.0","id":1,"method":"ping","result":{}}', "invalid_request"],
    [
      "result and error",
      '{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"x"}}',
      "invalid_request",
    ],
    ["neither result nor error", '{"jsonrpc":"2.0","id":1}', "invalid_request"],
    ["response without id", '{"jsonrpc":"2.0","result":{}}', "invalid_request"],
    ["response with object id", '{"jsonrpc":"2.0","id":{},"result":{}}', "invalid_request"],
    ["error without code", '{"jsonrpc":"2.0","id":1,"error":{"message":"x"}}', "invalid_request"],
    ["error code a string", '{"jsonrpc":"2.0","id":1,"error":{"code":"1","message":"x"}}', "invalid_request"],
    ["error a string", '{"jsonrpc":"2.0","id":1,"error":"bad"}', "invalid_request"],
  ];
  for (const [name, text, reason] of invalid) {
    it(name, () => {
      const p = parse(text);
      expect(p.ok).toBe(false);
      expect(failure(p)).toBe(reason);
    });
  }

  it("refuses an object naming a key twice, anywhere, however the key is written (F7)", () => {
    for (const text of [
      '{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"ping"}',
      '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","n\\u0061me":"b"}}',
      '[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"x","params":{"a":{"b":1,"b":2}}}]',
    ]) {
      expect(parse(text), text).toMatchObject({ ok: false, reason: "invalid_request" });
    }
    expect(parse('{"jsonrpc":"2.0","id":1,"method":"a:b","params":{"k":"\\":","j":1}}').ok).toBe(true);
  });

  it("reports the id of an invalid message when it can be read", () => {
    expect(parse('{"jsonrpc":"2.0","id":"x","method":""}')).toMatchObject({ ok: false, id: "x" });
    expect(parse('{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}')).toMatchObject({ ok: false, id: null });
  });

  it("refuses bytes that are not UTF-8", () => {
    const prefix = [...new TextEncoder().encode('{"jsonrpc":"2.0","id":1,"method":"')];
    const suffix = [...new TextEncoder().encode('"}')];
    const cases = {
      "lone continuation byte": [0x80],
      "truncated sequence": [0xe2, 0x82],
      "overlong slash": [0xc0, 0xaf],
      "UTF-16 surrogate": [0xed, 0xa0, 0x80],
      "beyond U+10FFFF": [0xf4, 0x90, 0x80, 0x80],
      "0xFF": [0xff],
    };
    for (const [name, bad] of Object.entries(cases)) {
      const p = parseJsonRpcBody(bytes(...prefix, ...bad, ...suffix), limits);
      expect(p, name).toEqual({
        ok: false,
        reason: "invalid_utf8",
        detail: "invalid UTF-8 byte sequence",
        id: null,
      });
    }
    expect(decodeUtf8(bytes(0xf0, 0x9f, 0x98, 0x80))).toBe("😀");
  });

  it("accepts UTF-8 with a byte order mark", () => {
    const body = new TextEncoder().encode('\ufeff{"jsonrpc":"2.0","id":1,"method":"ping"}');
    expect(body[0]).toBe(0xef);
    expect(failure(parseJsonRpcBody(body, limits))).toBe("ok");
  });

  it("refuses nesting deeper than the limit before parsing", () => {
    const nest = (n: number) =>
      `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":${"[".repeat(n)}${"]".repeat(n)}}`;
    // The message object is depth 1, so params may nest 7 more levels under a limit of 8.
    expect(failure(parse(nest(7)))).toBe("ok");
    expect(parse(nest(8))).toEqual({
      ok: false,
      reason: "json_too_deep",
      detail: "nesting deeper than 8",
      id: null,
    });
    // A hostile body far deeper than JSON.parse could handle is refused cheaply.
    expect(failure(parseJsonRpcText("[".repeat(1_000_000), limits))).toBe("json_too_deep");
  });

  it("does not count brackets inside strings, including after escaped quotes and backslashes", () => {
    const inString = JSON.stringify({
      jsonrpc: "2.0",
      id: 1,
      method: "ping",
      params: { s: "[[[[[[[[[[{{{{{{{{" },
    });
    expect(failure(parse(inString))).toBe("ok");
    const escaped = JSON.stringify({
      jsonrpc: "2.0",
      id: 1,
      method: "ping",
      params: { s: '\\"[[[[[[[[[[[[\\' },
    });
    expect(escaped).toContain('\\\\\\"[[[');
    expect(failure(parse(escaped))).toBe("ok");
    expect(jsonDepth('["\\\\", [[]]]')).toBe(3);
    expect(jsonDepth('["\\"[", [[]]]')).toBe(3);
    expect(jsonDepth('{"a\\"{{{": [1]}')).toBe(2);
  });
});

describe("jsonDepth", () => {
  it("counts containers", () => {
    expect(jsonDepth("1")).toBe(0);
    expect(jsonDepth('"[{"')).toBe(0);
    expect(jsonDepth("[]")).toBe(1);
    expect(jsonDepth("{}")).toBe(1);
    expect(jsonDepth('[{"a":[1,{"b":{}}]},[]]')).toBe(5);
    expect(jsonDepth("[[],[],[[]]]")).toBe(3);
  });

  it("stops early once over the limit", () => {
    expect(jsonDepth("[".repeat(100), 10)).toBe(11);
  });
});

describe("MCP targets", () => {
  it("names the tool, prompt or resource a request acts on", () => {
    expect(requestTarget("tools/call", { name: "search" })).toEqual({ kind: "tools", name: "search" });
    expect(requestTarget("tools/call", { name: 5 })).toEqual({ kind: "tools", name: undefined });
    expect(requestTarget("tools/call", undefined)).toEqual({ kind: "tools", name: undefined });
    expect(requestTarget("prompts/get", { name: "p" })).toEqual({ kind: "prompts", name: "p" });
    for (const m of ["resources/read", "resources/subscribe", "resources/unsubscribe"]) {
      expect(requestTarget(m, { uri: "file:///a" })).toEqual({ kind: "resources", name: "file:///a" });
    }
    expect(requestTarget("tools/list", {})).toBeUndefined();
  });
});

describe("errorResponse", () => {
  it("builds a JSON-RPC error with optional data", () => {
    expect(errorResponse(1, -32602, "Unknown tool")).toEqual({
      jsonrpc: "2.0",
      id: 1,
      error: { code: -32602, message: "Unknown tool" },
    });
    expect(errorResponse(null, -32700, "x", { reason: "parse_error" })).toEqual({
      jsonrpc: "2.0",
      id: null,
      error: { code: -32700, message: "x", data: { reason: "parse_error" } },
    });
  });

  it("classifies its own output as a response", () => {
    expect(classifyMessage(errorResponse("a", 1, "m"))).toMatchObject({ kind: "response", id: "a" });
  });
});
