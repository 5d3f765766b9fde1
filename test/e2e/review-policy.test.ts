import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  DOCS_READER_RULES,
  ESCAPING_URIS,
  PAYROLL,
  SALARIES,
  SECRET_DEALS,
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
import {
  MCP_HEADERS,
  fakeUpstream,
  httpCall,
  readJsonBody,
  rpc,
  startGateway,
  type Gateway,
} from "./harness.js";

/**
 * Findings of the security review (docs/SECURITY.md) on the local edge, against a real SDK
 * server. test/envoy/review-policy.test.ts holds the same findings on the Envoy plane.
 */

let docs: DocsUpstream;
let gw: Gateway;
let token: string;

beforeAll(async () => {
  docs = await startDocsUpstream();
  gw = await startGateway({
    servers: [{ name: "docs", upstreams: [docs.url] }],
    roles: { "docs-reader": { rules: DOCS_READER_RULES } },
    agents: { reader: { roles: ["docs-reader"] } },
  });
  token = await gw.token("reader");
});
afterAll(async () => {
  await gw?.close();
  await docs?.close();
});

async function call(url: string, method: string, params: Record<string, unknown>, bearer?: string) {
  const r = await httpCall(url, {
    headers: { ...MCP_HEADERS, ...(bearer ? { authorization: `Bearer ${bearer}` } : {}) },
    body: rpc(method, params),
  });
  return { status: r.status, message: r.messages[0] as RpcAnswer };
}

describe("security review F1: resource rules judge the URI the server serves", () => {
  it("each escaping URI reads a private resource from the server directly, and is refused by the edge", async () => {
    for (const uri of ESCAPING_URIS) {
      const direct = await call(docs.url, "resources/read", { uri });
      expect([PAYROLL, SALARIES], uri).toContain(direct.message.result?.contents?.[0]?.text);
      const through = await call(gw.url("docs"), "resources/read", { uri }, token);
      expect(through.message.error?.data?.reason, JSON.stringify(uri)).toBe("resource_uri_invalid");
      expect(JSON.stringify(through.message)).not.toContain("ceo");
    }
  });

  it("refuses subscribe and unsubscribe the same way", async () => {
    for (const method of ["resources/subscribe", "resources/unsubscribe"]) {
      const r = await call(gw.url("docs"), method, { uri: "docs://inte\nrnal/salaries" }, token);
      expect(r.message.error?.data?.reason).toBe("resource_uri_invalid");
    }
  });

  it("reads an allowed canonical URI, denies a denied one, and audits the URI", async () => {
    const ok = await call(gw.url("docs"), "resources/read", { uri: "file:///public/readme.txt" }, token);
    expect(ok.message.result?.contents?.[0]?.text).toBe("public readme");
    const denied = await call(gw.url("docs"), "resources/read", { uri: "docs://internal/salaries" }, token);
    expect(denied.message.error?.data?.reason).toBe("resource_unknown");
    await new Promise((r) => setTimeout(r, 20));
    const audited = gw.log.audits.flatMap((a) => a.resources);
    expect(audited).toContain("file:///public/readme.txt");
    expect(audited).toContain("docs://internal/salaries");
  });
});

describe("security review F6: completion/complete and resources/templates/list follow the rules", () => {
  it("runs no completer of a denied prompt, and completes an allowed one", async () => {
    const argument = { name: "deal", value: "" };
    const direct = await call(docs.url, "completion/complete", {
      ref: { type: "ref/prompt", name: "internal_escalation" },
      argument,
    });
    expect(direct.message.result?.completion?.values).toEqual(SECRET_DEALS);
    const denied = await call(
      gw.url("docs"),
      "completion/complete",
      { ref: { type: "ref/prompt", name: "internal_escalation" }, argument },
      token,
    );
    expect(denied.message.error?.data?.reason).toBe("prompt_unknown");
    const unknown = await call(
      gw.url("docs"),
      "completion/complete",
      { ref: { type: "ref/prompt", name: "no_such_prompt" }, argument },
      token,
    );
    expect(unknown.message.error?.data?.reason).toBe("prompt_unknown");
    const allowed = await call(
      gw.url("docs"),
      "completion/complete",
      { ref: { type: "ref/prompt", name: "public_help" }, argument: { name: "topic", value: "" } },
      token,
    );
    expect(allowed.message.result?.completion?.values).toEqual(["billing", "login"]);
  });

  it("decides a resource-template completion by the template, and filters resources/templates/list", async () => {
    const denied = await call(
      gw.url("docs"),
      "completion/complete",
      { ref: { type: "ref/resource", uri: "file:///private/{name}" }, argument: { name: "name", value: "" } },
      token,
    );
    expect(denied.message.error?.data?.reason).toBe("resource_unknown");
    const direct = await call(docs.url, "resources/templates/list", {});
    expect(direct.message.result?.resourceTemplates?.map((t) => t.uriTemplate)).toEqual([
      "file:///public/{page}",
      "file:///private/{name}",
    ]);
    const listed = await call(gw.url("docs"), "resources/templates/list", {}, token);
    expect(listed.message.result?.resourceTemplates?.map((t) => t.uriTemplate)).toEqual([
      "file:///public/{page}",
    ]);
  });
});

describe("security review F3: client input never becomes a metric label", () => {
  it("keeps /metrics the same size through 90 requests with long random methods", async () => {
    const send = (i: number) =>
      httpCall(gw.url("docs"), {
        headers: { ...MCP_HEADERS, authorization: `Bearer ${token}` },
        body: rpc(`M-${Math.random().toString(36).slice(2)}-${"X".repeat(50_000)}`, {}, i),
      });
    await send(0);
    const before = (await gw.metrics.registry.metrics()).length;
    for (let i = 1; i <= 90; i++) await send(i);
    const after = await gw.metrics.registry.metrics();
    expect(after).not.toContain("XXXXXXXX");
    expect(after.length - before).toBeLessThan(200); // counts grow by digits, not by series
    await new Promise((r) => setTimeout(r, 20));
    for (const a of gw.log.audits.slice(-90)) for (const m of a.methods) expect(m.length).toBeLessThan(120);
  });
});

describe("security review F2: a gateway-side stall is not an upstream failure", () => {
  it("keeps the breaker closed when upstream calls time out only because the event loop was blocked", async () => {
    // The upstream answers at once, but the process is blocked first (another request's work, in
    // the same event loop as the edge): the edge's upstream timeout fires before the answer is read.
    const upstream = await fakeUpstream((req, res) => {
      void readJsonBody(req).then((body) => {
        const until = performance.now() + 1_400;
        while (performance.now() < until);
        setTimeout(() => {
          res.writeHead(200, { "content-type": "application/json" });
          res.end(JSON.stringify({ jsonrpc: "2.0", id: (body as { id: number }).id, result: {} }));
        }, 0);
      });
    });
    const stalled = await startGateway({
      servers: [{ name: "slow", upstreams: [upstream.url] }],
      edge: { upstreamTimeout: "300ms", breaker: { consecutiveFailures: 2, cooldown: "60s" } },
    });
    try {
      const bearer = await stalled.token("tester");
      const send = () =>
        httpCall(stalled.url("slow"), {
          headers: { ...MCP_HEADERS, authorization: `Bearer ${bearer}` },
          body: rpc("ping"),
        });
      for (let i = 0; i < 2; i++) expect((await send()).status).toBe(504);
      // Two timeouts, the breaker's threshold: only stalls of the gateway caused them.
      const after = await send();
      expect(JSON.parse(after.text).error?.data?.reason).toBe("upstream_timeout");
    } finally {
      await stalled.close();
      await upstream.close();
    }
  });
});

describe("security review F4: duplicate request ids", () => {
  it("refuses a batch with two requests of one id, so no answer is read as another's", async () => {
    const batch = JSON.stringify([
      { jsonrpc: "2.0", id: 1, method: "prompts/list" },
      { jsonrpc: "2.0", id: 1, method: "ping" },
    ]);
    const direct = await httpCall(docs.url, { headers: MCP_HEADERS, body: batch });
    expect(direct.text).toContain("internal_escalation"); // what 89c830b forwarded unfiltered
    const r = await httpCall(gw.url("docs"), {
      headers: { ...MCP_HEADERS, authorization: `Bearer ${token}` },
      body: batch,
    });
    expect(r.status).toBe(400);
    // Each request of the refused batch is answered under its id (docs/REASONS.md).
    const answers = r.messages[0] as RpcAnswer[];
    expect(answers.map((a) => [a.id, a.error?.data?.reason])).toEqual([
      [1, "invalid_request"],
      [1, "invalid_request"],
    ]);
    expect(r.text).not.toContain("internal_escalation");
  });
});

describe("security review F7, F13: output a malicious server hides from the checks", () => {
  const answers = maliciousAnswers(1);
  let next = answers[0]!;
  let evil: Awaited<ReturnType<typeof fakeUpstream>>;
  let malicious: Gateway;
  let bearer: string;
  beforeAll(async () => {
    evil = await fakeUpstream((req, res) => {
      void readJsonBody(req).then(() => {
        res.writeHead(next.status, { "content-type": next.contentType });
        res.end(next.text);
      });
    });
    malicious = await startGateway({ servers: [{ name: "evil", upstreams: [evil.url] }] });
    bearer = await malicious.token("tester");
  });
  afterAll(async () => {
    await malicious?.close();
    await evil?.close();
  });

  for (const answer of answers) {
    it(`${answer.name}: nothing secret or injected reaches the agent`, async () => {
      next = answer;
      const r = await httpCall(malicious.url("evil"), {
        headers: { ...MCP_HEADERS, authorization: `Bearer ${bearer}` },
        body: rpc("resources/read", { uri: "docs://public/faq" }),
      });
      expect(r.text).not.toContain("Ignore all previous");
      expect(r.text).not.toContain(LEAKED_KEY);
      if (answer.status >= 400) expect(r.status).toBe(answer.status);
      const read = answerFor(1, r.headers["content-type"] as string | undefined, r.text);
      if (answer.outcome) expect(outcomeOf(read)).toEqual(answer.outcome);
      if (answer.name.startsWith("dup-key")) {
        const [audit] = await malicious.log.auditFor(read!.error!.data!.request_id!);
        expect(audit).toMatchObject({
          decision: "error",
          reasons: ["upstream_invalid_response"],
          counters: { duplicate_key_messages: 1 },
        });
      }
    });
  }
});

describe("security review F7: a request naming a key twice", () => {
  it("is refused before the server, which might read the other value", async () => {
    // JSON.parse (the gateway's reading) keeps the allowed URI; a first-wins server reads the denied one.
    const body =
      '{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"docs://internal/salaries","uri":"docs://public/faq"}}';
    const r = await httpCall(gw.url("docs"), {
      headers: { ...MCP_HEADERS, authorization: `Bearer ${token}` },
      body,
    });
    expect(r.status).toBe(400);
    expect((r.messages[0] as RpcAnswer).error?.data?.reason).toBe("invalid_request");
    const escaped = body.replace('"uri":"docs://public', '"\\u0075ri":"docs://public');
    const again = await httpCall(gw.url("docs"), {
      headers: { ...MCP_HEADERS, authorization: `Bearer ${token}` },
      body: escaped,
    });
    expect(again.status).toBe(400);
  });
});

describe("security review F12: secrets in every client-to-server string", () => {
  it("refuses a key in a notification, a client response, _meta, a resource URI and a completion value", async () => {
    for (const { name, body } of secretCarryingMessages(LEAKED_KEY)) {
      const r = await httpCall(gw.url("docs"), {
        headers: { ...MCP_HEADERS, authorization: `Bearer ${token}` },
        body: JSON.stringify(body),
      });
      expect(r.text, name).toContain("secret_in_arguments");
      expect(r.text, name).not.toContain(LEAKED_KEY);
    }
  });
});

describe("security review F12: secrets written to evade detection, both directions", () => {
  it("refuses every evasion in every client-to-server string", async () => {
    for (const evasion of SECRET_EVASIONS) {
      const written = evasion.write(LEAKED_KEY);
      for (const { name, body } of secretCarryingMessages(written)) {
        const r = await httpCall(gw.url("docs"), {
          headers: { ...MCP_HEADERS, authorization: `Bearer ${token}` },
          body: JSON.stringify(body),
        });
        const reason = (r.messages[0] as RpcAnswer).error?.data?.reason;
        expect(EVADED_KEY_REFUSALS, `${evasion.name} in ${name}`).toContain(reason);
        if (name !== "resource URI") expect(reason, `${evasion.name} in ${name}`).toBe("secret_in_arguments");
        expect(r.text, `${evasion.name} in ${name}`).not.toContain(written);
      }
    }
  });

  it("redacts every evasion in a server's answer, whole", async () => {
    let text = "";
    const evil = await fakeUpstream((req, res) => {
      void readJsonBody(req).then(() => {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify(resultCarrying(1, text).body));
      });
    });
    const gateway = await startGateway({ servers: [{ name: "evil", upstreams: [evil.url] }] });
    try {
      const bearer = await gateway.token("tester");
      for (const evasion of SECRET_EVASIONS) {
        text = evasion.write(LEAKED_KEY);
        const r = await httpCall(gateway.url("evil"), {
          headers: { ...MCP_HEADERS, authorization: `Bearer ${bearer}` },
          body: rpc("resources/read", { uri: "docs://public/faq" }),
        });
        const answer = r.messages[0] as RpcAnswer;
        expect(answer.result?.content?.[0]?.text, evasion.name).toBe(
          `the key is ${evasion.redacted ?? "[REDACTED:aws_access_key_id]"} .`,
        );
      }
    } finally {
      await gateway.close();
      await evil.close();
    }
  });
});
