import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { EXT_AUTHZ_NAMESPACE } from "../../ext-service/src/envoy/context.js";
import type {
  EnvoyExchange,
  HttpRequestSpec,
  Upstream,
} from "../../ext-service/src/envoy/envoy-role-client.js";
import { envoyProtos } from "../../ext-service/src/envoy/protos.js";
import type { Metadata, ProcessingRequest, ProcessingResponse } from "../../ext-service/src/envoy/types.js";
import { MCP_POST_HEADERS, jsonResult, startGateway, toolsCall, type Gateway } from "./harness.js";

let gw: Gateway;
let token: string;
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);

beforeAll(async () => {
  process.on("unhandledRejection", onUnhandled);
  gw = await startGateway();
  token = await gw.token("support-bot");
});
afterAll(async () => {
  await gw.close();
  process.off("unhandledRejection", onUnhandled);
  expect(unhandled).toEqual([]);
  expect(gw.logs.text()).not.toContain(token);
});

const unreachable: Upstream = () => {
  throw new Error("must not reach the upstream");
};

function post(body: string | Uint8Array): HttpRequestSpec {
  return {
    method: "POST",
    path: "/mcp/tickets",
    headers: { ...MCP_POST_HEADERS, authorization: `Bearer ${token}` },
    body,
  };
}

function errorOf(r: EnvoyExchange): { code: number; data: { reason: string; request_id: string } } {
  return (JSON.parse(r.response.body.toString()) as { error: never }).error;
}

function raw(headers: Record<string, string>) {
  return { headers: Object.entries(headers).map(([key, v]) => ({ key, raw_value: Buffer.from(v) })) };
}

/** ext_authz's metadata for a real admitted request, as Envoy would forward it to ext_proc. */
async function admittedMetadata(): Promise<{ metadata: Metadata; requestId: string }> {
  const headers = { ":method": "POST", ":path": "/mcp/tickets", authorization: `Bearer ${token}` };
  const check = await gw.client.check(
    gw.client.checkRequest({ method: "POST", path: "/mcp/tickets" }, headers),
  );
  const requestId = check.dynamic_metadata!.fields!.request_id!.stringValue!;
  return { metadata: { filter_metadata: { [EXT_AUTHZ_NAMESPACE]: check.dynamic_metadata! } }, requestId };
}

function requestHeaders(metadata: Metadata | undefined, requestId: string, eos = false): ProcessingRequest {
  return {
    request_headers: {
      headers: raw({
        ":method": "POST",
        ":path": "/mcp/tickets",
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
        "x-mcp-request-id": requestId,
      }),
      end_of_stream: eos,
    },
    ...(metadata ? { metadata_context: metadata } : {}),
  };
}

async function reply(call: ReturnType<Gateway["client"]["openProcess"]>): Promise<ProcessingResponse> {
  const event = await call.next();
  if (event.kind !== "reply") throw new Error(`expected a reply, got ${event.kind}`);
  return event.reply;
}

function immediateStatus(r: ProcessingResponse): number {
  return envoyProtos().httpStatusNumber(r.immediate_response?.status.code);
}

describe("bad request bodies over gRPC", () => {
  const cases: [string, string | Uint8Array, number, number, string][] = [
    ["malformed JSON", '{"jsonrpc":"2.0",', 400, -32700, "parse_error"],
    ["JSON that is not JSON-RPC", '{"hello":"world"}', 400, -32600, "invalid_request"],
    ["a missing jsonrpc member", '{"id":1,"method":"ping"}', 400, -32600, "invalid_request"],
    ["a wrong jsonrpc version", '{"jsonrpc":"1.0","id":1,"method":"ping"}', 400, -32600, "invalid_request"],
    ["an unknown method", '{"jsonrpc":"2.0","id":4,"method":"tools/destroy"}', 200, -32601, "method_unknown"],
    ["non-UTF-8 bytes", Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]), 400, -32700, "invalid_utf8"],
    [
      "a body over the limit",
      JSON.stringify(toolsCall(1, "list_tickets", { pad: "x".repeat(5000) })),
      413,
      -32600,
      "body_too_large",
    ],
    [
      "nesting deeper than the limit",
      `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"a":${"[".repeat(20)}${"]".repeat(20)}}}`,
      400,
      -32600,
      "json_too_deep",
    ],
    [
      "a batch over the limit",
      JSON.stringify([1, 2, 3, 4].map((i) => toolsCall(i, "list_tickets"))),
      400,
      -32600,
      "batch_too_large",
    ],
    ["an empty batch", "[]", 400, -32600, "batch_empty"],
    ["an empty POST body", "", 400, -32700, "parse_error"],
  ];
  for (const [name, body, status, code, reason] of cases) {
    it(`answers ${name} with ${status} and a JSON-RPC error (${reason})`, async () => {
      const r = await gw.client.exchange(post(body), unreachable);
      expect(r.answeredBy).toBe("ext_proc");
      expect(r.response.status).toBe(status);
      const error = errorOf(r);
      expect(error.code).toBe(code);
      expect(error.data.reason).toBe(reason);
      expect(r.received.at(-1)!.immediate_response!.details).toBe(reason);
      expect(gw.logs.auditsFor(error.data.request_id)).toEqual([
        expect.objectContaining({ status, reasons: [reason] }),
      ]);
    });
  }
});

describe("bad upstream streams", () => {
  it("drops an SSE event cut off by the end of the stream, delivering the complete ones", async () => {
    const complete = `event: message\ndata: ${jsonResult(1, { content: [] })}\n\n`;
    const cut = `event: message\ndata: {"jsonrpc":"2.0","id":2,"res`;
    const r = await gw.client.exchange(post(JSON.stringify(toolsCall(1, "list_tickets"))), () => ({
      status: 200,
      headers: { "content-type": "text/event-stream" },
      body: [complete.slice(0, 9), complete.slice(9) + cut.slice(0, 12), cut.slice(12)],
      finalEmptyChunk: true,
    }));
    expect(r.response.body.toString()).toBe(complete);
    const audit = gw.logs.auditsFor(r.authzMetadata!.request_id as string)[0]!;
    expect(audit.counters).toEqual({ sse_truncated_events: 1 });
  });

  it("answers an SSE event larger than the limit with an error event and drops the rest", async () => {
    const big = `event: message\ndata: ${jsonResult(1, { text: "y".repeat(3000) })}\n\n`;
    const r = await gw.client.exchange(post(JSON.stringify(toolsCall(1, "list_tickets"))), () => ({
      status: 200,
      headers: { "content-type": "text/event-stream" },
      body: [big.slice(0, 1500), big.slice(1500, 2600), big.slice(2600)],
    }));
    const text = r.response.body.toString();
    expect(text).toContain('"reason":"response_too_large"');
    expect(text).not.toContain("yyyy");
  });

  it("answers every chunk of an SSE stream that never ends, then cleans up when Envoy resets it", async () => {
    const { metadata, requestId } = await admittedMetadata();
    const call = gw.client.openProcess();
    call.send(requestHeaders(metadata, requestId));
    expect((await reply(call)).response).toBe("request_headers");
    call.send({
      request_body: { body: Buffer.from(JSON.stringify(toolsCall(1, "list_tickets"))), end_of_stream: true },
    });
    expect((await reply(call)).response).toBe("request_body");
    call.send({
      response_headers: { headers: raw({ ":status": "200", "content-type": "text/event-stream" }) },
    });
    expect((await reply(call)).mode_override?.response_body_mode).toBe("STREAMED");
    const event = `event: message\ndata: ${JSON.stringify({ jsonrpc: "2.0", method: "notifications/message", params: { level: "info", data: "tick" } })}\n\n`;
    for (let i = 0; i < 20; i++) {
      // Half an event, then the rest: each chunk is answered before the next is sent.
      call.send({ response_body: { body: Buffer.from(event.slice(0, 17)) } });
      const first = await reply(call);
      expect(first.response_body!.response!.body_mutation!.body!.byteLength).toBe(0);
      call.send({ response_body: { body: Buffer.from(event.slice(17)) } });
      const second = await reply(call);
      // The completing chunk carries the whole event (its first half was held back).
      expect(Buffer.from(second.response_body!.response!.body_mutation!.body!).toString()).toBe(event);
    }
    expect(gw.logs.auditsFor(requestId)).toEqual([]);
    call.cancel();
    await vi.waitFor(() => expect(gw.logs.auditsFor(requestId)).toHaveLength(1));
    expect(gw.logs.auditsFor(requestId)[0]).toMatchObject({ status: 200, decision: "allow" });
  });
});

describe("gRPC protocol misuse", () => {
  it("answers a response body before any headers with a 500 immediate response", async () => {
    const call = gw.client.openProcess();
    call.send({ response_body: { body: Buffer.from("hello"), end_of_stream: true } });
    const r = await reply(call);
    expect(immediateStatus(r)).toBe(500);
    const body = JSON.parse(Buffer.from(r.immediate_response!.body!).toString());
    expect(body.error.data.reason).toBe("internal_error");
    expect(gw.logs.auditsFor(body.error.data.request_id)).toHaveLength(1);
    call.end();
    await call.closed;
  });

  it("answers a second request_headers message with a 500 immediate response", async () => {
    const { metadata, requestId } = await admittedMetadata();
    const call = gw.client.openProcess();
    call.send(requestHeaders(metadata, requestId));
    expect((await reply(call)).response).toBe("request_headers");
    call.send(requestHeaders(metadata, requestId));
    expect(immediateStatus(await reply(call))).toBe(500);
    call.end();
    await call.closed;
    expect(gw.logs.auditsFor(requestId)).toEqual([
      expect.objectContaining({ status: 500, decision: "error", reasons: ["internal_error"] }),
    ]);
    expect(gw.logs.records().some((l) => l.msg === "ext_proc: unexpected message from Envoy")).toBe(true);
  });

  it("refuses a 200 on a POST whose body was never inspected (no local reply is a 200 there)", async () => {
    const { metadata, requestId } = await admittedMetadata();
    const call = gw.client.openProcess();
    call.send(requestHeaders(metadata, requestId));
    await reply(call);
    call.send({
      response_headers: { headers: raw({ ":status": "200", "content-type": "application/json" }) },
    });
    expect(immediateStatus(await reply(call))).toBe(500);
    call.end();
    await call.closed;
  });

  it("refuses a request body that is not sent BUFFERED", async () => {
    const { metadata, requestId } = await admittedMetadata();
    const call = gw.client.openProcess();
    call.send(requestHeaders(metadata, requestId));
    await reply(call);
    call.send({ request_body: { body: Buffer.from('{"jsonrpc":'), end_of_stream: false } });
    expect(immediateStatus(await reply(call))).toBe(500);
    call.end();
    await call.closed;
  });

  it("fails closed when ext_authz metadata is not forwarded (or forged)", async () => {
    const client = gw.newClient({ forwardAuthzMetadata: false });
    const r = await client.exchange(post(JSON.stringify(toolsCall(1, "list_tickets"))), unreachable);
    expect(r.response.status).toBe(500);
    expect(errorOf(r).data.reason).toBe("internal_error");

    const { metadata, requestId } = await admittedMetadata();
    const forged = structuredClone(metadata);
    forged.filter_metadata![EXT_AUTHZ_NAMESPACE]!.fields!.claims = { stringValue: "not json" };
    const call = gw.client.openProcess();
    call.send(requestHeaders(forged, requestId));
    expect(immediateStatus(await reply(call))).toBe(500);
    call.end();
    await call.closed;
  });

  it("cleans up a stream Envoy resets mid-request: one audit record, no crash", async () => {
    const { metadata, requestId } = await admittedMetadata();
    const call = gw.client.openProcess();
    call.send(requestHeaders(metadata, requestId));
    await reply(call);
    call.cancel();
    await vi.waitFor(() => expect(gw.logs.auditsFor(requestId)).toHaveLength(1));
    expect(gw.logs.auditsFor(requestId)[0]).toMatchObject({ status: null, agent: "support-bot" });

    // The service carries on.
    const r = await gw.client.exchange(post(JSON.stringify(toolsCall(2, "list_tickets"))), () => ({
      status: 200,
      headers: { "content-type": "application/json" },
      body: jsonResult(2, {}),
    }));
    expect(r.response.status).toBe(200);
    expect(gw.logs.auditsFor(requestId)).toHaveLength(1);
  });

  it("ignores messages after an immediate response instead of answering twice", async () => {
    const { metadata, requestId } = await admittedMetadata();
    const call = gw.client.openProcess();
    call.send(requestHeaders(metadata, requestId));
    await reply(call);
    call.send({ request_body: { body: Buffer.from("not json"), end_of_stream: true } });
    expect(immediateStatus(await reply(call))).toBe(400);
    call.send({ response_headers: { headers: raw({ ":status": "200" }) } });
    call.end();
    const next = await call.next();
    expect(next.kind).toBe("end");
    expect(gw.logs.auditsFor(requestId)).toHaveLength(1);
  });
});
