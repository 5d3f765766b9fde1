import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { LRUCache } from "lru-cache";
import { request } from "undici";
import { durationMs, type GatewayConfig } from "../config/schema.js";

export type ClassifierSettings = NonNullable<GatewayConfig["security"]["classifier"]>;

/** A verdict: the text is an injection, is not, or could not be judged. */
export type Verdict = "injection" | "benign" | "unavailable";

/**
 * An HTTP prompt-injection classifier. Each text is POSTed as `{"inputs": text, "text": text}`;
 * the answer may be `{"injection": bool}`, `{"score": n}`, `{"label": l, "score": n}` or a list
 * of `{label, score}` (the text-classification shape of Hugging Face servers): a label naming an
 * injection (injection, jailbreak, malicious, unsafe) with a score at or above the threshold, or
 * a bare score at or above it, is an injection. Verdicts are cached by the SHA-256 of the text;
 * failures are not cached.
 */
export class HttpClassifier {
  private readonly cache: LRUCache<string, "injection" | "benign">;
  private readonly headers: Record<string, string>;
  private readonly timeoutMs: number;
  /** Calls made to the classifier (cache misses), for tests and metrics. */
  calls = 0;

  constructor(
    readonly settings: ClassifierSettings,
    env: NodeJS.ProcessEnv = process.env,
  ) {
    this.timeoutMs = durationMs(settings.timeout);
    this.cache = new LRUCache({ max: settings.cache.maxEntries, ttl: durationMs(settings.cache.ttl) });
    this.headers = { "content-type": "application/json" };
    const auth = settings.auth;
    if (auth) {
      let value: string | undefined;
      if (auth.valueEnv !== undefined) {
        value = env[auth.valueEnv];
        if (value === undefined || value === "")
          throw new Error(`security.classifier.auth: environment variable ${auth.valueEnv} is not set`);
      } else value = readFileSync(auth.valueFile!, "utf8").trim();
      this.headers[auth.header.toLowerCase()] = value;
    }
  }

  async classify(text: string): Promise<Verdict> {
    const key = createHash("sha256").update(text).digest("base64url");
    const cached = this.cache.get(key);
    if (cached) return cached;
    this.calls++;
    try {
      const res = await request(this.settings.url, {
        method: "POST",
        headers: this.headers,
        body: JSON.stringify({ inputs: text, text }),
        signal: AbortSignal.timeout(this.timeoutMs),
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
      });
      if (res.statusCode !== 200) {
        await res.body.dump();
        return "unavailable";
      }
      const verdict = readVerdict(await res.body.json(), this.settings.threshold);
      if (verdict === undefined) return "unavailable";
      this.cache.set(key, verdict);
      return verdict;
    } catch {
      return "unavailable";
    }
  }
}

const INJECTION_LABEL = /injection|jailbreak|malicious|unsafe/i;

/** The verdict in a classifier's answer, or undefined when the answer has none of the known shapes. */
export function readVerdict(answer: unknown, threshold: number): "injection" | "benign" | undefined {
  const list = Array.isArray(answer)
    ? Array.isArray(answer[0])
      ? (answer[0] as unknown[])
      : answer
    : [answer];
  let seen = false;
  for (const item of list) {
    if (typeof item !== "object" || item === null) continue;
    const o = item as Record<string, unknown>;
    if (typeof o.injection === "boolean") return o.injection ? "injection" : "benign";
    if (typeof o.score !== "number") continue;
    seen = true;
    const label = typeof o.label === "string" ? o.label : undefined;
    if ((label === undefined || INJECTION_LABEL.test(label)) && o.score >= threshold) return "injection";
  }
  return seen ? "benign" : undefined;
}
