import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { loadEngine } from "../../ext-service/src/config/compile.js";
import { ConfigError } from "../../ext-service/src/config/load.js";
import {
  canonicalJson,
  changedFields,
  toolDefinition,
  toolPin,
} from "../../ext-service/src/policy/canonical.js";
import { DEMO_TOOLS, makeEngine, roundTrip, toolCall } from "./helpers.js";

describe("canonical JSON (RFC 8785 style)", () => {
  it("sorts keys by UTF-16 code units, drops whitespace and formats numbers as JSON does", () => {
    expect(canonicalJson({ b: 1, a: [true, null, "x"], "€": 0, "\u00e9": 2, A: 1e21, z: 0.1 + 0.2 })).toBe(
      '{"A":1e+21,"a":[true,null,"x"],"b":1,"z":0.30000000000000004,"é":2,"€":0}',
    );
    expect(canonicalJson({ s: 'line\nbreak "q" \u2028' })).toBe('{"s":"line\\nbreak \\"q\\" \u2028"}');
    expect(() => canonicalJson({ n: Number.NaN })).toThrow();
  });

  it("does not depend on key order", () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string(), fc.jsonValue()), (obj) => {
        const reversed = Object.fromEntries(Object.entries(obj).reverse());
        expect(canonicalJson(reversed)).toBe(canonicalJson(obj));
        expect(JSON.parse(canonicalJson(obj))).toEqual(JSON.parse(JSON.stringify(obj)));
      }),
    );
  });

  it("pins the pinned fields only, treating an empty description as absent", () => {
    const tool = { name: "t", description: "", inputSchema: { type: "object" }, _meta: { x: 1 }, icons: [] };
    expect(toolDefinition(tool)).toEqual({ name: "t", inputSchema: { type: "object" } });
    expect(toolPin(tool)).toBe(toolPin({ inputSchema: { type: "object" }, name: "t" }));
    expect(toolPin({ ...tool, description: "x" })).not.toBe(toolPin(tool));
    expect(
      changedFields(tool, { ...tool, title: "T", inputSchema: { type: "object", properties: {} } }),
    ).toEqual(["title", "inputSchema"]);
  });
});

describe("drift at runtime", () => {
  const changed = { ...DEMO_TOOLS[0]!, description: "Search articles. Results are sorted by relevance." };
  const list = (id: number, tools: unknown[]) => ({ jsonrpc: "2.0", id, result: { tools } });
  const listCall = (id: number) => ({ jsonrpc: "2.0", id, method: "tools/list" });

  it("drops a drifted tool, refuses calls to it until the definition matches again", async () => {
    const engine = makeEngine();
    const first = await roundTrip(engine, listCall(1), list(1, [changed, DEMO_TOOLS[1]]));
    expect((first.out!.result as { tools: { name: string }[] }).tools.map((t) => t.name)).toEqual([
      "create_ticket",
    ]);
    expect(first.exchange).toMatchObject({
      decision: "allow",
      reasons: ["tool_pin_mismatch"],
      counters: { "tool_drift:search_articles": 1 },
    });
    expect(engine.security.drift.snapshot()).toEqual({
      kb: {
        search_articles: expect.objectContaining({
          fields: ["description"],
          expected: toolPin(DEMO_TOOLS[0]!),
        }),
      },
    });

    const call = await import("./helpers.js").then((h) =>
      h.request(engine, toolCall(2, "search_articles", { query: "x" })),
    );
    expect(call.reply).toMatchObject({
      id: 2,
      error: {
        code: -32010,
        message: expect.stringContaining("search_articles (description changed)"),
        data: { reason: "tool_pin_mismatch" },
      },
    });

    const again = await roundTrip(engine, listCall(3), list(3, DEMO_TOOLS));
    expect(again.out).toBeUndefined();
    expect(engine.security.drift.snapshot()).toEqual({});
    expect(
      (
        await roundTrip(engine, toolCall(4, "search_articles", { query: "x" }), {
          jsonrpc: "2.0",
          id: 4,
          result: { content: [] },
        })
      ).exchange.decision,
    ).toBe("allow");
  });

  it("only counts drift when enforcement is off", async () => {
    const engine = makeEngine({ security: { pins: { enforce: false } } });
    const r = await roundTrip(engine, listCall(1), list(1, [changed]));
    expect(r.out).toBeUndefined();
    expect(r.exchange.reasons).toEqual(["tool_pin_mismatch"]);
    const call = await import("./helpers.js").then((h) =>
      h.request(engine, toolCall(2, "search_articles", { query: "x" })),
    );
    expect(call.forwarded).toBe(true);
  });
});

describe("pins recorded in the registry", () => {
  const dir = mkdtempSync(join(tmpdir(), "mcp-pin-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  function write(pin: string): string {
    const config = join(dir, "gateway.yaml");
    writeFileSync(config, "registry: registry.yaml\nauth: { mode: optional }\n");
    writeFileSync(
      join(dir, "registry.yaml"),
      [
        'version: "1"',
        "servers:",
        "  - name: kb",
        '    upstreams: ["http://127.0.0.1:9/mcp"]',
        "    tools:",
        "      - name: add",
        "        description: Adds two numbers.",
        `        pin: ${pin}`,
        "",
      ].join("\n"),
    );
    return config;
  }

  it("loads when the recorded pin matches the definition", () => {
    const pin = toolPin({ name: "add", description: "Adds two numbers.", inputSchema: { type: "object" } });
    expect(loadEngine(write(pin)).engine.security.pins.expected("kb", "add")).toMatchObject({
      pin,
      recorded: true,
    });
  });

  it("refuses a registry whose definition was edited without re-pinning, naming the file and path", () => {
    const config = write(`sha256:${"0".repeat(64)}`);
    let error: unknown;
    try {
      loadEngine(config);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const [problem] = (error as ConfigError).problems;
    expect(problem).toMatchObject({ file: join(dir, "registry.yaml"), path: "servers[0].tools[0].pin" });
    expect(problem!.message).toContain("does not match the definition recorded in the registry");
  });
});

describe("hostile definitions", () => {
  it("treats a live definition too deep to canonicalise as drift instead of failing", async () => {
    let deep: Record<string, unknown> = { type: "string" };
    for (let i = 0; i < 200; i++) deep = { type: "object", properties: { x: deep } };
    const engine = makeEngine();
    const { out, exchange } = await roundTrip(
      engine,
      { jsonrpc: "2.0", id: 1, method: "tools/list" },
      { jsonrpc: "2.0", id: 1, result: { tools: [{ ...DEMO_TOOLS[0]!, inputSchema: deep }, DEMO_TOOLS[1]] } },
    );
    expect((out!.result as { tools: { name: string }[] }).tools.map((t) => t.name)).toEqual([
      "create_ticket",
    ]);
    expect(exchange.reasons).toEqual(["tool_pin_mismatch"]);
  });
});
