import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type {
  EnvoyExchange,
  EnvoyRoleClient,
  HttpRequestSpec,
  Upstream,
} from "../../ext-service/src/envoy/envoy-role-client.js";
import { MCP_POST_HEADERS, jsonResult, startGateway, toolsCall, type Gateway } from "./harness.js";

/**
 * Issue 10 / review W6: every HTTP request that reaches Envoy's listener yields exactly one audit
 * record and one mcp_gateway_requests_total increment, whichever filter answered it: ext_authz
 * (denial, RFC 9728 document), local_ratelimit, the buffer limit, ext_proc, or the upstream.
 * Run through the Envoy model, so local replies take ext_proc's encoder path as in Envoy 1.38.
 */

let gw: Gateway;
let envoy: EnvoyRoleClient;
let token: string;

beforeAll(async () => {
  gw = await startGateway();
  token = await gw.token("support-bot");
  envoy = gw.newClient({
    chain: {
      // Below the gateway's own limit (4096), as a misconfigured listener would be.
      bufferLimitBytes: 1024,
      rateLimit: {
        descriptorHeader: "x-mcp-agent",
        buckets: { "research-bot": { maxTokens: 1, tokensPerFill: 1, fillIntervalMs: 60_000 } },
        fallback: { maxTokens: 1000, tokensPerFill: 1000, fillIntervalMs: 1000 },
      },
    },
  });
});
afterAll(async () => {
  await gw?.close();
});

const answer: Upstream = () => ({
  status: 200,
  headers: { "content-type": "application/json" },
  body: jsonResult(1, { content: [] }),
});

function post(body: string, bearer: string | null = token, server = "tickets"): HttpRequestSpec {
  return {
    method: "POST",
    path: `/mcp/${server}`,
    headers: { ...MCP_POST_HEADERS, ...(bearer ? { authorization: `Bearer ${bearer}` } : {}) },
    body,
  };
}

async function requestsTotal(): Promise<number> {
  const metric = await gw.service.metrics.requests.get();
  return metric.values.reduce((sum, v) => sum + v.value, 0);
}

/** Runs one request; returns it with the audit records of its id and the counter's increase. */
async function once(req: HttpRequestSpec, upstream: Upstream = answer) {
  const before = await requestsTotal();
  const r: EnvoyExchange = await envoy.exchange(req, upstream);
  const requestId = r.authzMetadata?.request_id as string;
  expect(requestId).toMatch(/^[0-9a-f-]{36}$/);
  // Records are written at the end of the event-loop turn (finishSoon); give stragglers time.
  await new Promise((resolve) => setTimeout(resolve, 30));
  return { r, records: gw.logs.auditsFor(requestId), counted: (await requestsTotal()) - before };
}

describe("one audit record and one request count per HTTP request on the Envoy path", () => {
  it("ext_authz allows, the upstream answers: ext_proc writes the record", async () => {
    const { r, records, counted } = await once(post(JSON.stringify(toolsCall(1, "list_tickets"))));
    expect(r.answeredBy).toBe("upstream");
    expect(records).toEqual([
      expect.objectContaining({ decision: "allow", status: 200, agent: "support-bot" }),
    ]);
    expect(counted).toBe(1);
  });

  it("ext_authz denies: its record only, though the 401 also ran through ext_proc", async () => {
    const { r, records, counted } = await once(post(JSON.stringify(toolsCall(1, "list_tickets")), null));
    expect(r.answeredBy).toBe("ext_authz");
    expect(r.response.status).toBe(401);
    expect(r.stats.streams_started).toBe(1);
    expect(records).toEqual([expect.objectContaining({ status: 401, reasons: ["token_missing"] })]);
    expect(counted).toBe(1);
  });

  it("the RFC 9728 document: one record", async () => {
    const { r, records, counted } = await once({
      method: "GET",
      path: "/.well-known/oauth-protected-resource/mcp/tickets",
    });
    expect(r.response.status).toBe(200);
    expect(records).toHaveLength(1);
    expect(counted).toBe(1);
  });

  it("local_ratelimit answers 429: ext_proc writes one rate_limited record with the agent", async () => {
    const research = await gw.token("research-bot");
    const first = await once(post(JSON.stringify(toolsCall(1, "search_articles")), research, "kb"));
    expect(first.r.response.status).not.toBe(429);
    const { r, records, counted } = await once(
      post(JSON.stringify(toolsCall(2, "search_articles")), research, "kb"),
    );
    expect(r.answeredBy).toBe("local_ratelimit");
    expect(r.response.status).toBe(429);
    expect(records).toEqual([
      expect.objectContaining({
        agent: "research-bot",
        server: "kb",
        http_method: "POST",
        status: 429,
        decision: "deny",
        reasons: ["rate_limited"],
      }),
    ]);
    expect(counted).toBe(1);
  });

  it("the buffer limit answers 413 while the body is buffered: one body_too_large record", async () => {
    const big = JSON.stringify(toolsCall(1, "get_ticket", { id: "x".repeat(2000) }));
    const { r, records, counted } = await once(post(big));
    expect(r.answeredBy).toBe("envoy");
    expect(r.response.status).toBe(413);
    expect(records).toEqual([
      expect.objectContaining({ status: 413, reasons: ["body_too_large"], agent: "support-bot" }),
    ]);
    expect(counted).toBe(1);
  });

  it("ext_proc refuses the body itself: one record", async () => {
    const { r, records, counted } = await once(post(JSON.stringify(toolsCall(1, "delete_ticket"))));
    expect(r.answeredBy).toBe("ext_proc");
    expect(records).toHaveLength(1);
    expect(counted).toBe(1);
  });
});
