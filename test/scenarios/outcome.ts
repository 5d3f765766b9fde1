import { expect } from "vitest";
import { bodyMessages } from "../e2e/harness.js";
import type { Scenario } from "./table.js";

/** What the agent received, whichever data plane produced it. */
export interface Received {
  status: number;
  header(name: string): string | undefined;
  /** The body text; for a server stream (GET), whatever arrived before the runner stopped reading. */
  text: string;
}

/** Asserts a row's expectation against what the agent received: one judge for both data planes. */
export function expectOutcome(row: Scenario, got: Received): void {
  const expected = row.expect;
  expect(got.status, got.text).toBe(expected.status);
  const contentType = got.header("content-type") ?? "";
  if (expected.verdict === "forward" && expected.stream) {
    expect(contentType).toBe("text/event-stream");
    return;
  }
  const messages = bodyMessages(contentType, got.text) as Record<string, unknown>[];
  if (expected.verdict === "local") {
    const document = JSON.parse(got.text) as Record<string, unknown>;
    expect(document).toMatchObject(expected.json);
    for (const key of expected.absent ?? []) expect(document).not.toHaveProperty(key);
    return;
  }
  if (expected.verdict === "deny") {
    expect(contentType).toBe("application/json");
    for (const [name, prefix] of Object.entries(expected.headers ?? {})) {
      expect(String(got.header(name))).toMatch(
        new RegExp(`^${prefix.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`),
      );
    }
    const body = JSON.parse(got.text) as unknown;
    if (expected.batch) {
      expect(Array.isArray(body)).toBe(true);
      expect(
        (body as { error: { code: number; data: { reason: string } } }[]).map((m) => ({
          code: m.error.code,
          reason: m.error.data.reason,
        })),
      ).toEqual(expected.batch);
    } else {
      expect(body).toMatchObject({
        jsonrpc: "2.0",
        error: { code: expected.code, data: { reason: expected.reason } },
      });
      expect((body as { error: { data: { request_id: string } } }).error.data.request_id).toMatch(
        /^[0-9a-f-]{36}$/,
      );
    }
    return;
  }
  if (expected.answer === "none") {
    expect(got.text).toBe("");
    return;
  }
  if (expected.answer === "result") {
    const answer = messages.find((m) => "id" in m && ("result" in m || "error" in m));
    expect(answer, got.text).toMatchObject({ jsonrpc: "2.0" });
    expect(answer).toHaveProperty("result");
    expect((answer!.result as { isError?: boolean }).isError).toBeFalsy();
    if (expected.tools) {
      expect((answer!.result as { tools: { name: string }[] }).tools.map((t) => t.name)).toEqual(
        expected.tools,
      );
    }
  }
}
