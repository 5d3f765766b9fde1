import { request as httpRequest, type IncomingMessage, type ServerResponse } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  fakeUpstream,
  MCP_HEADERS,
  readJsonBody,
  rpc,
  startGateway,
  waitFor,
  type Gateway,
} from "../e2e/harness.js";

/** Progress notifications of ~4 KiB each, then the answer: about 24 MiB of SSE in all. */
const EVENTS = 6_000;
const FILLER = "lorem ipsum dolor sit amet ".repeat(150);

describe("SSE to a client that stops reading for a while", () => {
  let gw: Gateway;
  let upstream: Awaited<ReturnType<typeof fakeUpstream>>;
  let blocked = 0;

  beforeAll(async () => {
    upstream = await fakeUpstream(async (req: IncomingMessage, res: ServerResponse) => {
      const msg = (await readJsonBody(req)) as { id: number };
      res.writeHead(200, { "content-type": "text/event-stream" });
      for (let i = 0; i < EVENTS; i++) {
        const event = {
          jsonrpc: "2.0",
          method: "notifications/progress",
          params: { progressToken: 1, progress: i, message: FILLER },
        };
        if (!res.write(`event: message\ndata: ${JSON.stringify(event)}\n\n`)) {
          blocked++;
          await new Promise<void>((done) => res.once("drain", () => done()));
        }
      }
      res.end(`event: message\ndata: ${JSON.stringify({ jsonrpc: "2.0", id: msg.id, result: {} })}\n\n`);
    });
    gw = await startGateway({ servers: [{ name: "big", upstreams: [upstream.url] }] });
  });
  afterAll(async () => {
    await gw?.close();
    await upstream?.close();
  });

  it("stalls the upstream meanwhile, then delivers every event intact", async () => {
    const token = await gw.token("tester");
    const url = new URL(gw.url("big"));
    const body = rpc("ping", undefined, 7);
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      const req = httpRequest(
        url,
        { method: "POST", headers: { ...MCP_HEADERS, authorization: `Bearer ${token}` } },
        resolve,
      );
      req.on("error", reject);
      req.end(body);
    });
    expect(res.statusCode).toBe(200);
    res.pause();
    // Nobody reads: the client's socket fills, the edge pauses the upstream call (see
    // UpstreamCall's tests for pause itself), and the upstream's writes report a full buffer.
    await waitFor(() => blocked > 0, 15_000, "the upstream to be held back");
    let text = "";
    res.setEncoding("utf8");
    for await (const chunk of res) text += chunk as string;
    expect(text.split("notifications/progress").length - 1).toBe(EVENTS);
    expect(text).toContain('"id":7,"result":{}');
  });
});
