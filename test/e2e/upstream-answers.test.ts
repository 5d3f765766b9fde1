import type { IncomingMessage, ServerResponse } from "node:http";
import { gzipSync } from "node:zlib";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  fakeUpstream,
  httpCall,
  MCP_HEADERS,
  rawHttp,
  parseRawResponse,
  rpc,
  startGateway,
  waitFor,
  type Gateway,
} from "./harness.js";
import { startGateway as startEnvoyGateway, type Gateway as EnvoyGateway } from "../envoy/harness.js";

/**
 * What crosses the gateway besides JSON-RPC, on both planes (security review F14, F15, F17):
 * upstream redirects and authentication challenges are refused, cookies withheld, a refused
 * compressed body loses its content-encoding; the client's query string, odd header names and
 * forwarding headers do not reach a server; one agent cannot hold unbounded streams (edge).
 */

const ok = (id: unknown) => JSON.stringify({ jsonrpc: "2.0", id, result: {} });

/** One fake server; the path picks its misbehaviour. Records what it received. */
async function misbehaving() {
  const seen: { url: string; headers: IncomingMessage["headers"] }[] = [];
  const streams: ServerResponse[] = [];
  const fake = await fakeUpstream((req: IncomingMessage, res: ServerResponse) => {
    seen.push({ url: req.url ?? "", headers: req.headers });
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const id = chunks.length ? (JSON.parse(Buffer.concat(chunks).toString()) as { id?: unknown }).id : null;
      const path = (req.url ?? "").split("?")[0];
      if (path === "/redirect") {
        res.writeHead(307, { location: "http://attacker.example/direct" }).end();
      } else if (path === "/challenge") {
        res
          .writeHead(401, {
            "www-authenticate":
              'Bearer resource_metadata="https://evil.example/.well-known/oauth-protected-resource"',
            "content-type": "application/json",
          })
          .end('{"error":"invalid_token"}');
      } else if (path === "/forbidden") {
        res.writeHead(403, { "content-type": "text/plain" }).end("no");
      } else if (path === "/cookie") {
        res
          .writeHead(200, { "content-type": "application/json", "set-cookie": "gw_session=attacker; Path=/" })
          .end(ok(id));
      } else if (path === "/gzip") {
        res
          .writeHead(200, { "content-type": "application/json", "content-encoding": "gzip" })
          .end(gzipSync(ok(id)));
      } else if (req.method === "GET") {
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.write(": open\n\n");
        streams.push(res);
      } else {
        res.writeHead(200, { "content-type": "application/json" }).end(ok(id));
      }
    });
  });
  const base = `http://127.0.0.1:${fake.port}`;
  return { ...fake, base, seen, streams };
}

describe("upstream answers and client requests through the local edge", () => {
  let up: Awaited<ReturnType<typeof misbehaving>>;
  let gw: Gateway;
  let token: string;

  beforeAll(async () => {
    up = await misbehaving();
    gw = await startGateway({
      servers: ["redirect", "challenge", "forbidden", "cookie", "gzip", "echo"].map((name) => ({
        name,
        upstreams: [`${up.base}/${name}`],
      })),
      edge: {
        perAgent: { maxRequests: 8, maxStreams: 2 },
        breaker: { consecutiveFailures: 2, cooldown: "60s" },
        rateLimit: { requestsPerSecond: 1000, burst: 1000 },
      },
    });
    token = await gw.token("tester");
  });
  afterAll(async () => {
    for (const s of up.streams) s.destroy();
    await gw?.close();
    await up?.close();
  });

  const post = (server: string, headers: Record<string, string> = {}, path = "") =>
    httpCall(gw.url(server) + path, {
      headers: { ...MCP_HEADERS, authorization: `Bearer ${token}`, ...headers },
      body: rpc("ping"),
    });

  it("refuses an upstream redirect, 401 or 403 with its own error: no Location, no upstream challenge", async () => {
    for (const server of ["redirect", "challenge", "forbidden", "redirect", "challenge"]) {
      const r = await post(server);
      expect(r.status, server).toBe(502);
      expect(r.headers.location).toBeUndefined();
      expect(r.headers["www-authenticate"]).toBeUndefined();
      expect(r.messages[0]).toMatchObject({ error: { data: { reason: "upstream_invalid_response" } } });
    }
    // Not outages: the breaker (2 failures) stays closed.
    expect((await post("redirect")).messages[0]).toMatchObject({
      error: { data: { reason: "upstream_invalid_response" } },
    });
  });

  it("withholds Set-Cookie, and drops content-encoding from the refusal of a compressed body", async () => {
    const cookie = await post("cookie");
    expect(cookie.status).toBe(200);
    expect(cookie.headers["set-cookie"]).toBeUndefined();
    const gz = await post("gzip");
    expect(gz.status).toBe(502);
    expect(gz.headers["content-encoding"]).toBeUndefined();
    expect(JSON.parse(gz.text)).toMatchObject({ error: { data: { reason: "upstream_invalid_response" } } });
  });

  it("refuses a query string (nothing reaches the server) and odd header names; strips forwarding headers", async () => {
    const before = up.seen.length;
    const q = await post("echo", {}, "?tenant=evilcorp&access_token=abc");
    expect(q.status).toBe(400);
    expect(q.messages[0]).toMatchObject({ error: { data: { reason: "query_not_allowed" } } });
    expect(up.seen.length).toBe(before);

    const body = rpc("ping");
    for (const name of ["x_mcp_agent", "x.mcp.agent"]) {
      const raw = parseRawResponse(
        await rawHttp(
          gw.edge.port,
          [
            "POST /mcp/echo HTTP/1.1",
            "host: 127.0.0.1",
            "content-type: application/json",
            "accept: application/json, text/event-stream",
            `authorization: Bearer ${token}`,
            `${name}: admin-bot`,
            "connection: close",
            `content-length: ${Buffer.byteLength(body)}`,
            "",
            body,
          ].join("\r\n"),
        ),
      );
      expect(raw.status, name).toBe(400);
      expect(raw.body).toContain("header_name_invalid");
    }
    expect(up.seen.length).toBe(before);

    const r = await post("echo", {
      forwarded: "for=10.0.0.1;host=internal.corp",
      "x-forwarded-for": "10.0.0.1",
      "x-forwarded-host": "internal.corp",
      "x-real-ip": "10.0.0.1",
    });
    expect(r.status).toBe(200);
    const got = up.seen.at(-1)!;
    expect(got.url).toBe("/echo");
    for (const name of ["forwarded", "x-forwarded-for", "x-forwarded-host", "x-real-ip"]) {
      expect(got.headers[name], name).toBeUndefined();
    }
  });

  it("caps one agent's open streams; another agent is not affected, a closed stream frees its slot", async () => {
    const open = async (agent: string) => {
      const controller = new AbortController();
      const res = await request(gw.url("echo"), {
        method: "GET",
        headers: { accept: "text/event-stream", authorization: `Bearer ${await gw.token(agent)}` },
        signal: controller.signal,
      });
      return { status: res.statusCode, res, close: () => controller.abort() };
    };
    const first = await open("tester");
    const second = await open("tester");
    expect([first.status, second.status]).toEqual([200, 200]);
    const third = await open("tester");
    expect(third.status).toBe(429);
    expect(JSON.parse(await third.res.body.text())).toMatchObject({
      error: { data: { reason: "concurrency_limited" } },
    });
    const other = await open("other");
    expect(other.status).toBe(200);
    first.close();
    await first.res.body.text().catch(() => undefined);
    let again = await open("tester");
    for (let i = 0; i < 50 && again.status !== 200; i++) {
      await again.res.body.text().catch(() => undefined);
      await new Promise((r) => setTimeout(r, 20));
      again = await open("tester");
    }
    expect(again.status).toBe(200);
    for (const s of [second, other, again]) {
      s.close();
      await s.res.body.text().catch(() => undefined);
    }
    await waitFor(() => gw.log.audits.some((a) => a.reasons.includes("concurrency_limited" as never)));
  });
});

describe("upstream answers and client requests through the Envoy adapters", () => {
  let gw: EnvoyGateway;
  let token: string;
  beforeAll(async () => {
    gw = await startEnvoyGateway();
    token = await gw.token("support-bot");
  });
  afterAll(async () => {
    await gw?.close();
  });

  const post = (path = "/mcp/tickets") => ({
    method: "POST",
    path,
    headers: { ...MCP_HEADERS, authorization: `Bearer ${token}` },
    body: rpc("ping"),
  });

  it("refuses an upstream redirect, 401 or 403 at response headers, with no Location or challenge", async () => {
    const answers: [number, Record<string, string>][] = [
      [307, { location: "http://attacker.example/direct" }],
      [401, { "www-authenticate": 'Bearer resource_metadata="https://evil.example/x"' }],
      [403, {}],
    ];
    for (const [status, headers] of answers) {
      const r = await gw.client.exchange(post(), () => ({ status, headers, body: "" }));
      expect(r.answeredBy, String(status)).toBe("ext_proc");
      expect(r.response.status).toBe(502);
      expect(r.response.headers.location).toBeUndefined();
      expect(r.response.headers["www-authenticate"]).toBeUndefined();
      expect(JSON.parse(r.response.body.toString())).toMatchObject({
        error: { data: { reason: "upstream_invalid_response" } },
      });
    }
  });

  it("withholds Set-Cookie and drops content-encoding from the refusal of a compressed body", async () => {
    const cookie = await gw.client.exchange(post(), () => ({
      status: 200,
      headers: { "content-type": "application/json", "set-cookie": "gw_session=attacker" },
      body: ok(1),
    }));
    expect(cookie.response.status).toBe(200);
    expect(cookie.response.headers["set-cookie"]).toBeUndefined();
    const gz = await gw.client.exchange(post(), () => ({
      status: 200,
      headers: { "content-type": "application/json", "content-encoding": "gzip" },
      body: gzipSync(ok(1)),
    }));
    expect(gz.response.status).toBe(502);
    expect(gz.response.headers["content-encoding"]).toBeUndefined();
  });

  it("refuses a query string at ext_authz: nothing reaches the server", async () => {
    const r = await gw.client.exchange(post("/mcp/tickets?tenant=evilcorp"), () => {
      throw new Error("must not reach the upstream");
    });
    expect([r.answeredBy, r.response.status]).toEqual(["ext_authz", 400]);
    expect(JSON.parse(r.response.body.toString()).error.data.reason).toBe("query_not_allowed");
  });
});
