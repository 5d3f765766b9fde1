import { Ajv } from "ajv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadEngine } from "../../ext-service/src/config/compile.js";
import type { PolicyEngine } from "../../ext-service/src/policy/engine.js";
import { answerPost, REFERENCE_TOOLS } from "../../bench/reference-server.js";
import { BENCH_AGENT, prepareWorkdir, type Workdir } from "../../bench/setup.js";
import { PROTOCOL_VERSION, WORKLOADS, WORKLOAD_IDS } from "../../bench/workloads.js";

/** The generated bench config, run through the real policy core: every workload must pass. */

let work: Workdir;
let engine: PolicyEngine;
const encoder = new TextEncoder();

beforeAll(async () => {
  work = await prepareWorkdir("http://127.0.0.1:9");
  engine = loadEngine(work.configFile).engine;
  // What the gateway's own tools/list fetch records before a first call (pins verified before
  // the first call, trial B4): the reference servers offer exactly the pinned tools.
  for (const server of ["ref", "ref-sse"]) {
    expect(
      engine.security.recordToolList(
        server,
        REFERENCE_TOOLS.map((tool) => ({ ...tool })),
      ),
    ).toEqual({
      drifted: [],
      unlisted: [],
    });
  }
});

afterAll(() => work.remove());

/** Arguments that satisfy a reference tool's input schema (schema checks are part of the policies). */
function validArguments(schema: Record<string, unknown>): Record<string, unknown> {
  const props = (schema.properties ?? {}) as Record<string, Record<string, unknown>>;
  const out: Record<string, unknown> = {};
  for (const name of (schema.required ?? []) as string[]) {
    const p = props[name]!;
    if (Array.isArray(p.enum)) out[name] = p.enum[0];
    else if (p.type === "integer") out[name] = p.minimum ?? 1;
    else if (typeof p.pattern === "string") out[name] = "2026-W10";
    else out[name] = "bench value";
  }
  return out;
}

async function admitted(server: string) {
  const exchange = engine.newExchange("POST");
  const headers = {
    authorization: `Bearer ${work.token}`,
    "content-type": "application/json",
    "mcp-protocol-version": PROTOCOL_VERSION,
  };
  const admission = await engine.admit({ method: "POST", path: `/mcp/${server}`, headers }, exchange);
  if (!admission.ok) throw new Error(`not admitted: ${admission.reply.body}`);
  return { exchange, headers, principal: admission.principal };
}

describe("bench workdir", () => {
  it("signs a token the gateway accepts for the bench agent", async () => {
    const { principal } = await admitted("ref");
    expect(principal.agent).toBe(BENCH_AGENT);
    expect(principal.roles).toEqual(["bench"]);
  });

  it("refuses requests without the token (auth is really on)", async () => {
    const exchange = engine.newExchange("POST");
    const admission = await engine.admit({ method: "POST", path: "/mcp/ref", headers: {} }, exchange);
    expect(admission.ok).toBe(false);
  });

  it.each(WORKLOAD_IDS)("forwards the %s request and passes its answer unchanged", async (id) => {
    const w = WORKLOADS[id];
    const { exchange, headers } = await admitted(w.server);
    const body = w.requestBody(1_000_001);
    expect(engine.evaluateRequestBody(exchange, encoder.encode(body), headers).action).toBe("forward");
    const answer = answerPost(body, w.responseType === "text/event-stream");
    const transformer = engine.responseTransformer(exchange, answer.contentType, answer.status);
    const bytes = encoder.encode(answer.body);
    if (w.responseType === "application/json") {
      expect(transformer.transformJson(bytes)).toBeUndefined();
    } else {
      const out = Buffer.concat([
        transformer.push(bytes.subarray(0, 1000)),
        transformer.push(bytes.subarray(1000)),
        transformer.end(),
      ]);
      expect(out.toString("utf8")).toBe(answer.body);
    }
  });

  it.each(["ref", "ref-sse"])("allows every one of the 50 tools on %s", async (server) => {
    const ajv = new Ajv({ strict: true });
    for (const tool of REFERENCE_TOOLS) {
      const args = validArguments(tool.inputSchema);
      expect(ajv.validate(tool.inputSchema, args), `${tool.name} arguments`).toBe(true);
      const { exchange, headers } = await admitted(server);
      const body = JSON.stringify({
        jsonrpc: "2.0",
        id: 1,
        method: "tools/call",
        params: { name: tool.name, arguments: args },
      });
      const verdict = engine.evaluateRequestBody(exchange, encoder.encode(body), headers);
      expect(verdict.action, tool.name).toBe("forward");
    }
  });

  it("still denies a tool the reference server does not have", async () => {
    const { exchange, headers } = await admitted("ref");
    const body = JSON.stringify({
      jsonrpc: "2.0",
      id: 1,
      method: "tools/call",
      params: { name: "drop_tables" },
    });
    const verdict = engine.evaluateRequestBody(exchange, encoder.encode(body), headers);
    expect(verdict.action).toBe("reply");
  });
});
