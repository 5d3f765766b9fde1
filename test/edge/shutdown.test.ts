import { request } from "undici";
import { describe, expect, it } from "vitest";
import { fakeUpstream, MCP_HEADERS, readJsonBody, rpc, startGateway, waitFor } from "../e2e/harness.js";

describe("edge shutdown", () => {
  it("ends server-to-client streams at once, lets requests in flight finish, then stops", async () => {
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => (release = r));
    let postArrived = false;
    const upstream = await fakeUpstream(async (req, res) => {
      if (req.method === "GET") {
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.write(": stream open\n\n"); // and never ends
        return;
      }
      const msg = (await readJsonBody(req)) as { id: number };
      postArrived = true;
      await gate;
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ jsonrpc: "2.0", id: msg.id, result: { finished: true } }));
    });
    const gw = await startGateway({ servers: [{ name: "svc", upstreams: [upstream.url] }] });
    const auth = { authorization: `Bearer ${await gw.token("tester")}` };
    try {
      const stream = await request(gw.url("svc"), {
        method: "GET",
        headers: { ...auth, accept: "text/event-stream" },
      });
      expect(stream.statusCode).toBe(200);
      const streamText = stream.body.text();
      const post = request(gw.url("svc"), {
        method: "POST",
        headers: { ...MCP_HEADERS, ...auth },
        body: rpc("ping", undefined, 5),
      });
      await waitFor(() => postArrived);

      // A grace far longer than the test timeout: close() must not wait for the GET stream.
      const closed = gw.edge.close(600_000);
      // The keep-alive arrived (its text removed: comments are not forwarded, F13), then the end.
      expect(await streamText).toBe(":\n\n");
      expect(gw.edge.ready()).toBe(false);
      release();
      const answered = await post;
      expect(answered.statusCode).toBe(200);
      expect(await answered.body.json()).toEqual({ jsonrpc: "2.0", id: 5, result: { finished: true } });
      await closed;
      await expect(
        request(gw.url("svc"), { method: "POST", headers: { ...MCP_HEADERS, ...auth }, body: rpc("ping") }),
      ).rejects.toThrow();
      const audits = gw.log.audits;
      expect(audits.map((a) => [a.http_method, a.status]).sort()).toEqual([
        ["GET", 200],
        ["POST", 200],
      ]);
    } finally {
      await gw.close();
      await upstream.close();
    }
  });
});
