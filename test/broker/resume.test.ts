import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { serveMcp, type RunningServer } from "../../examples/servers/http.js";
import { httpCall, MCP_HEADERS, rpc, startGateway, waitFor, type Gateway } from "../e2e/harness.js";
import { startConformanceServer } from "../conformance/servers.js";
import { connect2025, cuttableProxy, recordingProxy } from "./support.js";

/**
 * Resumable streams of the aggregated endpoint's 2025 sessions (Streamable HTTP resumability,
 * 2025-03-26 to 2025-11-25): every SSE event the broker sends has an id, 2025-11-25 clients get a
 * priming event with the retry interval, and a GET with Last-Event-ID replays what followed on
 * that stream (a call's POST stream or the GET stream), from a bounded per-session buffer. An id
 * the broker does not hold starts a fresh stream.
 */

const announcers = new Set<McpServer>();

/** A 2025 server with a call that reports progress in steps and one that announces to every session. */
function ticker(): McpServer {
  const mcp = new McpServer({ name: "ticker", version: "1.0.0" }, { capabilities: { logging: {} } });
  announcers.add(mcp);
  mcp.registerTool(
    "steps",
    {
      description: "Reports progress in steps, then answers.",
      inputSchema: { count: z.number().int(), gapMs: z.number().int() },
    },
    async ({ count, gapMs }, extra) => {
      const token = extra._meta?.progressToken;
      for (let i = 1; i <= count; i++) {
        await new Promise((resolve) => setTimeout(resolve, gapMs));
        if (token !== undefined)
          await extra.sendNotification({
            method: "notifications/progress",
            params: { progressToken: token, progress: i, total: count },
          });
      }
      return { content: [{ type: "text", text: `done ${count}` }] };
    },
  );
  mcp.registerTool(
    "announce",
    { description: "Announces a text to every session.", inputSchema: { text: z.string() } },
    async ({ text }) => {
      await Promise.allSettled(
        [...announcers].map((s) =>
          s.server.notification({ method: "notifications/message", params: { level: "info", data: text } }),
        ),
      );
      return { content: [{ type: "text", text: "announced" }] };
    },
  );
  return mcp;
}

interface SseEvent {
  id?: string;
  retry?: number;
  data: string;
}

function parseEvents(text: string): SseEvent[] {
  const events: SseEvent[] = [];
  for (const block of text.split("\n\n")) {
    if (block.trim() === "" || block.startsWith(":")) continue;
    const event: SseEvent = { data: "" };
    for (const line of block.split("\n")) {
      const colon = line.indexOf(":");
      const field = line.slice(0, colon);
      const value = line.slice(colon + 1).replace(/^ /, "");
      if (field === "id") event.id = value;
      else if (field === "retry") event.retry = Number(value);
      else if (field === "data") event.data += value;
    }
    events.push(event);
  }
  return events;
}

const progressOf = (e: SseEvent) =>
  e.data === "" ? undefined : (JSON.parse(e.data) as { params?: { progress?: number } }).params?.progress;

/** Reads an SSE body until `done` holds for the events so far, or it ends; then stops reading. */
async function readEvents(
  body: AsyncIterable<unknown> & { destroy(): unknown },
  done: (events: SseEvent[]) => boolean = () => false,
  limitMs = 10_000,
): Promise<{ events: SseEvent[]; ended: boolean }> {
  let text = "";
  let ended = false;
  const timer = setTimeout(() => body.destroy(), limitMs);
  try {
    for await (const chunk of body) {
      text += (chunk as Buffer).toString("utf8");
      if (done(parseEvents(text))) return { events: parseEvents(text), ended };
    }
    ended = true;
  } catch {
    // Destroyed at the limit: not ended by the server.
  } finally {
    clearTimeout(timer);
    body.destroy();
  }
  return { events: parseEvents(text), ended };
}

/** A 2025-11-25 session opened by hand (initialize, notifications/initialized): its request headers. */
async function openRawSession(url: string, token: string): Promise<Record<string, string>> {
  const headers = { ...MCP_HEADERS, authorization: `Bearer ${token}` };
  const init = await httpCall(url, {
    headers,
    body: rpc("initialize", {
      protocolVersion: "2025-11-25",
      capabilities: {},
      clientInfo: { name: "raw", version: "1" },
    }),
  });
  expect(init.status).toBe(200);
  const session = {
    ...headers,
    "mcp-session-id": String(init.headers["mcp-session-id"]),
    "mcp-protocol-version": "2025-11-25",
  };
  await httpCall(url, {
    headers: session,
    body: JSON.stringify({ jsonrpc: "2.0", method: "notifications/initialized" }),
  });
  return session;
}

describe("aggregated endpoint: resumable 2025 streams", () => {
  let upstream: RunningServer;
  /** The conformance suite's 2025 server: test_reconnection closes its call's stream mid-call. */
  let polling: { url: string; close(): Promise<void> };
  let pollingSeen: Awaited<ReturnType<typeof recordingProxy>>;
  let gw: Gateway;
  beforeAll(async () => {
    upstream = await serveMcp(ticker, 0);
    polling = await startConformanceServer("2025-11-25");
    pollingSeen = await recordingProxy(Number(new URL(polling.url).port));
    gw = await startGateway({
      servers: [
        {
          name: "ticker",
          upstreams: [upstream.url],
          tools: [{ name: "steps" }, { name: "announce" }],
        },
        { name: "polling", upstreams: [pollingSeen.url], tools: [{ name: "test_reconnection" }] },
      ],
      security: { pins: { enforce: false, verifyBeforeCall: false } },
    });
  });
  afterAll(async () => {
    await gw?.close();
    await pollingSeen?.close();
    await polling?.close();
    await upstream?.close();
  });

  const replayed = async () =>
    Number(
      /result="replayed"} (\d+)/.exec(
        await gw.metrics.registry.getSingleMetricAsString("mcp_gateway_broker_stream_resumptions_total"),
      )?.[1] ?? 0,
    );

  it("a server that closes a call's stream mid-call (SEP-1699): the client's stream closes too, and the server is asked again when the client resumes", async () => {
    const session = await openRawSession(`${gw.edge.url}/mcp`, await gw.token("tester"));
    const resumesBefore = pollingSeen.seen.filter((r) => r.lastEventId !== undefined).length;

    const call = await request(`${gw.edge.url}/mcp`, {
      method: "POST",
      headers: session,
      body: rpc("tools/call", { name: "polling__test_reconnection", arguments: {} }, 7),
    });
    expect(call.headers["content-type"]).toMatch(/^text\/event-stream/);
    // As directly: the stream ends before the answer, after an event id and a retry interval.
    const posted = await readEvents(call.body);
    expect(posted.ended).toBe(true);
    expect(posted.events[0]).toMatchObject({ data: "", retry: 1000, id: expect.any(String) });
    expect(posted.events.some((e) => e.data.includes('"result"'))).toBe(false);
    const lastId = posted.events.findLast((e) => e.id !== undefined)!.id!;

    // The server closed the hop's stream asking to be polled: the broker has not polled it for
    // the client (its retry is 50 ms, its answer ready 100 ms after it closed).
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(pollingSeen.seen.filter((r) => r.lastEventId !== undefined)).toHaveLength(resumesBefore);

    const resumed = await request(`${gw.edge.url}/mcp`, {
      method: "GET",
      headers: { ...session, accept: "text/event-stream", "last-event-id": lastId },
    });
    expect(resumed.statusCode).toBe(200);
    const got = await readEvents(resumed.body, (events) => events.some((e) => e.data.includes('"id":7')));
    const answer = got.events.find((e) => e.data.includes('"id":7'));
    expect(answer?.id).toEqual(expect.any(String));
    expect(JSON.parse(answer!.data)).toMatchObject({
      id: 7,
      result: { content: [{ type: "text", text: "Reconnection test completed" }] },
    });
    // The hop resumed the server's stream with the server's own event id, once the client resumed.
    const hopResumes = pollingSeen.seen.filter((r) => r.lastEventId !== undefined).slice(resumesBefore);
    expect(hopResumes).toHaveLength(1);
    expect(hopResumes[0]).toMatchObject({ method: "GET", session: expect.any(String) });
    expect(hopResumes[0]!.lastEventId).not.toBe(lastId);
    await httpCall(`${gw.edge.url}/mcp`, { method: "DELETE", headers: session });
  });

  it("a call's stream cut after its first progress resumes with GET Last-Event-ID: the rest, then the result", async () => {
    const session = await openRawSession(`${gw.edge.url}/mcp`, await gw.token("tester"));

    const call = await request(`${gw.edge.url}/mcp`, {
      method: "POST",
      headers: session,
      body: rpc(
        "tools/call",
        { name: "ticker__steps", arguments: { count: 4, gapMs: 150 }, _meta: { progressToken: "p" } },
        7,
      ),
    });
    expect(call.headers["content-type"]).toMatch(/^text\/event-stream/);
    let text = "";
    for await (const chunk of call.body) {
      text += (chunk as Buffer).toString("utf8");
      if (parseEvents(text).some((e) => progressOf(e) === 1)) break;
    }
    call.body.destroy();
    const seen = parseEvents(text);
    // The priming event: an id, the retry interval, no message.
    expect(seen[0]).toMatchObject({ data: "", retry: 1000, id: expect.any(String) });
    const first = seen.find((e) => progressOf(e) === 1)!;
    expect(first.id).toMatch(/\.\d+$/);

    const resume = () =>
      httpCall(`${gw.edge.url}/mcp`, {
        method: "GET",
        headers: { ...session, accept: "text/event-stream", "last-event-id": first.id! },
      });
    let resumed = await resume();
    // 409 while the broker has not yet seen the cut stream close (the SDK clients retry too).
    for (let i = 0; i < 50 && resumed.status === 409; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      resumed = await resume();
    }
    expect(resumed.status).toBe(200);
    const events = parseEvents(resumed.text).filter((e) => e.data !== "");
    expect(events.every((e) => e.id !== undefined)).toBe(true);
    const messages = events.map((e) => JSON.parse(e.data) as Record<string, unknown>);
    expect(messages.slice(0, -1).map((m) => (m.params as { progress: number }).progress)).toEqual([2, 3, 4]);
    expect(messages.at(-1)).toMatchObject({ id: 7, result: { content: [{ type: "text", text: "done 4" }] } });

    // An id not held here (never sent, or gone): a fresh GET stream, nothing replayed.
    const fresh = await request(`${gw.edge.url}/mcp`, {
      method: "GET",
      headers: { ...session, accept: "text/event-stream", "last-event-id": `${first.id!}9999` },
    });
    expect(fresh.statusCode).toBe(200);
    expect(fresh.headers["content-type"]).toMatch(/^text\/event-stream/);
    fresh.body.destroy();
    const counted = await gw.metrics.registry.getSingleMetricAsString(
      "mcp_gateway_broker_stream_resumptions_total",
    );
    expect(counted).toMatch(/result="replayed"} [1-9]/);
    expect(counted).toMatch(/result="unknown"} 1/);
    await httpCall(`${gw.edge.url}/mcp`, { method: "DELETE", headers: session });
  });

  /** The two SDK majors' clients in the 2025 era, each connected through a proxy the test can cut. */
  const sdks = [
    ["SDK 1.x", "1.x"],
    ["SDK 2.x (2025 era)", "2.x"],
  ] as const;

  describe.each(sdks)("%s", (_name, sdk) => {
    /** The client, resuming cut streams promptly; its log messages go to `logs`. */
    const connectVia = async (url: string, token: string, logs: string[]) => {
      const mcp = await connect2025(sdk, url, token, {
        reconnection: {
          initialReconnectionDelay: 200,
          maxReconnectionDelay: 1000,
          reconnectionDelayGrowFactor: 1,
          maxRetries: 30,
        },
        onLog: (data) => logs.push(String(data)),
      });
      return {
        call: async (name: string, args: Record<string, unknown>, onprogress?: () => void) =>
          JSON.stringify((await mcp.call(name, args, { onprogress })).content),
        close: () => mcp.close(),
      };
    };

    it("a call whose server closes its stream mid-call gets its result after the client resumes its own", async () => {
      const mcp = await connectVia(`${gw.edge.url}/mcp`, await gw.token("tester"), []);
      try {
        const before = await replayed();
        expect(await mcp.call("polling__test_reconnection", {})).toContain("Reconnection test completed");
        // The client resumed the broker's stream (the broker did not resume the server's for it).
        expect(await replayed()).toBeGreaterThan(before);
      } finally {
        await mcp.close();
      }
    });

    it("a call whose connection drops mid-call gets its result after the client resumes", async () => {
      const proxy = await cuttableProxy(Number(new URL(gw.edge.url).port));
      const mcp = await connectVia(`${proxy.url}/mcp`, await gw.token("tester"), []);
      try {
        let progress = 0;
        const result = mcp.call("ticker__steps", { count: 6, gapMs: 150 }, () => {
          if (++progress === 1) {
            proxy.cut();
            setTimeout(() => proxy.resume(), 300);
          }
        });
        expect(await result).toContain("done 6");
      } finally {
        proxy.resume();
        await mcp.close();
        await proxy.close();
      }
    });

    it("a message sent while the GET stream was down arrives when the client resumes it", async () => {
      const proxy = await cuttableProxy(Number(new URL(gw.edge.url).port));
      const logs: string[] = [];
      const mcp = await connectVia(`${proxy.url}/mcp`, await gw.token("tester"), logs);
      const other: string[] = [];
      const witness = await connectVia(`${gw.edge.url}/mcp`, await gw.token("other"), other);
      try {
        // The client's GET stream (and the broker's on the server) open after initialize:
        // announce until one arrives, so the stream has an event id to resume after.
        for (let i = 0; i < 20 && !logs.includes("before"); i++) {
          await mcp.call("ticker__announce", { text: "before" });
          await waitFor(() => logs.includes("before"), 500).catch(() => undefined);
        }
        expect(logs).toContain("before");
        await waitFor(() => other.includes("before"), 5_000, "the witness's stream");
        proxy.cut();
        await witness.call("ticker__announce", { text: "while down" });
        // The witness's own stream has it: the cut client's session has been sent it too.
        await waitFor(() => other.includes("while down"), 5_000, "the announcement");
        await new Promise((resolve) => setTimeout(resolve, 200));
        expect(logs).not.toContain("while down");
        proxy.resume();
        await waitFor(() => logs.includes("while down"), 15_000, "the replayed announcement");
        expect(logs.filter((l) => l === "while down")).toHaveLength(1);
      } finally {
        proxy.resume();
        await Promise.allSettled([mcp.close(), witness.close()]);
        await proxy.close();
      }
    });
  });
});
