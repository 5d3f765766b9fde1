import { connect, constants, type ClientHttp2Session, type OutgoingHttpHeaders } from "node:http2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ExchangeTrace } from "../../ext-service/src/envoy/envoy-model.js";
import { startEnvoyRoleFront, type EnvoyRoleFront } from "../../ext-service/src/envoy/envoy-role-front.js";
import { MCP_POST_HEADERS, startGateway, type Gateway } from "./harness.js";

/**
 * Request headers over max_request_headers_kb (60 KiB) or max_headers_count (100) on a downstream
 * HTTP/2 connection, as Envoy's HTTP/2 codec treats them (http2/codec_impl.cc saveHeader, nghttp2's
 * answer to a temporal callback failure): the stream is reset with RST_STREAM INTERNAL_ERROR, no
 * 431 and no JSON-RPC body (that is HTTP/1's answer), and the connection's other streams go on.
 * Just under either limit the request is read and goes through the filter chain.
 */

const LIMIT = 60 * 1024;

describe("Envoy-role front over HTTP/2 (h2c): the codec's request header limits", () => {
  let gw: Gateway;
  let front: EnvoyRoleFront;
  let session: ClientHttp2Session;
  const resets: string[] = [];
  const traces: ExchangeTrace[] = [];

  beforeAll(async () => {
    gw = await startGateway();
    front = await startEnvoyRoleFront({
      extService: gw.service.grpcAddress,
      upstreams: { tickets: "http://127.0.0.1:1/mcp" },
      http2: true,
      onCodecReset: (details) => resets.push(details),
      onExchange: (trace) => traces.push(trace),
    });
    // The client's own limits out of the way: what is refused, the front refused.
    session = connect(front.h2Url!, {
      maxSendHeaderBlockLength: 1 << 20,
      settings: { maxHeaderListSize: 1 << 20 },
    });
  });
  afterAll(async () => {
    session?.close();
    await front?.close();
    await gw?.close();
  });

  const body = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" });

  /** The request's pseudo-headers as the client sends them, and their size (names and values). */
  function pseudo(): [OutgoingHttpHeaders, number] {
    const h = {
      ":method": "POST",
      ":path": "/mcp/tickets",
      ":scheme": "http",
      ":authority": new URL(front.h2Url!).host,
    };
    return [h, Object.entries(h).reduce((n, [k, v]) => n + k.length + v.length, 0)];
  }

  /** A POST whose headers (pseudo-headers included) add up to exactly `size` bytes. */
  function ofSize(size: number): OutgoingHttpHeaders {
    const [h, used0] = pseudo();
    let used = used0;
    for (const [k, v] of Object.entries(MCP_POST_HEADERS)) used += k.length + v.length;
    const token = "a".repeat(size - used - "authorization".length - "Bearer ".length);
    return { ...h, ...MCP_POST_HEADERS, authorization: `Bearer ${token}` };
  }

  /** `count` headers in all (pseudo-headers included), small ones. */
  function ofCount(count: number): OutgoingHttpHeaders {
    const [h] = pseudo();
    const out: OutgoingHttpHeaders = { ...h, ...MCP_POST_HEADERS };
    for (let i = Object.keys(out).length; i < count; i++) out[`x-pad-${i}`] = "p";
    return out;
  }

  function send(headers: OutgoingHttpHeaders): Promise<{ status?: number; body: string; rstCode: number }> {
    return new Promise((resolve, reject) => {
      const stream = session.request(headers);
      let status: number | undefined;
      let text = "";
      stream.on("response", (h) => (status = Number(h[":status"])));
      stream.setEncoding("utf8");
      stream.on("data", (chunk: string) => (text += chunk));
      stream.on("error", () => undefined);
      stream.on("close", () => resolve({ status, body: text, rstCode: stream.rstCode ?? 0 }));
      stream.on("aborted", () => undefined);
      stream.end(body);
      setTimeout(() => reject(new Error("no answer")), 10_000).unref();
    });
  }

  it("headers of exactly max_request_headers_kb are read; one byte more resets the stream (INTERNAL_ERROR), no 431", async () => {
    const under = await send(ofSize(LIMIT));
    // Read, and refused for what it is by ext_authz: a bearer value that is no JWT.
    expect(under.status).toBe(401);
    expect(JSON.parse(under.body)).toMatchObject({ error: { data: { reason: "token_malformed" } } });
    const seen = traces.length;

    const over = await send(ofSize(LIMIT + 1));
    expect(over.status).toBeUndefined();
    expect(over.body).toBe("");
    expect(over.rstCode).toBe(constants.NGHTTP2_INTERNAL_ERROR);
    expect(resets).toEqual(["http2.too_many_headers"]);
    // No filter ran: ext_authz and ext_proc never saw it.
    expect(traces.length).toBe(seen);

    // The connection goes on: the next stream on it is answered.
    const after = await send(ofSize(1024));
    expect(after.status).toBe(401);
    expect(session.closed || session.destroyed).toBe(false);
  });

  it("max_headers_count headers are read; one more resets the stream", async () => {
    resets.length = 0;
    const atLimit = await send(ofCount(100));
    expect(atLimit.rstCode).toBe(0);
    expect(atLimit.status).toBe(401);
    const over = await send(ofCount(101));
    expect(over.status).toBeUndefined();
    expect(over.rstCode).toBe(constants.NGHTTP2_INTERNAL_ERROR);
    expect(resets).toEqual(["http2.too_many_headers"]);
  });
});
