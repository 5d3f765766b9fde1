import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Pool } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { UpstreamCall } from "../../ext-service/src/edge/upstream-call.js";
import { waitFor } from "../e2e/harness.js";

const BIG = Buffer.alloc(300 * 1024);
for (let i = 0; i < BIG.length; i++) BIG[i] = i % 251;

/** Writes `body` in 16 KiB pieces, each after the previous one was flushed. */
async function writeSlowly(res: ServerResponse, body: Buffer): Promise<void> {
  for (let i = 0; i < body.length; i += 16 * 1024) {
    await new Promise<void>((done) => res.write(body.subarray(i, i + 16 * 1024), () => done()));
  }
}

describe("UpstreamCall (undici dispatch)", () => {
  let server: Server;
  let pool: Pool;
  let origin: string;
  const closedRequests: string[] = [];
  const seen: string[] = [];

  beforeAll(async () => {
    server = createServer((req: IncomingMessage, res: ServerResponse) => {
      const path = req.url ?? "/";
      seen.push(path);
      req.socket.once("close", () => closedRequests.push(path));
      req.resume();
      if (path === "/small") {
        res.writeHead(200, { "content-type": "application/json", "x-extra": ["a", "b"] });
        res.end('{"ok":true}');
      } else if (path === "/big") {
        res.writeHead(200, { "content-type": "application/octet-stream" });
        void writeSlowly(res, BIG).then(() => res.end());
      } else if (path === "/cut") {
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.write("data: first\n\n", () => res.socket?.destroy());
      }
      // "/hang": never answers
    });
    await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    pool = new Pool(origin, { connections: 4 });
  });

  afterAll(async () => {
    await pool.destroy();
    server.closeAllConnections();
    await new Promise<void>((done) => server.close(() => done()));
  });

  const get = (path: string) => {
    const call = new UpstreamCall();
    call.start(pool, { path, method: "GET", headersTimeout: 0, bodyTimeout: 0 });
    return call;
  };

  it("collects a whole body with status and headers", async () => {
    const call = get("/small");
    await call.response;
    expect(call.status).toBe(200);
    expect(call.headers["content-type"]).toBe("application/json");
    expect(call.headers["x-extra"]).toEqual(["a", "b"]);
    const got = await call.collect(1024);
    expect(got.kind).toBe("complete");
    expect(got.kind === "complete" && got.body.toString()).toBe('{"ok":true}');
  });

  it("stops reading at the limit and drops the connection", async () => {
    const call = get("/big");
    await call.response;
    expect(await call.collect(100 * 1024)).toEqual({ kind: "too_large" });
    await waitFor(() => closedRequests.includes("/big"), 5_000, "the upstream connection to close");
  });

  it("streams every byte in order, holding back while paused", async () => {
    const call = get("/big");
    await call.response;
    const parts: Buffer[] = [];
    let deliveredWhilePaused = 0;
    const ended = call.stream((chunk) => {
      if (call.isPaused) deliveredWhilePaused += chunk.length;
      parts.push(chunk);
      // A slow client: pause after each chunk, resume on a later turn of the event loop.
      call.pause();
      setImmediate(() => call.resume());
    });
    expect(await ended).toBeUndefined();
    expect(Buffer.concat(parts).equals(BIG)).toBe(true);
    expect(parts.length).toBeGreaterThan(1);
    // Only what arrived before stream() was called can come while paused: up to 64 KiB held
    // back, plus the socket read that crossed it (at most 64 KiB).
    expect(deliveredWhilePaused).toBeLessThanOrEqual(128 * 1024);
  });

  it("keeps what arrived before a consumer attached, pausing the upstream meanwhile", async () => {
    const call = get("/big");
    await call.response;
    // Let the body arrive with nobody reading: it is held, the upstream paused past 64 KiB.
    await waitFor(() => call.isPaused, 5_000, "the upstream to pause");
    const parts: Buffer[] = [];
    expect(await call.stream((chunk) => parts.push(chunk))).toBeUndefined();
    expect(Buffer.concat(parts).equals(BIG)).toBe(true);
  });

  it("collects a body that arrived before collect() was called", async () => {
    const call = get("/big");
    await call.response;
    await waitFor(() => call.isPaused, 5_000, "the upstream to pause");
    const got = await call.collect(1024 * 1024);
    expect(got.kind === "complete" && got.body.equals(BIG)).toBe(true);
  });

  it("a consumer that throws or stops ends the stream, whether chunks were held back or not", async () => {
    for (const early of [false, true]) {
      const thrown = new Error("consumer bug");
      const throwing = get("/big");
      await throwing.response;
      if (early) await waitFor(() => throwing.isPaused, 5_000, "the upstream to pause");
      let calls = 0;
      const error = await throwing.stream(() => {
        if (++calls === 2) throw thrown;
      });
      expect(error).toBe(thrown);
      expect(calls).toBe(2);

      const stopping = get("/big");
      await stopping.response;
      if (early) await waitFor(() => stopping.isPaused, 5_000, "the upstream to pause");
      let seenAfterStop = 0;
      let stopped = false;
      const reason = new Error("enough");
      await stopping.stream(() => {
        if (stopped) seenAfterStop++;
        stopped = true;
        stopping.abort(reason);
      });
      expect(seenAfterStop).toBe(0);
    }
  });

  it("reports a body cut by the upstream", async () => {
    const stream = get("/cut");
    await stream.response;
    const parts: Buffer[] = [];
    const error = await stream.stream((chunk) => parts.push(chunk));
    expect(error).toBeInstanceOf(Error);
    expect(Buffer.concat(parts).toString()).toBe("data: first\n\n");

    const collected = get("/cut");
    await collected.response;
    expect((await collected.collect(1024)).kind).toBe("failed");
  });

  it("fails with undici's error when nothing listens", async () => {
    const closed = createServer();
    await new Promise<void>((done) => closed.listen(0, "127.0.0.1", done));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((done) => closed.close(() => done()));
    const nowhere = new Pool(`http://127.0.0.1:${port}`);
    const call = new UpstreamCall();
    call.start(nowhere, { path: "/", method: "GET" });
    await expect(call.response).rejects.toMatchObject({ code: "ECONNREFUSED" });
    await nowhere.destroy();
  });

  it("an abort before the start never sends the request", async () => {
    const call = new UpstreamCall();
    const reason = new Error("client gone");
    call.abort(reason);
    call.start(pool, { path: "/never-sent", method: "GET" });
    await expect(call.response).rejects.toBe(reason);
    const after = get("/small"); // the pool still works, and the aborted request never arrived
    await after.response;
    await after.collect(1024);
    expect(seen).not.toContain("/never-sent");
  });

  it("an abort while waiting for the answer fails the call and drops the connection", async () => {
    const call = get("/hang");
    await waitFor(() => seen.includes("/hang"), 5_000, "the request to arrive");
    const reason = new Error("timed out");
    call.abort(reason);
    await expect(call.response).rejects.toBe(reason);
    await waitFor(() => closedRequests.includes("/hang"), 5_000, "the upstream connection to close");
  });

  it("refuses a request undici cannot send", async () => {
    const call = new UpstreamCall();
    call.start(pool, { path: "/small", method: "GET", headers: { "x-bad": "line\r\nbreak" } });
    await expect(call.response).rejects.toBeInstanceOf(Error);
  });
});
