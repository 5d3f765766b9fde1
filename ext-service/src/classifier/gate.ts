import { decodeUtf8, errorResponse, type JsonRpcId, isPlainObject } from "../mcp/jsonrpc.js";
import { countOn, denyExchange, type Exchange } from "../policy/exchange.js";
import { needsClassification, scanInjection } from "../policy/injection.js";
import { Reasons } from "../policy/reasons.js";
import type { PolicyEngine } from "../policy/engine.js";
import { HttpClassifier } from "./http-classifier.js";

type Surface = "outputs" | "descriptions";

const encoder = new TextEncoder();
/** Most texts of one response sent to the classifier (in document order). */
const MAX_TEXTS = 32;

const classifiers = new WeakMap<PolicyEngine, HttpClassifier | null>();

/** The classifier of an engine's configuration (one per loaded configuration), or undefined. */
export function classifierFor(engine: PolicyEngine): HttpClassifier | undefined {
  let c = classifiers.get(engine);
  if (c === undefined) {
    const settings = engine.config.security.classifier;
    c = settings ? new HttpClassifier(settings) : null;
    classifiers.set(engine, c);
  }
  return c ?? undefined;
}

/**
 * The classifier's pass over a JSON response body the policy already let through (both planes
 * call it after ResponseTransformer.transformJson). It reads the texts the model will see, by
 * shape: `result.content[].text` (tool results), `result.messages[].content.text` (prompts),
 * `result.contents[].text` (resources) and `error.message` are outputs; `result.tools[]`,
 * `result.prompts[]` and `result.resources[]` descriptions are descriptions. A text is sent when
 * its surface is named in `security.classifier.surfaces` or the rules are unsure about it. A
 * response with a text judged an injection (or not judged, when failMode is closed) is replaced
 * by an `injection_blocked` error for its id. Returns the replacement body, or undefined.
 */
export async function classifyResponse(
  classifier: HttpClassifier,
  exchange: Exchange,
  body: Uint8Array,
): Promise<Uint8Array | undefined> {
  const text = decodeUtf8(body);
  if (text === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  const messages = Array.isArray(value) ? value : [value];
  let changed = false;
  const out: unknown[] = [];
  for (const m of messages) {
    const blocked = await judgeMessage(classifier, exchange, m);
    if (blocked) changed = true;
    out.push(blocked ?? m);
  }
  if (!changed) return undefined;
  return encoder.encode(JSON.stringify(Array.isArray(value) ? out : out[0]));
}

async function judgeMessage(
  classifier: HttpClassifier,
  exchange: Exchange,
  message: unknown,
): Promise<Record<string, unknown> | undefined> {
  if (!isPlainObject(message) || !("id" in message)) return undefined;
  const texts: { surface: Surface; text: string }[] = [];
  collectTexts(message, texts);
  const settings = classifier.settings;
  const asked: string[] = [];
  for (const t of texts) {
    if (asked.length >= MAX_TEXTS) break;
    if (t.text.length < settings.minChars) continue;
    if (settings.surfaces.includes(t.surface) || needsClassification(scanInjection(t.text)))
      asked.push(t.text);
  }
  if (asked.length === 0) return undefined;
  const verdicts = await Promise.all(asked.map((t) => classifier.classify(t)));
  const injection = verdicts.includes("injection");
  const unjudged = verdicts.includes("unavailable");
  if (unjudged) countOn(exchange, "classifier:unavailable");
  if (!injection && !(unjudged && settings.failMode === "closed")) {
    if (asked.length) countOn(exchange, "classifier:passed", asked.length);
    return undefined;
  }
  const rule = injection ? "classifier.injection" : "classifier.unavailable";
  countOn(exchange, `injection:${rule}`);
  denyExchange(exchange, "injection_blocked", "deny", rule);
  const info = Reasons.injection_blocked;
  return errorResponse(message.id as JsonRpcId, info.code, `${info.message}: ${rule}`, {
    reason: "injection_blocked",
    request_id: exchange.requestId,
  });
}

function collectTexts(message: Record<string, unknown>, out: { surface: Surface; text: string }[]): void {
  const error = message.error;
  if (isPlainObject(error) && typeof error.message === "string")
    out.push({ surface: "outputs", text: error.message });
  const result = message.result;
  if (!isPlainObject(result)) return;
  for (const item of arrayOf(result.content)) {
    if (isPlainObject(item) && typeof item.text === "string")
      out.push({ surface: "outputs", text: item.text });
  }
  for (const m of arrayOf(result.messages)) {
    if (isPlainObject(m) && isPlainObject(m.content) && typeof m.content.text === "string")
      out.push({ surface: "outputs", text: m.content.text });
  }
  for (const c of arrayOf(result.contents)) {
    if (isPlainObject(c) && typeof c.text === "string") out.push({ surface: "outputs", text: c.text });
  }
  for (const list of [result.tools, result.prompts, result.resources]) {
    for (const d of arrayOf(list)) {
      if (isPlainObject(d) && typeof d.description === "string")
        out.push({ surface: "descriptions", text: d.description });
    }
  }
}

function arrayOf(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}
