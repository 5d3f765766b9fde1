import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  fakeUpstream,
  httpCall,
  MCP_HEADERS,
  parseRawResponse,
  rawHttp,
  rpc,
  startGateway,
  waitFor,
  type Gateway,
} from "./harness.js";

/** Hostile or broken HTTP from clients: refused with the documented error, nothing reaches the server. */
describe("bad input over HTTP", () => {
  let gw: Gateway;
  let upstream: Awaited<ReturnType<typeof fakeUpstream>>;
  let hits = 0;
  let token: string;
  const LIMIT = 4096;

  beforeAll(async () => {
    upstream = await fakeUpstream((req, res) => {
      hits++;
      req.resume();
      req.on("end", () =>
        res
          .writeHead(200, { "content-type": "application/json" })
          .end('{"jsonrpc":"2.0","id":1,"result":{}}'),
      );
    });
    gw = await startGateway({
      servers: [{ name: "ok", upstreams: [upstream.url] }],
      edge: { headersTimeout: "400ms", requestTimeout: "700ms" },
      limits: { maxRequestBytes: LIMIT, maxBatchSize: 4 },
    });
    token = await gw.token("tester");
  });
  afterAll(async () => {
    await gw?.close();
    await upstream?.close();
  });

  const auth = () => ({ authorization: `Bearer ${token}` });

  async function refused(
    r: Awaited<ReturnType<typeof httpCall>>,
    status: number,
    code: number,
    reason: string,
  ): Promise<void> {
    expect(r.status).toBe(status);
    expect(r.messages[0]).toMatchObject({ jsonrpc: "2.0", error: { code, data: { reason } } });
    expect(r.text).not.toMatch(/\n\s+at |node:internal|\.ts:\d+/);
    const requestId = (r.messages[0] as { error: { data: { request_id: string } } }).error.data.request_id;
    const audits = await gw.log.auditFor(requestId);
    expect(audits).toHaveLength(1);
    expect(audits[0]).toMatchObject({ status, reasons: [reason] });
  }

  it("wrong content-type: 415", async () => {
    const before = hits;
    const r = await httpCall(gw.url("ok"), {
      headers: { ...MCP_HEADERS, ...auth(), "content-type": "text/plain" },
      body: rpc("ping"),
    });
    await refused(r, 415, -32600, "unsupported_media_type");
    expect(hits).toBe(before);
  });

  it("Accept without text/event-stream (POST) or without it at all (GET): 406", async () => {
    await refused(
      await httpCall(gw.url("ok"), {
        headers: { ...MCP_HEADERS, ...auth(), accept: "application/json" },
        body: rpc("ping"),
      }),
      406,
      -32600,
      "not_acceptable",
    );
    await refused(
      await httpCall(gw.url("ok"), {
        headers: { "content-type": "application/json", ...auth() },
        body: rpc("ping"),
      }),
      406,
      -32600,
      "not_acceptable",
    );
    await refused(
      await httpCall(gw.url("ok"), { method: "GET", headers: { ...auth(), accept: "application/json" } }),
      406,
      -32600,
      "not_acceptable",
    );
  });

  it("other HTTP methods: 405 with Allow", async () => {
    const r = await httpCall(gw.url("ok"), {
      method: "PUT",
      headers: { ...MCP_HEADERS, ...auth() },
      body: rpc("ping"),
    });
    await refused(r, 405, -32600, "http_method_not_allowed");
    expect(r.headers.allow).toBe("GET, POST, DELETE");
  });

  it("declared body over the limit: 413 before reading it", async () => {
    const before = hits;
    const raw = await rawHttp(
      gw.edge.port,
      [
        "POST /mcp/ok HTTP/1.1",
        "host: 127.0.0.1",
        "content-type: application/json",
        "accept: application/json, text/event-stream",
        `authorization: Bearer ${token}`,
        `content-length: ${LIMIT * 100}`,
        "",
        '{"jsonrpc":"2.0",',
      ].join("\r\n"),
    );
    const r = parseRawResponse(raw);
    expect(r.status).toBe(413);
    expect(r.headers.connection).toBe("close");
    expect(JSON.parse(r.body)).toMatchObject({ error: { data: { reason: "body_too_large" } } });
    expect(hits).toBe(before);
  });

  it("chunked body crossing the limit: 413 while the client is still sending", async () => {
    const head = [
      "POST /mcp/ok HTTP/1.1",
      "host: 127.0.0.1",
      "content-type: application/json",
      "accept: application/json, text/event-stream",
      `authorization: Bearer ${token}`,
      "transfer-encoding: chunked",
      "",
      "",
    ].join("\r\n");
    const chunk = "a".repeat(1024);
    // LIMIT + 1 KiB of chunks, and no terminating chunk: the body never ends.
    let payload = head;
    for (let i = 0; i < LIMIT / 1024 + 1; i++) payload += `${chunk.length.toString(16)}\r\n${chunk}\r\n`;
    const r = parseRawResponse(await rawHttp(gw.edge.port, payload));
    expect(r.status).toBe(413);
    expect(r.body).toContain('"reason":"body_too_large"');
  });

  it("slow-loris headers: 408 after headersTimeout, connection closed", async () => {
    const raw = await rawHttp(gw.edge.port, "POST /mcp/ok HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: appl");
    const r = parseRawResponse(raw);
    expect(r.status).toBe(408);
    expect(JSON.parse(r.body)).toMatchObject({ error: { data: { reason: "request_timeout" } } });
  });

  it("slow-loris body: 408 after requestTimeout, one audit record", async () => {
    const raw = await rawHttp(
      gw.edge.port,
      [
        "POST /mcp/ok HTTP/1.1",
        "host: 127.0.0.1",
        "content-type: application/json",
        "accept: application/json, text/event-stream",
        `authorization: Bearer ${token}`,
        "content-length: 200",
        "",
        '{"jsonrpc":',
      ].join("\r\n"),
    );
    const r = parseRawResponse(raw);
    expect(r.status).toBe(408);
    const body = JSON.parse(r.body) as { error: { data: { reason: string; request_id: string } } };
    expect(body.error.data.reason).toBe("request_timeout");
    const audits = await gw.log.auditFor(body.error.data.request_id);
    expect(audits).toMatchObject([{ status: 408, reasons: ["request_timeout"], agent: "tester" }]);
  });

  it("malformed HTTP: a bare 400, oversized headers: 431 with headers_too_large", async () => {
    const dup = parseRawResponse(
      await rawHttp(
        gw.edge.port,
        "POST /mcp/ok HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab",
      ),
    );
    expect(dup.status).toBe(400);
    const big = parseRawResponse(
      await rawHttp(
        gw.edge.port,
        `GET /mcp/ok HTTP/1.1\r\nhost: 127.0.0.1\r\nx-big: ${"a".repeat(70_000)}\r\n\r\n`,
      ),
    );
    expect(big.status).toBe(431);
    expect(JSON.parse(big.body)).toMatchObject({
      id: null,
      error: { data: { reason: "headers_too_large" } },
    });
  });

  it("unknown server: 404 with a JSON-RPC error", async () => {
    const r = await httpCall(gw.url("nope"), { headers: { ...MCP_HEADERS, ...auth() }, body: rpc("ping") });
    await refused(r, 404, -32601, "server_unknown");
  });

  it("traversal and encoding tricks never reach a server", async () => {
    const before = hits;
    const paths = [
      "/mcp/../mcp/ok",
      "/mcp/%2e%2e/ok",
      "/mcp/ok/",
      "/mcp/OK",
      "/mcp/%6fk",
      "/mcp/ok%00",
      "/mcp/ok%2F..%2Fok",
      "//mcp/ok",
      "/mcp//ok",
      "/mcp/ok/../ok",
      "/./mcp/ok",
      "/mcp/ok;x=1",
      "/MCP/ok",
      // `/mcp` itself is the aggregated endpoint (test/broker/); its neighbours are not routes.
      "/mcp/",
      "/mcp/views",
      "/mcp/views/",
      "/mcp/views/Ok",
      "/",
    ];
    for (const path of paths) {
      const raw = await rawHttp(
        gw.edge.port,
        `POST ${path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\nauthorization: Bearer ${token}\r\ncontent-length: ${rpc("ping").length}\r\nconnection: close\r\n\r\n${rpc("ping")}`,
      );
      const r = parseRawResponse(raw);
      expect([path, r.status]).toEqual([path, 404]);
      expect(JSON.parse(r.body)).toMatchObject({
        error: { code: -32601, data: { reason: "server_unknown" } },
      });
    }
    const absolute = parseRawResponse(
      await rawHttp(
        gw.edge.port,
        `GET http://evil.example/mcp/ok HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n`,
      ),
    );
    expect(absolute.status).toBe(404);
    expect(hits).toBe(before);
    // ...a query string is refused, never forwarded (security review F15)...
    const query = await httpCall(`${gw.url("ok")}?trace=1`, {
      headers: { ...MCP_HEADERS, ...auth() },
      body: rpc("ping"),
    });
    expect(query.status).toBe(400);
    expect(query.messages[0]).toMatchObject({ error: { data: { reason: "query_not_allowed" } } });
    expect(hits).toBe(before);
    // ...while the plain path works
    const ok = await httpCall(gw.url("ok"), { headers: { ...MCP_HEADERS, ...auth() }, body: rpc("ping") });
    expect(ok.status).toBe(200);
    expect(hits).toBe(before + 1);
  });

  it("malformed JSON: 400 -32700", async () => {
    await refused(
      await httpCall(gw.url("ok"), {
        headers: { ...MCP_HEADERS, ...auth() },
        body: '{"jsonrpc": "2.0", "id": 1,',
      }),
      400,
      -32700,
      "parse_error",
    );
  });

  it("not JSON-RPC: 400 -32600", async () => {
    await refused(
      await httpCall(gw.url("ok"), { headers: { ...MCP_HEADERS, ...auth() }, body: '{"hello":"world"}' }),
      400,
      -32600,
      "invalid_request",
    );
  });

  it("batch over the limit: 400", async () => {
    const batch = JSON.stringify([1, 2, 3, 4, 5].map((id) => ({ jsonrpc: "2.0", id, method: "ping" })));
    await refused(
      await httpCall(gw.url("ok"), { headers: { ...MCP_HEADERS, ...auth() }, body: batch }),
      400,
      -32600,
      "batch_too_large",
    );
  });

  it("non-UTF-8 body: 400", async () => {
    const body = Buffer.concat([
      Buffer.from('{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"'),
      Buffer.from([0xc3, 0x28]),
      Buffer.from('"}}'),
    ]);
    await refused(
      await httpCall(gw.url("ok"), { headers: { ...MCP_HEADERS, ...auth() }, body }),
      400,
      -32700,
      "invalid_utf8",
    );
  });

  it("the request timeouts never cut a response that streams longer than them", async () => {
    // requestTimeout is 700ms here; this upstream streams for ~1.2s after the request arrived
    const slow = await fakeUpstream((req, res) => {
      req.resume();
      req.on("end", () => {
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.write(": open\n\n");
        // An answer to the POST's request; on the GET stream, a notification (a GET carries no
        // request, so an answer there would be dropped as unmatched: security review F4).
        const late =
          req.method === "GET"
            ? '{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":{"late":true}}}'
            : '{"jsonrpc":"2.0","id":1,"result":{"late":true}}';
        setTimeout(() => res.end(`data: ${late}\n\n`), 1200);
      });
    });
    const late = await startGateway({
      servers: [{ name: "slow", upstreams: [slow.url] }],
      edge: { headersTimeout: "400ms", requestTimeout: "700ms" },
    });
    try {
      const post = await httpCall(late.url("slow"), {
        headers: { ...MCP_HEADERS, authorization: `Bearer ${await late.token("tester")}` },
        body: rpc("ping"),
      });
      expect(post.status).toBe(200);
      expect(post.messages).toEqual([{ jsonrpc: "2.0", id: 1, result: { late: true } }]);
      const get = await httpCall(late.url("slow"), {
        method: "GET",
        headers: { accept: "text/event-stream", authorization: `Bearer ${await late.token("tester")}` },
      });
      expect(get.status).toBe(200);
      expect(get.text).toContain('"late":true');
    } finally {
      await late.close();
      await slow.close();
    }
  });

  it("still serves after all of it", async () => {
    const r = await httpCall(gw.url("ok"), { headers: { ...MCP_HEADERS, ...auth() }, body: rpc("ping") });
    expect(r.status).toBe(200);
    await waitFor(() => gw.log.audits.every((a) => typeof a.status === "number"));
  });
});
