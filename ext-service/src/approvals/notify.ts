import { request } from "undici";
import type { ApprovalsConfig } from "../config/schema.js";
import { durationMs } from "../config/schema.js";
import type { Logger } from "../telemetry/logger.js";

/**
 * The webhook told of every new request for approval: an HTTP POST with a JSON body whose `text`
 * is what a person reads (Slack and Mattermost incoming webhooks, and most chat bridges, take
 * exactly that), plus an `approval` object for programs. Retried with exponential backoff;
 * never awaited by the call it is about. The URL is treated as a secret: it is never logged.
 */

export interface WebhookMessage {
  text: string;
  approval: Record<string, unknown>;
}

const FIRST_BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 8_000;

/** A 4xx answer other than these will not change on a retry. */
const RETRIED_CLIENT_ERRORS = new Set([408, 425, 429]);

export function webhookUrl(
  webhook: NonNullable<ApprovalsConfig["webhook"]>,
  env: NodeJS.ProcessEnv = process.env,
): string | undefined {
  if (webhook.url !== undefined) return webhook.url;
  const value = webhook.urlEnv === undefined ? undefined : env[webhook.urlEnv];
  return value === undefined || value === "" ? undefined : value;
}

/**
 * Sends `message`; resolves true once a 2xx answer came, false after the last attempt failed.
 * `sleep` is injectable so tests need not wait out the backoff.
 */
export async function sendWebhook(
  webhook: NonNullable<ApprovalsConfig["webhook"]>,
  message: WebhookMessage,
  logger: Logger,
  sleep: (ms: number) => Promise<void> = (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
): Promise<boolean> {
  const url = webhookUrl(webhook);
  const approvalId = message.approval.id;
  if (url === undefined) {
    logger.error(
      { approval_id: approvalId, env: webhook.urlEnv },
      "approvals: the webhook URL variable is not set",
    );
    return false;
  }
  const body = JSON.stringify(message);
  const timeoutMs = durationMs(webhook.timeout);
  for (let attempt = 1; attempt <= webhook.attempts; attempt++) {
    let problem: string;
    try {
      const res = await request(url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
        signal: AbortSignal.timeout(timeoutMs),
      });
      await res.body.dump();
      if (res.statusCode >= 200 && res.statusCode < 300) return true;
      problem = `HTTP ${res.statusCode}`;
      if (res.statusCode >= 400 && res.statusCode < 500 && !RETRIED_CLIENT_ERRORS.has(res.statusCode)) {
        logger.warn(
          { approval_id: approvalId, attempt, problem },
          "approvals: webhook refused the notification",
        );
        return false;
      }
    } catch (err) {
      problem = (err as { code?: string }).code ?? (err as Error).name;
    }
    logger.warn(
      { approval_id: approvalId, attempt, attempts: webhook.attempts, problem },
      "approvals: webhook failed",
    );
    if (attempt < webhook.attempts)
      await sleep(Math.min(FIRST_BACKOFF_MS * 2 ** (attempt - 1), MAX_BACKOFF_MS));
  }
  return false;
}
