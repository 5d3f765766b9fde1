import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { classifyMessage } from "../../ext-service/src/mcp/jsonrpc.js";
import { SseParser } from "../../ext-service/src/mcp/sse.js";
import { makeEngine, request, toolCall } from "./helpers.js";

/**
 * Redaction is per SSE event after the transformer assembles whole events, so where the body is
 * split into chunks must not matter: any split redacts exactly as the whole body does, a secret
 * split across chunks is still caught, and every emitted event is valid JSON-RPC.
 */

const SECRETS = [
  "AKIAIOSFODNN7EXAMPLE",
  "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",
  "xoxb-123456789012-aB3dE5fG7hJ9kL1mN3pQ5rS7",
  "sk_live_aB3dE5fG7hJ9kL1mN3pQ5rS7t",
  "alice@example.com",
  "4111 1111 1111 1111",
  "GB82 WEST 1234 5698 7654 32",
  "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
];
const WORDS = [
  "report",
  "the",
  "quarter",
  "naïve",
  "café",
  "🎉",
  "ticket",
  "42",
  "résumé",
  "ok",
  "\n",
  '"quoted"',
  "tab\tbed",
];

const encoder = new TextEncoder();
const decoder = new TextDecoder();

const eventArb = fc.record({
  kind: fc.constantFrom("result", "log", "comment"),
  parts: fc.array(fc.oneof(fc.constantFrom(...WORDS), fc.constantFrom(...SECRETS)), {
    minLength: 1,
    maxLength: 12,
  }),
  multiline: fc.boolean(),
});

function sseBody(events: { kind: string; parts: string[]; multiline: boolean }[]): string {
  let id = 0;
  return events
    .map((e) => {
      const text = e.parts.join(" ");
      if (e.kind === "comment") return ": keep-alive\n\n";
      const message =
        e.kind === "result"
          ? {
              jsonrpc: "2.0",
              id: (id++ % 4) + 1,
              result: { content: [{ type: "text", text }], structuredContent: { text } },
            }
          : { jsonrpc: "2.0", method: "notifications/message", params: { level: "info", data: { text } } };
      const json = JSON.stringify(message, null, e.multiline ? 1 : undefined);
      return `event: message\n${json
        .split("\n")
        .map((l) => `data: ${l}`)
        .join("\n")}\n\n`;
    })
    .join("");
}

async function run(body: Uint8Array, cuts: number[]) {
  const engine = makeEngine();
  const batch = [1, 2, 3, 4].map((i) => toolCall(i, "search_articles", { query: `q${i}` }));
  const { exchange, forwarded } = await request(engine, batch);
  expect(forwarded).toBe(true);
  const t = engine.responseTransformer(exchange, "text/event-stream", 200);
  const points = [...new Set(cuts.map((c) => c % (body.length + 1)))].sort((a, b) => a - b);
  const outs: Uint8Array[] = [];
  let prev = 0;
  for (const p of [...points, body.length]) {
    outs.push(t.push(body.subarray(prev, p)));
    prev = p;
  }
  outs.push(t.end());
  return { text: decoder.decode(Buffer.concat(outs)), counters: exchange.counters };
}

describe("DLP over SSE streams", () => {
  it("redacts the same whatever the chunking, and every event stays valid JSON-RPC", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(eventArb, { minLength: 1, maxLength: 6 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        async (events, cuts) => {
          const body = encoder.encode(sseBody(events));
          const whole = await run(body, []);
          const split = await run(body, cuts);
          expect(split.text).toBe(whole.text);
          expect(split.counters).toEqual(whole.counters);
          for (const s of SECRETS) expect(whole.text).not.toContain(s);
          const parser = new SseParser();
          const parsed = parser.push(whole.text);
          expect(parser.end()).toBe("");
          for (const ev of parsed) {
            if (ev.data === undefined) continue;
            expect(typeof classifyMessage(JSON.parse(ev.data))).toBe("object");
          }
        },
      ),
      { numRuns: 150 },
    );
  });

  it("catches a secret split across two chunks", async () => {
    const body = encoder.encode(
      sseBody([{ kind: "result", parts: ["key", "AKIAIOSFODNN7EXAMPLE", "end"], multiline: false }]),
    );
    const at = Buffer.from(body).indexOf("AKIAIOSF") + 4;
    const { text, counters } = await run(body, [at]);
    expect(text).not.toContain("AKIAIOSFODNN7EXAMPLE");
    expect(text).toContain("[REDACTED:aws_access_key_id]");
    expect(counters["redacted:aws_access_key_id"]).toBe(2); // content text and structuredContent
  });
});

describe("DLP over JSON bodies", () => {
  it("keeps responses valid JSON-RPC and removes every secret", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.array(fc.oneof(fc.constantFrom(...WORDS), fc.constantFrom(...SECRETS)), { maxLength: 10 }),
          {
            minLength: 1,
            maxLength: 4,
          },
        ),
        async (texts) => {
          const engine = makeEngine();
          const batch = texts.map((_, i) => toolCall(i + 1, "search_articles", { query: "q" }));
          const { exchange } = await request(engine, batch);
          const answers = texts.map((parts, i) => ({
            jsonrpc: "2.0",
            id: i + 1,
            result: { content: parts.map((p) => ({ type: "text", text: p })), isError: false },
          }));
          const out = engine
            .responseTransformer(exchange, "application/json", 200)
            .transformJson(encoder.encode(JSON.stringify(answers)));
          const text = out ? decoder.decode(out) : JSON.stringify(answers);
          const value = JSON.parse(text) as unknown[];
          expect(value).toHaveLength(texts.length);
          for (const m of value) expect(typeof classifyMessage(m)).toBe("object");
          for (const s of SECRETS) expect(text).not.toContain(s);
        },
      ),
      { numRuns: 100 },
    );
  });
});
