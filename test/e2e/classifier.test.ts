import type { IncomingMessage, ServerResponse } from "node:http";
import { parse, stringify } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HttpClassifier, readVerdict } from "../../ext-service/src/classifier/http-classifier.js";
import { GatewayConfigSchema } from "../../ext-service/src/config/schema.js";
import { fakeUpstream, httpCall, MCP_HEADERS, rpc, startGateway, type Gateway } from "./harness.js";
import {
  GATEWAY_YAML,
  startGateway as startEnvoyGateway,
  type Gateway as EnvoyGateway,
} from "../envoy/harness.js";

/**
 * The pluggable prompt-injection classifier (security.classifier) on both planes, against a fake
 * classifier server: uncertain texts (and every text of a named surface) are sent with the
 * configured auth header; an injection verdict blocks the response; verdicts are cached by
 * content; a classifier that times out or is down blocks (failMode closed) or passes (open).
 */

/** Rules are unsure about it: a concept match inside text that discusses attacks. */
const UNCERTAIN = 'Attackers often write "ignore all previous instructions" in web pages.';
const UNCERTAIN_BAD = 'A classic attack string is "ignore all previous instructions" and BAD things follow.';
const CLEAN = "The quarterly report covers revenue, churn and hiring in every region.";
const TOKEN = "classifier-secret-token";

interface FakeClassifier {
  url: string;
  close(): Promise<void>;
  seen: { text: string; auth: string | undefined }[];
}

/** Answers in the Hugging Face text-classification shape; "BAD" marks an injection; /slow never answers in time. */
async function fakeClassifier(): Promise<FakeClassifier> {
  const seen: FakeClassifier["seen"] = [];
  const fake = await fakeUpstream((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = JSON.parse(Buffer.concat(chunks).toString()) as { inputs: string };
      seen.push({ text: body.inputs, auth: req.headers.authorization });
      const answer = () =>
        res
          .writeHead(200, { "content-type": "application/json" })
          .end(
            JSON.stringify(
              body.inputs.includes("BAD")
                ? [{ label: "INJECTION", score: 0.98 }]
                : [{ label: "SAFE", score: 0.97 }],
            ),
          );
      if (req.url?.endsWith("/slow")) setTimeout(answer, 1500);
      else answer();
    });
  });
  return { url: fake.url, close: fake.close, seen };
}

const toolResult = (id: unknown, text: string) =>
  JSON.stringify({ jsonrpc: "2.0", id, result: { content: [{ type: "text", text }], isError: false } });

describe("readVerdict", () => {
  it("reads the known answer shapes", () => {
    expect(readVerdict({ injection: true }, 0.5)).toBe("injection");
    expect(readVerdict({ injection: false }, 0.5)).toBe("benign");
    expect(readVerdict({ score: 0.7 }, 0.5)).toBe("injection");
    expect(
      readVerdict(
        [
          [
            { label: "SAFE", score: 0.9 },
            { label: "INJECTION", score: 0.1 },
          ],
        ],
        0.5,
      ),
    ).toBe("benign");
    expect(readVerdict([{ label: "JAILBREAK", score: 0.8 }], 0.5)).toBe("injection");
    expect(readVerdict({ what: 1 }, 0.5)).toBeUndefined();
  });
});

describe("security.classifier configuration", () => {
  const parse = (classifier: Record<string, unknown>) =>
    GatewayConfigSchema.safeParse({
      registry: "r.yaml",
      auth: { mode: "optional" },
      security: { classifier },
    });

  it("takes an http(s) URL, one source for the auth header, and defaults to failing closed", () => {
    const ok = parse({ url: "http://127.0.0.1:8080/predict", auth: { valueFile: "/run/secrets/clf" } });
    expect(ok.success).toBe(true);
    expect(ok.data!.security.classifier).toMatchObject({ failMode: "closed", threshold: 0.5, surfaces: [] });
    expect(parse({ url: "ftp://x/predict" }).success).toBe(false);
    expect(parse({ url: "http://x/p", auth: { valueEnv: "A", valueFile: "/b" } }).success).toBe(false);
    expect(parse({ url: "http://x/p", auth: {} }).success).toBe(false);
    expect(parse({ url: "http://x/p", failMode: "maybe" }).success).toBe(false);
  });

  it("refuses to start without the auth header's value", () => {
    const settings = parse({ url: "http://x/p", auth: { valueEnv: "NO_SUCH_CLASSIFIER_TOKEN" } }).data!
      .security.classifier!;
    expect(() => new HttpClassifier(settings, {})).toThrow(/NO_SUCH_CLASSIFIER_TOKEN is not set/);
  });
});

describe("classifier on the local edge", () => {
  let classifier: FakeClassifier;
  let upstream: Awaited<ReturnType<typeof fakeUpstream>>;
  const gateways: Gateway[] = [];
  /** What the upstream answers next. */
  let answerText = CLEAN;

  const start = (classifierConfig: Record<string, unknown>) =>
    startGateway({
      servers: [{ name: "kb", upstreams: [upstream.url] }],
      security: { classifier: classifierConfig },
    }).then((g) => (gateways.push(g), g));

  beforeAll(async () => {
    process.env.TEST_CLASSIFIER_TOKEN = `Bearer ${TOKEN}`;
    classifier = await fakeClassifier();
    upstream = await fakeUpstream((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const id = (JSON.parse(Buffer.concat(chunks).toString()) as { id?: unknown }).id;
        res.writeHead(200, { "content-type": "application/json" }).end(toolResult(id, answerText));
      });
    });
  });
  afterAll(async () => {
    for (const g of gateways) await g.close();
    await classifier?.close();
    await upstream?.close();
  });

  async function call(gw: Gateway, text: string) {
    answerText = text;
    const token = await gw.token("tester");
    return httpCall(gw.url("kb"), {
      headers: { ...MCP_HEADERS, authorization: `Bearer ${token}` },
      body: rpc("ping", undefined, 7),
    });
  }

  it("asks only about uncertain texts, with the auth header, blocks injections and caches verdicts", async () => {
    const gw = await start({
      url: classifier.url,
      auth: { valueEnv: "TEST_CLASSIFIER_TOKEN" },
    });
    const clean = await call(gw, CLEAN);
    expect(clean.messages[0]).toMatchObject({ id: 7, result: { content: [{ text: CLEAN }] } });
    expect(classifier.seen.length).toBe(0);

    const benign = await call(gw, UNCERTAIN);
    expect(benign.messages[0]).toMatchObject({ result: { content: [{ text: UNCERTAIN }] } });
    expect(classifier.seen).toEqual([{ text: UNCERTAIN, auth: `Bearer ${TOKEN}` }]);

    const bad = await call(gw, UNCERTAIN_BAD);
    expect(bad.messages[0]).toMatchObject({
      id: 7,
      error: {
        message: expect.stringContaining("classifier.injection"),
        data: { reason: "injection_blocked" },
      },
    });
    expect(bad.text).not.toContain("BAD things");
    const asked = classifier.seen.length;
    await call(gw, UNCERTAIN_BAD);
    await call(gw, UNCERTAIN);
    expect(classifier.seen.length).toBe(asked);
  });

  it("classifies every text of a surface named in surfaces", async () => {
    const gw = await start({ url: classifier.url, surfaces: ["outputs"] });
    const before = classifier.seen.length;
    const r = await call(gw, `${CLEAN} BAD`);
    expect(r.messages[0]).toMatchObject({ error: { data: { reason: "injection_blocked" } } });
    expect(classifier.seen.length).toBe(before + 1);
  });

  it("blocks what it could not judge when failMode is closed (timeout), passes it when open (down)", async () => {
    const closed = await start({ url: `${classifier.url}/slow`, timeout: "100ms", failMode: "closed" });
    const t0 = Date.now();
    const timedOut = await call(closed, UNCERTAIN);
    expect(Date.now() - t0).toBeLessThan(1200);
    expect(timedOut.messages[0]).toMatchObject({
      error: {
        message: expect.stringContaining("classifier.unavailable"),
        data: { reason: "injection_blocked" },
      },
    });
    const open = await start({ url: "http://127.0.0.1:1/classify", timeout: "200ms", failMode: "open" });
    const down = await call(open, UNCERTAIN);
    expect(down.messages[0]).toMatchObject({ result: { content: [{ text: UNCERTAIN }] } });
  });
});

describe("classifier on the Envoy plane (ext-service under the Envoy-role client)", () => {
  let classifier: FakeClassifier;
  const gateways: EnvoyGateway[] = [];

  const start = (classifierConfig: Record<string, unknown>) => {
    const config = parse(GATEWAY_YAML) as Record<string, unknown>;
    config.security = { classifier: classifierConfig };
    return startEnvoyGateway({ gatewayYaml: stringify(config) }).then((g) => (gateways.push(g), g));
  };

  beforeAll(async () => {
    classifier = await fakeClassifier();
  });
  afterAll(async () => {
    for (const g of gateways) await g.close();
    await classifier?.close();
  });

  async function call(gw: EnvoyGateway, text: string) {
    const token = await gw.token("support-bot");
    const r = await gw.client.exchange(
      {
        method: "POST",
        path: "/mcp/tickets",
        headers: { ...MCP_HEADERS, authorization: `Bearer ${token}` },
        body: rpc("ping", undefined, 9),
      },
      () => ({ status: 200, headers: { "content-type": "application/json" }, body: toolResult(9, text) }),
    );
    return JSON.parse(r.response.body.toString()) as Record<string, unknown>;
  }

  it("blocks an uncertain text the classifier judges an injection and passes a benign one", async () => {
    const gw = await start({ url: classifier.url });
    expect(await call(gw, UNCERTAIN)).toMatchObject({ id: 9, result: { content: [{ text: UNCERTAIN }] } });
    expect(await call(gw, UNCERTAIN_BAD)).toMatchObject({
      id: 9,
      error: { data: { reason: "injection_blocked" } },
    });
    expect(await call(gw, CLEAN)).toMatchObject({ result: { content: [{ text: CLEAN }] } });
    expect(classifier.seen.map((s) => s.text)).toEqual([UNCERTAIN, UNCERTAIN_BAD]);
  });

  it("fails closed on a timeout and open when configured so with the classifier down", async () => {
    const closed = await start({ url: `${classifier.url}/slow`, timeout: "100ms" });
    expect(await call(closed, UNCERTAIN)).toMatchObject({ error: { data: { reason: "injection_blocked" } } });
    const open = await start({ url: "http://127.0.0.1:1/classify", timeout: "200ms", failMode: "open" });
    expect(await call(open, UNCERTAIN)).toMatchObject({ result: { content: [{ text: UNCERTAIN }] } });
  });
});
