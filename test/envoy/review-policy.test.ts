import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml, stringify } from "yaml";
import type { Upstream } from "../../ext-service/src/envoy/envoy-role-client.js";
import {
  DOCS_READER_RULES,
  ESCAPING_URIS,
  startDocsUpstream,
  type DocsUpstream,
  type RpcAnswer,
  LEAKED_KEY,
  answerFor,
  maliciousAnswers,
  outcomeOf,
  EVADED_KEY_REFUSALS,
  resultCarrying,
  SECRET_EVASIONS,
  secretCarryingMessages,
} from "../security/review-upstream.js";
import { GATEWAY_YAML, MCP_POST_HEADERS, startGateway, type Gateway } from "./harness.js";

/**
 * Findings of the security review (docs/SECURITY.md) on the Envoy plane: the Envoy-role client
 * plays Envoy, and its upstream forwards to a real SDK server over HTTP, so each answer is what
 * that server would give. test/e2e/review-policy.test.ts holds the same findings on the edge.
 */

let docs: DocsUpstream;
let gw: Gateway;
let token: string;

/** Forwards what Envoy would send upstream to the docs server, and returns its answer. */
const proxy: Upstream = async (req) => {
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers)) {
    if (!k.startsWith(":") && k !== "content-length" && k !== "host") headers[k] = v;
  }
  const res = await fetch(docs.url, { method: req.method, headers, body: req.body });
  const out: Record<string, string> = {};
  res.headers.forEach((v, k) => {
    if (k !== "content-length" && k !== "transfer-encoding" && k !== "connection") out[k] = v;
  });
  return { status: res.status, headers: out, body: Buffer.from(await res.arrayBuffer()) };
};

beforeAll(async () => {
  docs = await startDocsUpstream();
  const config = parseYaml(GATEWAY_YAML) as Record<string, unknown>;
  config.roles = { "docs-reader": { rules: DOCS_READER_RULES } };
  config.agents = { reader: { roles: ["docs-reader"] } };
  config.limits = { ...(config.limits as object), maxRequestBytes: 65_536 };
  gw = await startGateway({
    gatewayYaml: stringify(config),
    registryYaml: stringify({ version: "review", servers: [{ name: "docs", upstreams: [docs.url] }] }),
  });
  token = await gw.token("reader");
});
afterAll(async () => {
  await gw?.close();
  await docs?.close();
});

async function call(method: string, params: Record<string, unknown>) {
  const r = await gw.client.exchange(
    {
      method: "POST",
      path: "/mcp/docs",
      headers: { ...MCP_POST_HEADERS, authorization: `Bearer ${token}` },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }),
    },
    proxy,
  );
  return JSON.parse(r.response.body.toString("utf8")) as RpcAnswer;
}

describe("security review F1 (Envoy plane): resource rules judge the URI the server serves", () => {
  it("refuses each escaping URI before it reaches the server", async () => {
    for (const uri of ESCAPING_URIS) {
      const r = await call("resources/read", { uri });
      expect(r.error?.data?.reason, JSON.stringify(uri)).toBe("resource_uri_invalid");
    }
    for (const method of ["resources/subscribe", "resources/unsubscribe"]) {
      const r = await call(method, { uri: "file:///public/%2e%2e/private/payroll.csv" });
      expect(r.error?.data?.reason).toBe("resource_uri_invalid");
    }
  });

  it("reads an allowed URI and audits it", async () => {
    const ok = await call("resources/read", { uri: "docs://public/faq" });
    expect(ok.result?.contents?.[0]?.text).toBe("public faq");
    expect(gw.logs.audits().flatMap((a) => a.resources as string[])).toContain("docs://public/faq");
  });
});

describe("security review F6 (Envoy plane): completion/complete and resources/templates/list", () => {
  it("refuses completions of a denied prompt and template, and filters the template list", async () => {
    const prompt = await call("completion/complete", {
      ref: { type: "ref/prompt", name: "internal_escalation" },
      argument: { name: "deal", value: "" },
    });
    expect(prompt.error?.data?.reason).toBe("prompt_unknown");
    const template = await call("completion/complete", {
      ref: { type: "ref/resource", uri: "file:///private/{name}" },
      argument: { name: "name", value: "" },
    });
    expect(template.error?.data?.reason).toBe("resource_unknown");
    const listed = await call("resources/templates/list", {});
    expect(listed.result?.resourceTemplates?.map((t) => t.uriTemplate)).toEqual(["file:///public/{page}"]);
  });
});

describe("security review F3 (Envoy plane): client input never becomes a metric label", () => {
  it("keeps /metrics the same size through 90 requests with long random methods", async () => {
    const random = (n: number) => `M-${Math.random().toString(36).slice(2)}-${"X".repeat(n)}`;
    const send = (i: number) =>
      i % 2 === 0
        ? // JSON-RPC method, authenticated: refused as method_unknown.
          gw.client.exchange(
            {
              method: "POST",
              path: "/mcp/docs",
              headers: { ...MCP_POST_HEADERS, authorization: `Bearer ${token}` },
              body: JSON.stringify({ jsonrpc: "2.0", id: i, method: random(20_000), params: {} }),
            },
            proxy,
          )
        : // HTTP method (any token over HTTP/2), no credentials: refused by ext_authz.
          gw.client.exchange({ method: random(2_000).toUpperCase(), path: "/mcp/docs", headers: {} }, proxy);
    await send(0);
    await send(1);
    const before = (await gw.metrics.registry.metrics()).length;
    for (let i = 2; i < 92; i++) await send(i);
    const after = await gw.metrics.registry.metrics();
    expect(after).not.toContain("XXXXXXXX");
    expect(after.length - before).toBeLessThan(200); // counts grow by digits, not by series
    const audits = gw.logs.audits().slice(-90);
    for (const a of audits) {
      for (const m of a.methods as string[]) expect(m.length).toBeLessThan(120);
      expect((a.http_method as string).length).toBeLessThan(120);
    }
  });
});

describe("security review F4 (Envoy plane): duplicate and unknown response ids", () => {
  const post = (body: unknown) => ({
    method: "POST",
    path: "/mcp/docs",
    headers: { ...MCP_POST_HEADERS, authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });

  it("refuses a batch with two requests of one id", async () => {
    const r = await gw.client.exchange(
      post([
        { jsonrpc: "2.0", id: 1, method: "prompts/list" },
        { jsonrpc: "2.0", id: 1, method: "ping" },
      ]),
      proxy,
    );
    expect(r.response.status).toBe(400);
    expect(r.response.body.toString()).toContain("invalid_request");
    expect(r.upstreamRequest).toBeUndefined();
  });

  it("drops an answer to an id the client never sent, whatever its shape", async () => {
    const r = await gw.client.exchange(post([{ jsonrpc: "2.0", id: 1, method: "ping" }]), () => ({
      status: 200,
      headers: { "content-type": "application/json" },
      body: JSON.stringify([
        { jsonrpc: "2.0", id: 1, result: {} },
        { jsonrpc: "2.0", id: 2, result: { prompts: [{ name: "internal_escalation" }] } },
        { jsonrpc: "2.0", id: 1, result: { prompts: [{ name: "internal_escalation" }] } },
      ]),
    }));
    expect(JSON.parse(r.response.body.toString())).toEqual([{ jsonrpc: "2.0", id: 1, result: {} }]);
  });
});

describe("security review F7, F13 (Envoy plane): output a malicious server hides from the checks", () => {
  for (const answer of maliciousAnswers(1)) {
    it(`${answer.name}: nothing secret or injected reaches the agent`, async () => {
      const r = await gw.client.exchange(
        {
          method: "POST",
          path: "/mcp/docs",
          headers: { ...MCP_POST_HEADERS, authorization: `Bearer ${token}` },
          body: JSON.stringify({
            jsonrpc: "2.0",
            id: 1,
            method: "resources/read",
            params: { uri: "docs://public/faq" },
          }),
        },
        () => ({ status: answer.status, headers: { "content-type": answer.contentType }, body: answer.text }),
      );
      const out = r.response.body.toString();
      expect(out).not.toContain("Ignore all previous");
      expect(out).not.toContain(LEAKED_KEY);
      if (answer.status >= 400) expect(r.response.status).toBe(answer.status);
      if (answer.outcome) {
        const read = answerFor(1, r.response.headers["content-type"], out);
        expect(outcomeOf(read)).toEqual(answer.outcome);
      }
    });
  }
});

describe("security review F7 (Envoy plane): a request naming a key twice", () => {
  it("is refused before the server, which might read the other value", async () => {
    const r = await gw.client.exchange(
      {
        method: "POST",
        path: "/mcp/docs",
        headers: { ...MCP_POST_HEADERS, authorization: `Bearer ${token}` },
        body: '{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"docs://internal/salaries","uri":"docs://public/faq"}}',
      },
      proxy,
    );
    expect(r.upstreamRequest).toBeUndefined();
    expect(r.response.status).toBe(400);
    expect(r.response.body.toString()).toContain("invalid_request");
  });
});

describe("security review F12 (Envoy plane): secrets in every client-to-server string", () => {
  it("refuses a key in a notification, a client response, _meta, a resource URI and a completion value", async () => {
    for (const { name, body } of secretCarryingMessages(LEAKED_KEY)) {
      const r = await gw.client.exchange(
        {
          method: "POST",
          path: "/mcp/docs",
          headers: { ...MCP_POST_HEADERS, authorization: `Bearer ${token}` },
          body: JSON.stringify(body),
        },
        proxy,
      );
      expect(r.upstreamRequest, name).toBeUndefined();
      expect(r.response.body.toString(), name).toContain("secret_in_arguments");
    }
  });
});

describe("security review F12 (Envoy plane): secrets written to evade detection, both directions", () => {
  it("refuses every evasion in every client-to-server string", async () => {
    for (const evasion of SECRET_EVASIONS) {
      const written = evasion.write(LEAKED_KEY);
      for (const { name, body } of secretCarryingMessages(written)) {
        const r = await gw.client.exchange(
          {
            method: "POST",
            path: "/mcp/docs",
            headers: { ...MCP_POST_HEADERS, authorization: `Bearer ${token}` },
            body: JSON.stringify(body),
          },
          proxy,
        );
        expect(r.upstreamRequest, `${evasion.name} in ${name}`).toBeUndefined();
        const reason = (JSON.parse(r.response.body.toString()) as RpcAnswer).error?.data?.reason;
        expect(EVADED_KEY_REFUSALS, `${evasion.name} in ${name}`).toContain(reason);
        if (name !== "resource URI") expect(reason, `${evasion.name} in ${name}`).toBe("secret_in_arguments");
      }
    }
  });

  it("redacts every evasion in a server's answer, whole", async () => {
    for (const evasion of SECRET_EVASIONS) {
      const { body } = resultCarrying(1, evasion.write(LEAKED_KEY));
      const r = await gw.client.exchange(
        {
          method: "POST",
          path: "/mcp/docs",
          headers: { ...MCP_POST_HEADERS, authorization: `Bearer ${token}` },
          body: JSON.stringify({
            jsonrpc: "2.0",
            id: 1,
            method: "resources/read",
            params: { uri: "docs://public/faq" },
          }),
        },
        () => ({ status: 200, headers: { "content-type": "application/json" }, body: JSON.stringify(body) }),
      );
      const answer = JSON.parse(r.response.body.toString("utf8")) as RpcAnswer;
      expect(answer.result?.content?.[0]?.text, evasion.name).toBe(
        `the key is ${evasion.redacted ?? "[REDACTED:aws_access_key_id]"} .`,
      );
    }
  });
});
