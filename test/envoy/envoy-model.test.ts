import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import type { ExchangeTrace } from "../../ext-service/src/envoy/envoy-model.js";
import {
  EnvoyRoleClient,
  type EnvoyRoleOptions,
  type HttpRequestSpec,
  type Upstream,
} from "../../ext-service/src/envoy/envoy-role-client.js";
import { rawHeader } from "../../ext-service/src/envoy/headers.js";
import type { ProcessingRequest } from "../../ext-service/src/envoy/types.js";
import {
  continueFor,
  failStream,
  startScriptedProcessor,
  type ProcessStreamCall,
  type ScriptedProcessor,
} from "./scripted-processor.js";

/**
 * The Envoy model against a scripted processor: each behaviour listed in proto/README.md
 * ("The Envoy model") that the real ext-service never provokes. Names cite the Envoy source.
 */

let proc: ScriptedProcessor;
const clients: EnvoyRoleClient[] = [];

beforeAll(async () => {
  proc = await startScriptedProcessor();
});
afterAll(async () => {
  for (const c of clients) c.close();
  await proc.close();
});
beforeEach(() => proc.reset());

function envoy(options: EnvoyRoleOptions = {}): EnvoyRoleClient {
  const c = new EnvoyRoleClient(proc.address, { messageTimeoutMs: 300, ...options });
  clients.push(c);
  return c;
}

const POST: HttpRequestSpec = {
  method: "POST",
  path: "/mcp/kb",
  headers: { "content-type": "application/json" },
  body: '{"jsonrpc":"2.0","id":1,"method":"tools/list"}',
};
const GET: HttpRequestSpec = { method: "GET", path: "/mcp/kb", headers: { accept: "text/event-stream" } };

const json =
  (body: string): Upstream =>
  () => ({
    status: 200,
    headers: { "content-type": "application/json" },
    body,
  });
const unreachable: Upstream = () => {
  throw new Error("must not reach the upstream");
};

const kinds = (messages: ProcessingRequest[]) =>
  messages.map((m) => Object.keys(m).find((k) => k !== "metadata_context" && k !== "request"));

const denied401 = () => ({
  status: { code: 16 },
  denied_response: {
    status: { code: "Unauthorized" },
    headers: [
      {
        header: { key: "www-authenticate", value: 'Bearer resource_metadata="x"' },
        append: { value: false },
      },
    ],
    body: '{"error":"no token"}',
  },
});

describe("local replies of earlier filters (filter_manager.cc sendLocalReplyViaFilterChain)", () => {
  it("an ext_authz denial runs through ext_proc's encoder path: the stream starts with response_headers", async () => {
    proc.check = denied401;
    const r = await envoy().exchange(POST, unreachable);
    expect(r.answeredBy).toBe("ext_authz");
    expect(r.response.status).toBe(401);
    expect(r.response.headers["www-authenticate"]).toBe('Bearer resource_metadata="x"');
    expect(r.response.body.toString()).toBe('{"error":"no token"}');
    expect(kinds(r.sent)).toEqual(["response_headers"]);
    expect(
      proc.streams[0]!.messages[0]!.response_headers!.headers!.headers!.find((h) => h.key === ":status"),
    ).toBeDefined();
  });

  it("the processor's answer applies to that local reply; an immediate response replaces it (review W1)", async () => {
    proc.check = denied401;
    proc.process = (m) =>
      m.request === "response_headers"
        ? { response_headers: { response: { header_mutation: { set_headers: [rawHeader("x-seen", "1")] } } } }
        : continueFor(m);
    const passed = await envoy().exchange(POST, unreachable);
    expect(passed.response.status).toBe(401);
    expect(passed.response.headers["x-seen"]).toBe("1");

    proc.process = () => ({
      immediate_response: { status: { code: "InternalServerError" }, body: Buffer.from("no") },
    });
    const replaced = await envoy().exchange(POST, unreachable);
    // sendLocalReply once response headers exist: straight to the codec, the 401 is gone.
    expect(replaced.response.status).toBe(500);
    expect(replaced.answeredBy).toBe("ext_proc");
  });

  it("with response_header_mode SKIP a local reply opens no stream; mode_override on the request-headers reply turns it on", async () => {
    const skip = {
      request_header_mode: "SEND",
      request_body_mode: "BUFFERED",
      response_header_mode: "SKIP",
      response_body_mode: "NONE",
      request_trailer_mode: "SKIP",
      response_trailer_mode: "SKIP",
    } as const;
    proc.check = denied401;
    const local = await envoy({ chain: { processingMode: skip } }).exchange(POST, unreachable);
    expect(local.response.status).toBe(401);
    expect(local.stats.streams_started).toBe(0);

    proc.reset();
    proc.process = (m) =>
      m.request === "request_headers"
        ? {
            request_headers: { response: {} },
            mode_override: { response_header_mode: "SEND", request_body_mode: "BUFFERED" },
          }
        : continueFor(m);
    const turnedOn = await envoy({ chain: { processingMode: skip } }).exchange(POST, json("{}"));
    expect(kinds(turnedOn.sent)).toEqual(["request_headers", "request_body", "response_headers"]);
  });

  it("413 while buffering the request reaches ext_proc as response_headers on the open stream", async () => {
    const r = await envoy({ chain: { bufferLimitBytes: 10 } }).exchange(POST, unreachable);
    expect(r.response.status).toBe(413);
    expect(r.details).toBe("request_payload_too_large");
    expect(kinds(r.sent)).toEqual(["request_headers", "response_headers"]);
  });

  it("local_ratelimit: 429 local_rate_limited, flag RL, rewritten by local_reply_config", async () => {
    const c = envoy({
      chain: {
        rateLimit: {
          descriptorHeader: "x-mcp-agent",
          buckets: { "bot-a": { maxTokens: 1, tokensPerFill: 1, fillIntervalMs: 60_000 } },
          fallback: { maxTokens: 100, tokensPerFill: 100, fillIntervalMs: 1000 },
        },
      },
    });
    proc.check = () => ({
      status: { code: 0 },
      ok_response: {
        headers: [{ header: { key: "x-mcp-agent", value: "bot-a" }, append: { value: false } }],
      },
    });
    expect((await c.exchange(POST, json("{}"))).response.status).toBe(200);
    const limited = await c.exchange(POST, unreachable);
    expect(limited.answeredBy).toBe("local_ratelimit");
    expect(limited.flags).toContain("RL");
    expect(limited.response.status).toBe(429);
    expect(JSON.parse(limited.response.body.toString())).toMatchObject({ error: { code: -32029 } });
    expect(kinds(limited.sent)).toEqual(["response_headers"]);
  });
});

describe("failures of the processor (ext_proc.cc onMessageTimeout, onGrpcError, onGrpcClose)", () => {
  it("a reply that never comes: 504 ext_proc_error_per-message_timeout_exceeded, whatever status_on_error says", async () => {
    proc.process = () => undefined;
    const r = await envoy({ chain: { statusOnError: 503 } }).exchange(POST, unreachable);
    expect(r.response.status).toBe(504);
    expect(r.details).toBe("ext_proc_error_per-message_timeout_exceeded");
    expect(r.stats.message_timeouts).toBe(1);
  });

  it("failure_mode_allow: a timeout or a failed stream lets the request through unprocessed", async () => {
    proc.process = () => undefined;
    const timedOut = await envoy({ chain: { failureModeAllow: true } }).exchange(POST, json("{}"));
    expect(timedOut.answeredBy).toBe("upstream");
    expect(timedOut.stats.failure_mode_allowed).toBe(1);
    proc.process = (_m, call) => failStream(call);
    const failed = await envoy({ chain: { failureModeAllow: true } }).exchange(POST, json("{}"));
    expect(failed.response.status).toBe(200);
    expect(failed.stats.streams_failed).toBe(1);
  });

  it("a stream that fails: status_on_error (503 in envoy.yaml, 500 when unset), details name the gRPC status", async () => {
    proc.process = (_m, call) => failStream(call);
    const r = await envoy().exchange(POST, unreachable);
    expect(r.response.status).toBe(503);
    expect(r.details).toMatch(/^ext_proc_error_gRPC_error_14\{/);
    expect(JSON.parse(r.response.body.toString())).toMatchObject({
      error: { data: { reason: "internal_error" } },
    });
    const unset = await envoy({ chain: { statusOnError: 500 } }).exchange(POST, unreachable);
    expect(unset.response.status).toBe(500);
  });

  it("no ext-service at all: ext_authz's 503 goes through ext_proc, whose failing stream answers status_on_error instead (review W5)", async () => {
    const plain = new EnvoyRoleClient("127.0.0.1:1", { chain: { authzTimeoutMs: 500, statusOnError: 500 } });
    const set = new EnvoyRoleClient("127.0.0.1:1", { chain: { authzTimeoutMs: 500 } });
    clients.push(plain, set);
    // status_on_error unset: the outage reaches agents as a plain 500 from ext_proc.
    const r = await plain.exchange(POST, unreachable);
    expect(r.flags).toContain("UAEX");
    // Why Check got no answer stays readable (a bench failing with a bare 503 said nothing).
    expect(r.checkError).toMatch(/^14 UNAVAILABLE/);
    expect(r.response.status).toBe(500);
    expect(r.details).toMatch(/^ext_proc_error_gRPC_error_14/);
    // status_on_error 503 (envoy.yaml): the 503 and local_reply_config's JSON-RPC body.
    const fixed = await set.exchange(POST, unreachable);
    expect(fixed.response.status).toBe(503);
    expect(JSON.parse(fixed.response.body.toString())).toMatchObject({
      error: { data: { reason: "internal_error" } },
    });
  });

  it("the processor closing the stream with OK: Envoy goes on without it (a fail-open the ext-service never triggers)", async () => {
    proc.process = (_m, call) => {
      call.end();
      return undefined;
    };
    const r = await envoy().exchange(POST, json('{"ok":1}'));
    expect(r.answeredBy).toBe("upstream");
    expect(r.response.body.toString()).toBe('{"ok":1}');
  });

  it("a reply of the wrong kind is spurious: status_on_error, counted", async () => {
    proc.process = (m) =>
      m.request === "request_headers" ? { response_body: { response: {} } } : continueFor(m);
    const r = await envoy().exchange(POST, unreachable);
    expect(r.response.status).toBe(503);
    expect(r.stats.spurious_msgs_received).toBe(1);
  });

  it("the stream idle timeout ends a wait the message timer does not cover: 408, flag SI", async () => {
    proc.process = () => undefined;
    const r = await envoy({ messageTimeoutMs: 5000, chain: { streamIdleTimeoutMs: 200 } }).exchange(
      POST,
      unreachable,
    );
    expect(r.response.status).toBe(408);
    expect(r.details).toBe("stream_idle_timeout");
    expect(r.flags).toContain("SI");
  });

  it("override_message_timeout extends the timer once, up to max_message_timeout (ext_proc.cc onNewTimeout)", async () => {
    const late = (ms: number, seconds: number) => (m: ProcessingRequest, call: ProcessStreamCall) => {
      if (m.request !== "request_headers") return continueFor(m);
      call.write({ override_message_timeout: { seconds } });
      setTimeout(() => call.write(continueFor(m)), ms);
      return undefined;
    };
    proc.process = late(600, 2);
    const extended = await envoy({ chain: { maxMessageTimeoutMs: 30_000 } }).exchange(POST, json("{}"));
    expect(extended.response.status).toBe(200);
    expect(extended.stats.override_message_timeout_received).toBe(1);
    proc.process = late(600, 60);
    const tooLong = await envoy({ chain: { maxMessageTimeoutMs: 30_000 } }).exchange(POST, unreachable);
    expect(tooLong.response.status).toBe(504);
    expect(tooLong.stats.override_message_timeout_ignored).toBe(1);
  });

  it("an immediate response below 200 becomes 200 (MutationUtils::isValidHttpStatus)", async () => {
    proc.process = () => ({ immediate_response: { status: { code: 100 }, body: Buffer.from("x") } });
    const r = await envoy().exchange(POST, unreachable);
    expect(r.response.status).toBe(200);
  });
});

describe("mode_override (ext_proc.cc onReceiveMessage, effectiveModeOverride)", () => {
  const streamedOverride = { response_body_mode: "STREAMED" as const };

  it("honoured on a headers reply; body modes left unset mean NONE", async () => {
    proc.process = (m) =>
      m.request === "response_headers"
        ? { response_headers: { response: {} }, mode_override: { response_header_mode: "SEND" } }
        : continueFor(m);
    const r = await envoy({ responseBodyMode: "STREAMED" }).exchange(POST, json("{}"));
    expect(r.responseBodyMode).toBe("NONE");
    expect(kinds(r.sent)).not.toContain("response_body");
  });

  it("ignored on a body reply, and without allow_mode_override", async () => {
    proc.process = (m) =>
      m.request === "request_body"
        ? { request_body: { response: {} }, mode_override: streamedOverride }
        : continueFor(m);
    const onBody = await envoy().exchange(POST, json("{}"));
    expect(onBody.responseBodyMode).toBe("NONE");

    proc.process = (m) =>
      m.request === "response_headers"
        ? { response_headers: { response: {} }, mode_override: streamedOverride }
        : continueFor(m);
    const disallowed = await envoy({ allowModeOverride: false }).exchange(POST, json("{}"));
    expect(disallowed.responseBodyMode).toBe("NONE");
    const allowed = await envoy().exchange(POST, json("{}"));
    expect(allowed.responseBodyMode).toBe("STREAMED");
    // STREAMED: Envoy drops content-length itself (shouldRemoveContentLength).
    expect(allowed.response.headers["content-length"]).toBeUndefined();
  });
});

describe("mutations (processor_state.cc, mutation_utils.cc, mutation_rules.cc)", () => {
  it("a buffered body mutation that disagrees with content-length fails the request", async () => {
    proc.process = (m) =>
      m.request === "response_body"
        ? { response_body: { response: { body_mutation: { body: Buffer.from("longer body") } } } }
        : m.request === "response_headers"
          ? { response_headers: { response: {} }, mode_override: { response_body_mode: "BUFFERED" } }
          : continueFor(m);
    const r = await envoy().exchange(POST, json("{}"));
    expect(r.response.status).toBe(503);
    expect(r.details).toBe("mismatch between content length and the length of the mutated body");
  });

  it("clear_route_cache without a header mutation is ignored; with one, RETAIN ignores it", async () => {
    proc.process = (m) =>
      m.request === "request_headers"
        ? { request_headers: { response: { clear_route_cache: true } } }
        : continueFor(m);
    const bare = await envoy().exchange(POST, json("{}"));
    expect(bare.stats.clear_route_cache_ignored).toBe(1);
    proc.process = (m) =>
      m.request === "request_headers"
        ? {
            request_headers: {
              response: {
                clear_route_cache: true,
                header_mutation: { set_headers: [rawHeader("x-a", "1")] },
              },
            },
          }
        : continueFor(m);
    const retained = await envoy().exchange(POST, json("{}"));
    expect(retained.stats.clear_route_cache_disabled).toBe(1);
  });

  it("routing and x-envoy-* headers cannot be changed; append reads only `append`; values only raw_value", async () => {
    proc.process = (m) =>
      m.request === "request_headers"
        ? {
            request_headers: {
              response: {
                header_mutation: {
                  set_headers: [
                    rawHeader(":authority", "evil.test"),
                    rawHeader("x-envoy-retry-on", "5xx"),
                    { header: { key: "x-value-only", value: "v" }, append: { value: false } },
                    {
                      header: { key: "x-tag", raw_value: Buffer.from("b") },
                      append_action: "APPEND_IF_EXISTS_OR_ADD",
                    },
                  ],
                  remove_headers: [":path"],
                },
              },
            },
          }
        : continueFor(m);
    const r = await envoy().exchange({ ...POST, headers: { ...POST.headers, "x-tag": "a" } }, json("{}"));
    const up = r.upstreamRequest!;
    expect(up.headers["x-envoy-retry-on"]).toBeUndefined();
    expect(up.headers["x-value-only"]).toBe("");
    expect(up.headers["x-tag"]).toBe("b");
    expect(up.path).toBe("/mcp/kb");
    expect(r.stats.rejected_header_mutations).toBe(3);
  });
});

describe("the connection manager's own headers (conn_manager_utility.cc)", () => {
  it("x-request-id replaced, x-envoy-* and hop-by-hop headers dropped, x-forwarded-* set; server and date on the response", async () => {
    const r = await envoy().exchange(
      {
        ...POST,
        headers: {
          ...POST.headers,
          "x-request-id": "client-chosen",
          "x-envoy-retry-on": "5xx",
          "x-envoy-internal": "true",
          connection: "keep-alive",
          "keep-alive": "timeout=5",
          te: "gzip",
        },
      },
      () => ({
        status: 200,
        headers: { "content-type": "application/json", connection: "close", server: "up" },
        body: "{}",
      }),
    );
    const up = r.upstreamRequest!.headers;
    expect(up["x-request-id"]).toMatch(/^[0-9a-f-]{36}$/);
    for (const gone of ["x-envoy-retry-on", "x-envoy-internal", "connection", "keep-alive", "te"])
      expect(up[gone]).toBeUndefined();
    expect(up["x-forwarded-proto"]).toBe("https");
    expect(up["x-forwarded-for"]).toBe("127.0.0.1");
    expect(r.response.headers.server).toBe("mcp-gateway");
    expect(r.response.headers.connection).toBeUndefined();
    expect(r.response.headers.date).toBeDefined();
  });
});

describe("buffer limits (filter_manager.cc requestDataTooLarge / responseDataTooLarge)", () => {
  it("a BUFFERED response above the limit: Envoy's own 500, the processor never sees the body", async () => {
    proc.process = (m) =>
      m.request === "response_headers"
        ? { response_headers: { response: {} }, mode_override: { response_body_mode: "BUFFERED" } }
        : continueFor(m);
    const r = await envoy({ chain: { bufferLimitBytes: 64 } }).exchange(POST, json("x".repeat(100)));
    // Envoy's 500, which envoy.yaml's local_reply_config turns into 502 response_too_large.
    expect(r.response.status).toBe(502);
    expect(JSON.parse(r.response.body.toString())).toMatchObject({
      error: { data: { reason: "response_too_large" } },
    });
    expect(r.details).toBe("response_payload_too_large");
    expect(kinds(r.sent)).not.toContain("response_body");
  });
});

describe("streams ending early", () => {
  it("an immediate response after streamed headers went out resets the downstream stream", async () => {
    proc.process = (m) =>
      m.request === "response_headers"
        ? { response_headers: { response: {} }, mode_override: { response_body_mode: "STREAMED" } }
        : m.request === "response_body"
          ? { immediate_response: { status: { code: "BadGateway" } } }
          : continueFor(m);
    const r = await envoy().exchange(GET, () => ({
      status: 200,
      headers: { "content-type": "text/event-stream" },
      body: ["data: 1\n\n", "data: 2\n\n"],
    }));
    expect(r.reset).toBe(true);
    expect(r.response.status).toBe(200);
  });

  it("the client going away mid-body: Envoy closes the ext_proc stream (half-close then reset)", async () => {
    proc.process = (m) =>
      m.request === "response_headers"
        ? { response_headers: { response: {} }, mode_override: { response_body_mode: "STREAMED" } }
        : continueFor(m);
    const c = envoy();
    const abort = new AbortController();
    let chunks = 0;
    let trace: ExchangeTrace | undefined;
    const done = c.model
      .handle(
        { method: "GET", path: "/mcp/kb", headers: {} },
        async () => ({
          status: 200,
          headers: { "content-type": "text/event-stream" },
          hasBody: true,
          body: (async function* () {
            for (;;) {
              yield { data: Buffer.from("data: tick\n\n"), end: false };
              await new Promise((r) => setTimeout(r, 10));
            }
          })(),
        }),
        {
          headers() {},
          data() {
            if (++chunks === 3) abort.abort();
          },
          reset() {},
        },
        abort.signal,
      )
      .then((t) => (trace = t));
    await done;
    expect(trace?.responseBodyMode).toBe("STREAMED");
    // END_STREAM then RST_STREAM: the processor sees the stream end, whichever arrives first.
    await vi.waitFor(() => expect(proc.streams[0]!.ending).toBeDefined());
    expect(proc.streams).toHaveLength(1);
  });
});
