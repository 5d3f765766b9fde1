import { createServer as createTcpServer, type Server as TcpServer, type Socket } from "node:net";
import type { AddressInfo } from "node:net";
import { McpError } from "@modelcontextprotocol/sdk/types.js";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEV_ISSUER } from "../../ext-service/src/config/devkeys.js";
import { sealUpstreamSession } from "../../ext-service/src/policy/session-seal.js";
import {
  connectClient,
  parseRawResponse,
  rawHttp,
  fakeUpstream,
  httpCall,
  MCP_HEADERS,
  readJsonBody,
  rpc,
  startGateway,
  unusedPort,
  waitFor,
  type Gateway,
} from "./harness.js";

type Fake = Awaited<ReturnType<typeof fakeUpstream>>;

const INIT_RESULT = {
  protocolVersion: "2025-06-18",
  capabilities: { tools: {} },
  serverInfo: { name: "fake", version: "1" },
};

/** Starts a 200 SSE answer with these events; the caller ends the stream (or does not). */
function sse(res: import("node:http").ServerResponse, events: string[]): void {
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
  for (const e of events) res.write(e);
}

/**
 * A fake with the 2025 handshake of an SDK client (initialize answered with JSON and session id
 * `sessionId`, 202 for notifications/initialized, 405 for the GET stream): `answer` answers the rest.
 */
function handshakeFake(
  sessionId: string,
  answer: (msg: { id: number; method: string }, res: import("node:http").ServerResponse) => void,
): Promise<Fake> {
  return fakeUpstream(async (req, res) => {
    if (req.method !== "POST") return void res.writeHead(405).end();
    const msg = (await readJsonBody(req)) as { id: number; method: string };
    if (msg.method === "initialize") {
      res.writeHead(200, { "content-type": "application/json", "mcp-session-id": sessionId });
      res.end(JSON.stringify({ jsonrpc: "2.0", id: msg.id, result: INIT_RESULT }));
      return;
    }
    if (msg.method === "notifications/initialized") return void res.writeHead(202).end();
    answer(msg, res);
  });
}

describe("upstream faults through the edge", () => {
  let gw: Gateway;
  const fakes: Record<string, Fake> = {};
  let garbageTcp: TcpServer;
  let garbagePort: number;
  let flaky = { healthy: false, hits: 0 };
  let gateSent: () => void = () => {};
  let gate: Promise<void> = Promise.resolve();
  let upstreamClosed = false;
  const resumedWith: (string | string[] | undefined)[] = [];
  let bigEventUpstreamClosed = false;
  const hungSockets = new Set<Socket>();

  beforeAll(async () => {
    fakes.hang = await fakeUpstream((req) => {
      req.socket.on("close", () => hungSockets.delete(req.socket));
      hungSockets.add(req.socket); // never answers
    });
    fakes.garbage = await fakeUpstream((_req, res) => {
      res.writeHead(200, { "content-type": "application/json" }).end("<html>not json at all");
    });
    fakes.plaintext = await fakeUpstream((req, res) => {
      // A success labelled as neither JSON nor SSE; the error statuses carry a text body too.
      if (req.headers["x-test-status"] === "500")
        return void res.writeHead(500, { "content-type": "text/plain" }).end("boom");
      if (req.headers["x-test-status"] === "404")
        return void res.writeHead(404, { "content-type": "text/html" }).end("<h1>Cannot POST /mpc</h1>");
      res.writeHead(200, { "content-type": "text/plain" }).end("key AKIAIOSFODNN7EXAMPLE and the rest");
    });
    fakes.huge = await fakeUpstream((_req, res) => {
      const body = JSON.stringify({ jsonrpc: "2.0", id: 1, result: { padding: "x".repeat(5000) } });
      res.writeHead(200, { "content-type": "application/json" }).end(body);
    });
    fakes.cut = await handshakeFake("cut-1", (msg, res) => {
      // half an event, then the connection drops
      sse(res, [
        `event: message\ndata: {"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}\n\n`,
        `data: {"jsonrpc":"2.0","id":${msg.id},"res`,
      ]);
      setTimeout(() => res.socket?.destroy(), 20);
    });
    fakes.resumable = await fakeUpstream(async (req, res) => {
      if (req.method === "GET") {
        // The resumed stream: the answer to the POST's ping (id 9), and one no request waits for.
        resumedWith.push(req.headers["last-event-id"]);
        sse(res, [
          `id: ev-2\ndata: ${JSON.stringify({ jsonrpc: "2.0", id: 9, result: { note: "key AKIAIOSFODNN7EXAMPLE" } })}\n\n`,
          `data: ${JSON.stringify({ jsonrpc: "2.0", id: 7, result: {} })}\n\n`,
        ]);
        return void res.end();
      }
      await readJsonBody(req);
      sse(res, ["id: ev-1\ndata: \n\n"]);
      setTimeout(() => res.socket?.destroy(), 20);
    });
    fakes.ends = await fakeUpstream(async (req, res) => {
      await readJsonBody(req);
      sse(res, [
        `data: this is not json\n\n`,
        `data: {"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}\n\n`,
      ]);
      res.end();
    });
    fakes.bigevent = await fakeUpstream(async (req, res) => {
      await readJsonBody(req);
      res.on("close", () => {
        bigEventUpstreamClosed = true;
      });
      sse(res, [`data: {"jsonrpc":"2.0","id":1,"result":{"blob":"${"y".repeat(3000)}`]);
      // ...and the event never ends: the upstream would keep the stream open forever
    });
    fakes.bigresumable = await handshakeFake("big-1", (msg, res) => {
      // An event with an id (the stream could be resumed), then one over maxSseEventBytes.
      sse(res, [
        `id: ev-1\nevent: message\ndata: {"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}\n\n`,
        `data: {"jsonrpc":"2.0","id":${msg.id},"result":{"blob":"${"y".repeat(3000)}`,
      ]);
    });
    fakes.flaky = await fakeUpstream(async (req, res) => {
      const msg = (await readJsonBody(req)) as { id: number };
      flaky.hits++;
      if (!flaky.healthy) return void res.writeHead(500, { "content-type": "text/plain" }).end("boom");
      res
        .writeHead(200, { "content-type": "application/json" })
        .end(JSON.stringify({ jsonrpc: "2.0", id: msg.id, result: {} }));
    });
    fakes.slow = await fakeUpstream(async (req, res) => {
      const msg = (await readJsonBody(req)) as { id: number };
      res.on("close", () => {
        upstreamClosed = true;
      });
      sse(res, [
        `data: {"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"p","progress":1}}\n\n`,
      ]);
      await gate;
      res.end(`data: {"jsonrpc":"2.0","id":${msg.id},"result":{"done":true}}\n\n`);
    });
    fakes.headers = await fakeUpstream(async (req, res) => {
      await readJsonBody(req);
      res.writeHead(200, {
        "content-type": "application/json",
        "mcp-session-id": "sess-from-upstream",
        "keep-alive": "timeout=5",
        "x-echo": JSON.stringify(req.headers),
      });
      res.end(JSON.stringify({ jsonrpc: "2.0", id: 1, result: {} }));
    });
    fakes.accepted = await fakeUpstream(async (req, res) => {
      await readJsonBody(req);
      res.writeHead(202).end();
    });
    garbageTcp = createTcpServer((socket) => {
      socket.on("error", () => {});
      socket.once("data", () => socket.end("THIS IS NOT HTTP\r\n\r\n"));
    });
    await new Promise<void>((r) => garbageTcp.listen(0, "127.0.0.1", () => r()));
    garbagePort = (garbageTcp.address() as AddressInfo).port;

    const down = await unusedPort();
    gw = await startGateway({
      servers: [
        { name: "down", upstreams: [`http://127.0.0.1:${down}/mcp`] },
        { name: "hang", upstreams: [fakes.hang.url] },
        { name: "garbage", upstreams: [fakes.garbage.url] },
        { name: "plaintext", upstreams: [fakes.plaintext.url] },
        { name: "wrongpath", upstreams: [fakes.plaintext.url] },
        { name: "nothttp", upstreams: [`http://127.0.0.1:${garbagePort}/mcp`] },
        { name: "huge", upstreams: [fakes.huge.url] },
        { name: "cut", upstreams: [fakes.cut.url] },
        { name: "resumable", upstreams: [fakes.resumable.url] },
        { name: "ends", upstreams: [fakes.ends.url] },
        { name: "flaky", upstreams: [fakes.flaky.url] },
        { name: "bigevent", upstreams: [fakes.bigevent.url] },
        { name: "bigresumable", upstreams: [fakes.bigresumable.url] },
        { name: "slow", upstreams: [fakes.slow.url] },
        { name: "headers", upstreams: [fakes.headers.url] },
        { name: "accepted", upstreams: [fakes.accepted.url] },
      ],
      edge: { upstreamTimeout: "300ms", breaker: { consecutiveFailures: 2, cooldown: "300ms" } },
      limits: { maxResponseBytes: 1000, maxSseEventBytes: 2000 },
    });
  });

  afterAll(async () => {
    await gw?.close();
    await Promise.all(Object.values(fakes).map((f) => f.close()));
    garbageTcp?.close();
  });

  const post = async (server: string, body = rpc("ping"), headers: Record<string, string> = {}) =>
    httpCall(gw.url(server), {
      headers: { ...MCP_HEADERS, authorization: `Bearer ${await gw.token("tester")}`, ...headers },
      body,
    });

  function expectError(r: Awaited<ReturnType<typeof post>>, status: number, code: number, reason: string) {
    expect(r.status).toBe(status);
    expect(r.headers["content-type"]).toBe("application/json");
    expect(r.messages[0]).toMatchObject({ jsonrpc: "2.0", error: { code, data: { reason } } });
    expect(r.text).not.toMatch(/\n\s+at /); // never a stack trace
  }

  async function oneAudit(r: Awaited<ReturnType<typeof post>>) {
    const id = (r.messages[0] as { error?: { data?: { request_id?: string } } }).error?.data?.request_id;
    expect(id).toBeTruthy();
    const audits = await gw.log.auditFor(id!);
    expect(audits).toHaveLength(1);
    return audits[0]!;
  }

  it("server down: 503 upstream_unavailable", async () => {
    const r = await post("down");
    expectError(r, 503, -32050, "upstream_unavailable");
    const audit = await oneAudit(r);
    expect(audit).toMatchObject({ status: 503, decision: "error", reasons: ["upstream_unavailable"] });
  });

  it("server hangs: 504 upstream_timeout, and the upstream call is abandoned", async () => {
    const r = await post("hang");
    expectError(r, 504, -32050, "upstream_timeout");
    await oneAudit(r);
    await waitFor(() => hungSockets.size === 0, 6_000, "the hung upstream connection to close");
  });

  it("garbage JSON body: 502 upstream_invalid_response", async () => {
    const r = await post("garbage");
    expectError(r, 502, -32050, "upstream_invalid_response");
    expect(r.text).not.toContain("<html>");
  });

  it("a success that is neither JSON nor SSE is refused, not passed unread; an error status gets the gateway's body", async () => {
    const r = await post("plaintext");
    expectError(r, 502, -32050, "upstream_invalid_response");
    expect(r.headers["content-type"]).toBe("application/json");
    expect(r.text).not.toContain("AKIA");
    const failed = await post("plaintext", rpc("ping"), { "x-test-status": "500" });
    // Security review F7: the status stays, the free-text body does not.
    expect(failed.status).toBe(500);
    expect(failed.headers["content-type"]).toBe("application/json");
    expect(JSON.parse(failed.text)).toMatchObject({
      error: { data: { reason: "upstream_invalid_response" } },
    });
  });

  it("an upstream 404 with a body that is not JSON-RPC (a wrong path, trial B10): counted, logged with its cause, audited as a failure", async () => {
    const count = async () =>
      (await gw.metrics.upstreamErrors.get()).values.find(
        (v) => v.labels.server === "wrongpath" && v.labels.reason === "http_4xx",
      )?.value ?? 0;
    const before = await count();
    const logged = gw.log.lines.length;
    const r = await post("wrongpath", rpc("ping"), { "x-test-status": "404" });
    expect(r.status).toBe(404);
    expect(JSON.parse(r.text)).toMatchObject({ error: { data: { reason: "upstream_invalid_response" } } });
    expect(await count()).toBe(before + 1);
    const lines = gw.log.lines.slice(logged).filter((l) => l.msg === "upstream request failed");
    expect(lines).toEqual([
      expect.objectContaining({
        server: "wrongpath",
        reason: "http_4xx",
        error: "HTTP 404 without a JSON-RPC body (replaced)",
      }),
    ]);
    expect(JSON.stringify(lines)).not.toContain("Cannot POST");
    expect(await oneAudit(r)).toMatchObject({ decision: "error", reasons: ["upstream_invalid_response"] });
  });

  it("not HTTP at all: 502 upstream_invalid_response", async () => {
    const r = await post("nothttp");
    expectError(r, 502, -32050, "upstream_invalid_response");
  });

  it("JSON response over maxResponseBytes: 502 response_too_large", async () => {
    const r = await post("huge");
    expectError(r, 502, -32603, "response_too_large");
    expect(r.text).not.toContain("xxxx");
  });

  it("SSE cut mid-event: the event before passes, the request is answered with an error", async () => {
    const r2 = await post("cut", rpc("ping", undefined, 8));
    expect(r2.status).toBe(200);
    expect(r2.headers["content-type"]).toBe("text/event-stream");
    expect(r2.messages).toEqual([
      { jsonrpc: "2.0", method: "notifications/progress", params: { progressToken: 1, progress: 1 } },
      {
        jsonrpc: "2.0",
        id: 8,
        error: expect.objectContaining({
          code: -32050,
          data: expect.objectContaining({ reason: "upstream_unavailable" }),
        }),
      },
    ]);
  });

  it("SSE cut: an SDK client gets the error instead of waiting for its timeout", async () => {
    const c = await connectClient(gw.url("cut"), await gw.token("tester"));
    try {
      const err = await c.client.ping().then(
        () => undefined,
        (e: unknown) => e as McpError,
      );
      expect(err).toBeInstanceOf(McpError);
      expect(err?.data).toMatchObject({ reason: "upstream_unavailable" });
    } finally {
      await c.close();
    }
  });

  it("SSE cut after an event id: no error is invented, the client may resume", async () => {
    const r = await post("resumable", rpc("ping", undefined, 9));
    expect(r.status).toBe(200);
    // The id reaches the client sealed (policy/resumption.ts), with the request it may resume for.
    expect(r.text).toMatch(/^id: g1\.[\w-]+\ndata: \n\n$/);
  });

  it("a GET with the sealed Last-Event-ID resumes the POST: the upstream gets its own id, the answer is inspected", async () => {
    const cut = await post("resumable", rpc("ping", undefined, 9));
    const sealed = /^id: (\S+)$/m.exec(cut.text)![1]!;
    const get = async (lastEventId: string) =>
      httpCall(gw.url("resumable"), {
        method: "GET",
        headers: {
          accept: "text/event-stream",
          authorization: `Bearer ${await gw.token("tester")}`,
          "last-event-id": lastEventId,
        },
      });
    const resumed = await get(sealed);
    expect(resumed.status).toBe(200);
    expect(resumedWith.at(-1)).toBe("ev-1");
    // The answer to id 9 arrives, DLP-redacted under ping's settings; id 7 was never sent: dropped.
    expect(resumed.messages).toHaveLength(1);
    expect(resumed.messages[0]).toMatchObject({ jsonrpc: "2.0", id: 9 });
    expect(resumed.text).not.toContain("AKIAIOSFODNN7EXAMPLE");
    expect(resumed.text).not.toMatch(/^id: ev-/m);
    // Not sealed by the gateway (or another agent's): no Last-Event-ID upstream, no answer passes.
    const forged = await get("ev-1");
    expect(resumedWith.at(-1)).toBeUndefined();
    expect(forged.messages).toHaveLength(0);
  });

  it("SSE that ends without answering: invalid events dropped, request answered with an error", async () => {
    const r = await post("ends", rpc("ping", undefined, 10));
    expect(r.messages).toEqual([
      { jsonrpc: "2.0", method: "notifications/message", params: { level: "info", data: "x" } },
      {
        jsonrpc: "2.0",
        id: 10,
        error: expect.objectContaining({
          data: expect.objectContaining({ reason: "upstream_invalid_response" }),
        }),
      },
    ]);
    expect(r.text).not.toContain("this is not json");
  });

  it("SSE event over maxSseEventBytes: error for the request, upstream stream abandoned", async () => {
    const r = await post("bigevent", rpc("ping", undefined, 1));
    expect(r.status).toBe(200);
    expect(r.text).not.toContain("yyyy");
    const errors = r.messages as { id: unknown; error: { data: { reason: string } } }[];
    // Once, under the request's id (not also under id null, which answers nobody).
    expect(errors.map((m) => [m.id, m.error.data.reason])).toEqual([[1, "response_too_large"]]);
    await waitFor(() => bigEventUpstreamClosed, 5_000, "the upstream stream to be closed");
  });

  it("SSE event over maxSseEventBytes after an event id: the SDK 1.x client's call fails at once with the gateway's error", async () => {
    // The stream had an event id, so the edge cannot answer the request at its end (the client
    // may resume): the error event itself must carry the request's id, or the call waits out its timeout.
    const c = await connectClient(gw.url("bigresumable"), await gw.token("tester"));
    try {
      const started = performance.now();
      const err = await c.client.ping({ timeout: 5_000 }).then(
        () => undefined,
        (e: unknown) => e as McpError,
      );
      expect(err).toBeInstanceOf(McpError);
      expect(err?.data).toMatchObject({ reason: "response_too_large" });
      expect(performance.now() - started).toBeLessThan(2_500);
    } finally {
      await c.close();
    }
  });

  it("breaker: opens after consecutive failures, answers 503 without calling, recovers after the cool-down", async () => {
    const gauge = async () =>
      (await gw.metrics.breakerOpen.get()).values.find((v) => v.labels.server === "flaky")?.value;
    expect(await gauge()).toBe(0);
    flaky = { healthy: false, hits: 0 };
    expect((await post("flaky")).status).toBe(500); // the upstream's own answer passes through
    expect((await post("flaky")).status).toBe(500);
    const open = await post("flaky");
    expectError(open, 503, -32050, "breaker_open");
    expect(flaky.hits).toBe(2);
    expect(await gauge()).toBe(1);
    flaky.healthy = true;
    await new Promise((r) => setTimeout(r, 350)); // the cool-down (300ms)
    const probe = await post("flaky");
    expect(probe.status).toBe(200);
    expect(await gauge()).toBe(0);
    expect((await post("flaky")).status).toBe(200);
    expect(flaky.hits).toBe(4);
    const errors = (await gw.metrics.upstreamErrors.get()).values.filter((v) => v.labels.server === "flaky");
    expect(Object.fromEntries(errors.map((v) => [v.labels.reason, v.value]))).toEqual({
      http_5xx: 2,
      breaker_open: 1,
    });
  });

  it("streams SSE event by event: the first event arrives while the upstream still holds the response", async () => {
    gate = new Promise((r) => (gateSent = r));
    const res = await request(gw.url("slow"), {
      method: "POST",
      headers: { ...MCP_HEADERS, authorization: `Bearer ${await gw.token("tester")}` },
      body: rpc("ping", undefined, 11),
    });
    expect(res.statusCode).toBe(200);
    let text = "";
    for await (const chunk of res.body) {
      text += (chunk as Buffer).toString("utf8");
      if (text.includes("notifications/progress")) break;
    }
    // Only now may the upstream finish: had the edge buffered, the loop above would never end.
    gateSent();
    expect(text).toContain('"progress":1');
  });

  it("a client that disconnects aborts the upstream call; one audit record notes it", async () => {
    gate = new Promise(() => {}); // the upstream would wait forever
    upstreamClosed = false;
    const before = gw.log.audits.length;
    const controller = new AbortController();
    const res = await request(gw.url("slow"), {
      method: "POST",
      headers: { ...MCP_HEADERS, authorization: `Bearer ${await gw.token("tester")}` },
      body: rpc("ping", undefined, 12),
      signal: controller.signal,
    });
    for await (const chunk of res.body) {
      if ((chunk as Buffer).toString("utf8").includes("progress")) break;
    }
    controller.abort();
    await waitFor(() => upstreamClosed, 5_000, "the upstream request to be aborted");
    await waitFor(() => gw.log.audits.length > before);
    const audit = gw.log.audits.slice(before).find((a) => a.server === "slow")!;
    expect(audit).toMatchObject({ status: 200, counters: { client_aborted: 1 } });
  });

  it("forwards identity, never the token, and handles end-to-end vs hop-by-hop headers", async () => {
    const token = await gw.token("tester");
    const body = rpc("ping");
    const owner = { issuer: DEV_ISSUER, agent: "tester", server: "headers" };
    const session = sealUpstreamSession(gw.engine.sessions, owner, { upstream: "abc-123" });
    // A raw request, so the Connection header is exactly what a client could send.
    const raw = await rawHttp(
      gw.edge.port,
      [
        `POST /mcp/headers HTTP/1.1`,
        `host: 127.0.0.1`,
        `content-type: application/json`,
        `accept: application/json, text/event-stream`,
        `authorization: Bearer ${token}`,
        `mcp-session-id: ${session}`,
        `mcp-protocol-version: 2025-06-18`,
        `last-event-id: ev-9`,
        `x-mcp-agent: admin`,
        `x-mcp-request-id: forged`,
        `connection: close, x-drop-me`,
        `x-drop-me: 1`,
        `te: trailers`,
        `x-keep-me: 2`,
        `content-length: ${Buffer.byteLength(body)}`,
        ``,
        body,
      ].join("\r\n"),
    );
    const r = parseRawResponse(raw);
    expect(r.status).toBe(200);
    const seen = JSON.parse(r.headers["x-echo"]!) as Record<string, string>;
    expect(seen.authorization).toBeUndefined();
    expect(seen["x-mcp-agent"]).toBe("tester");
    expect(seen["x-mcp-request-id"]).toMatch(/^[0-9a-f-]{36}$/);
    expect(seen["mcp-session-id"]).toBe("abc-123");
    expect(seen["mcp-protocol-version"]).toBe("2025-06-18");
    expect(seen["last-event-id"]).toBe("ev-9");
    expect(seen["x-drop-me"]).toBeUndefined();
    expect(seen.te).toBeUndefined();
    expect(seen["x-keep-me"]).toBe("2");
    expect(JSON.stringify(seen)).not.toContain(token);
    // The upstream's session id reaches the client sealed for this agent, never as it is.
    expect(r.headers["mcp-session-id"]).toBe(
      sealUpstreamSession(gw.engine.sessions, owner, { upstream: "sess-from-upstream" }),
    );
    expect(r.headers["keep-alive"]).not.toBe("timeout=5");
  });

  it("202 for a notification passes through with no body", async () => {
    const r = await post("accepted", JSON.stringify({ jsonrpc: "2.0", method: "notifications/initialized" }));
    expect(r.status).toBe(202);
    expect(r.text).toBe("");
  });

  it("is still serving after all of the above", async () => {
    flaky.healthy = true;
    expect((await post("flaky")).status).toBe(200);
    expect(gw.edge.ready()).toBe(true);
  });
});
