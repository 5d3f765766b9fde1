import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sendWebhook } from "../../ext-service/src/approvals/notify.js";
import { LogCapture, readJsonBody } from "../e2e/harness.js";

/** The approvals webhook: retried with backoff on failures that may pass, never on a refusal. */
describe("approvals webhook", () => {
  const statuses: number[] = [];
  const received: unknown[] = [];
  let server: Server;
  let url: string;
  beforeAll(async () => {
    server = createServer((req, res) => {
      void readJsonBody(req).then((body) => {
        received.push(body);
        res.writeHead(statuses.shift() ?? 200).end();
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook?token=s3cr3t-in-url`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  const message = { text: "Approval needed", approval: { id: "a-1" } };
  const webhook = (attempts: number) => ({ url, timeout: "2s", attempts });

  it("retries 5xx and 429 with growing waits, until a 2xx", async () => {
    statuses.push(503, 429);
    received.length = 0;
    const waits: number[] = [];
    const log = new LogCapture();
    const ok = await sendWebhook(webhook(5), message, log.logger, async (ms) => {
      waits.push(ms);
    });
    expect(ok).toBe(true);
    expect(received).toEqual([message, message, message]);
    expect(waits).toEqual([250, 500]);
    // The URL is a secret: never in a log line.
    expect(JSON.stringify(log.lines)).not.toContain("s3cr3t-in-url");
    expect(log.lines.filter((l) => l.msg === "approvals: webhook failed")).toHaveLength(2);
  });

  it("gives up after the last attempt, and at once on a refusal (4xx)", async () => {
    statuses.push(500, 500);
    received.length = 0;
    const log = new LogCapture();
    expect(await sendWebhook(webhook(2), message, log.logger, async () => {})).toBe(false);
    expect(received).toHaveLength(2);
    statuses.push(404);
    received.length = 0;
    expect(await sendWebhook(webhook(5), message, log.logger, async () => {})).toBe(false);
    expect(received).toHaveLength(1);
  });

  it("reads the URL from the environment, and reports a missing variable", async () => {
    const log = new LogCapture();
    const hook = { urlEnv: "APPROVALS_TEST_WEBHOOK", timeout: "2s", attempts: 1 };
    expect(await sendWebhook(hook, message, log.logger)).toBe(false);
    expect(log.lines.some((l) => l.msg === "approvals: the webhook URL variable is not set")).toBe(true);
    process.env.APPROVALS_TEST_WEBHOOK = url;
    try {
      received.length = 0;
      expect(await sendWebhook(hook, message, log.logger)).toBe(true);
      expect(received).toEqual([message]);
    } finally {
      delete process.env.APPROVALS_TEST_WEBHOOK;
    }
  });
});
