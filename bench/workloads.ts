import { SseParser } from "../ext-service/src/mcp/sse.js";
import { REFERENCE_JSON_PATH, REFERENCE_SSE_PATH, REFERENCE_TOOLS, REPORT_TEXT } from "./reference-server.js";

/** The registry servers of the bench config: both are the reference server, one answering SSE. */
export const JSON_SERVER = "ref";
export const SSE_SERVER = "ref-sse";
export const PROTOCOL_VERSION = "2025-11-25";

export const WORKLOAD_IDS = [
  "call_small",
  "tools_list",
  "call_64k_json",
  "call_64k_sse",
  "call_uncached",
  "call_cached",
] as const;

/**
 * What a run measures unless --workloads says otherwise. The cache pair is opt-in, so the default
 * run stays within its time budget: `--workloads call_uncached,call_cached`.
 */
export const DEFAULT_WORKLOAD_IDS: readonly WorkloadId[] = [
  "call_small",
  "tools_list",
  "call_64k_json",
  "call_64k_sse",
];

/** Read-only tools of the reference server: the first has a registry cache setting, the other not. */
export const CACHED_TOOL = "get_articles";
export const UNCACHED_TOOL = "get_tickets";
export type WorkloadId = (typeof WORKLOAD_IDS)[number];

export interface Workload {
  readonly id: WorkloadId;
  readonly title: string;
  /** Registry server the gateway routes to. */
  readonly server: typeof JSON_SERVER | typeof SSE_SERVER;
  /** Path on the reference server (direct side). */
  readonly upstreamPath: string;
  readonly responseType: "application/json" | "text/event-stream";
  requestBody(id: number): string;
  /**
   * The gateway answers repeats itself, from its result cache (the registry caches the tool):
   * through the Envoy-role client the answer then comes from ext_proc, not the upstream.
   */
  readonly cachedByGateway?: boolean;
  /** Checks the `result` of the JSON-RPC response; returns what is wrong, or undefined. */
  checkResult(result: Record<string, unknown>): string | undefined;
}

const ECHO_TEXT = "Summarise ticket 4821 for the on-call engineer in two sentences.";

function call(id: number, name: string, args: Record<string, unknown>): string {
  return JSON.stringify({ jsonrpc: "2.0", id, method: "tools/call", params: { name, arguments: args } });
}

function firstText(result: Record<string, unknown>): string | undefined {
  const content = result.content;
  if (!Array.isArray(content)) return undefined;
  const first = content[0] as { type?: unknown; text?: unknown } | undefined;
  return first?.type === "text" && typeof first.text === "string" ? first.text : undefined;
}

const checkReport = (result: Record<string, unknown>) =>
  firstText(result) === REPORT_TEXT ? undefined : "the report text differs from the reference";

export const WORKLOADS: Readonly<Record<WorkloadId, Workload>> = {
  call_small: {
    id: "call_small",
    title: "tools/call, small result",
    server: JSON_SERVER,
    upstreamPath: REFERENCE_JSON_PATH,
    responseType: "application/json",
    requestBody: (id) => call(id, "echo", { text: ECHO_TEXT }),
    checkResult: (r) => (firstText(r) === ECHO_TEXT ? undefined : "echo returned other text"),
  },
  tools_list: {
    id: "tools_list",
    title: "tools/list, 50 tools",
    server: JSON_SERVER,
    upstreamPath: REFERENCE_JSON_PATH,
    responseType: "application/json",
    requestBody: (id) => JSON.stringify({ jsonrpc: "2.0", id, method: "tools/list", params: {} }),
    checkResult: (r) =>
      Array.isArray(r.tools) && r.tools.length === REFERENCE_TOOLS.length
        ? undefined
        : `expected ${REFERENCE_TOOLS.length} tools, got ${Array.isArray(r.tools) ? r.tools.length : "none"}`,
  },
  call_64k_json: {
    id: "call_64k_json",
    title: "tools/call, 64 KB result, JSON",
    server: JSON_SERVER,
    upstreamPath: REFERENCE_JSON_PATH,
    responseType: "application/json",
    requestBody: (id) => call(id, "get_report", { week: "2026-W10" }),
    checkResult: checkReport,
  },
  call_uncached: {
    id: "call_uncached",
    title: "tools/call, read-only tool, not cached",
    server: JSON_SERVER,
    upstreamPath: REFERENCE_JSON_PATH,
    responseType: "application/json",
    requestBody: (id) => call(id, UNCACHED_TOOL, { id: "T-1042" }),
    checkResult: (r) => (firstText(r) === `${UNCACHED_TOOL}: ok` ? undefined : "unexpected result text"),
  },
  call_cached: {
    id: "call_cached",
    title: "tools/call, read-only tool, cached by the gateway",
    server: JSON_SERVER,
    upstreamPath: REFERENCE_JSON_PATH,
    responseType: "application/json",
    requestBody: (id) => call(id, CACHED_TOOL, { id: "A-7" }),
    checkResult: (r) => (firstText(r) === `${CACHED_TOOL}: ok` ? undefined : "unexpected result text"),
    cachedByGateway: true,
  },
  call_64k_sse: {
    id: "call_64k_sse",
    title: "tools/call, 64 KB result, SSE",
    server: SSE_SERVER,
    upstreamPath: REFERENCE_SSE_PATH,
    responseType: "text/event-stream",
    requestBody: (id) => call(id, "get_report", { week: "2026-W10" }),
    checkResult: checkReport,
  },
};

/** JSON-RPC messages carried by a body: the JSON value itself, or each SSE event's data. */
function messagesOf(contentType: string, body: string): unknown[] {
  if (contentType.startsWith("text/event-stream")) {
    const parser = new SseParser();
    const events = parser.push(body);
    parser.end();
    return events.filter((e) => e.data).map((e) => JSON.parse(e.data!) as unknown);
  }
  const value = JSON.parse(body) as unknown;
  return Array.isArray(value) ? value : [value];
}

/**
 * Full check of one answer (used once per side and workload before measuring; during the
 * measurement only status, content type and length are compared with this checked answer).
 */
export function checkAnswer(
  workload: Workload,
  id: number,
  status: number,
  contentType: string | undefined,
  body: string,
): string | undefined {
  if (status !== 200) return `HTTP ${status}: ${body.slice(0, 200)}`;
  const type = contentType ?? "";
  if (!type.startsWith(workload.responseType)) {
    return `content-type '${type}', expected ${workload.responseType}`;
  }
  let messages: unknown[];
  try {
    messages = messagesOf(type, body);
  } catch (err) {
    return `unparsable body: ${(err as Error).message}`;
  }
  const answer = messages.find((m) => (m as { id?: unknown } | null)?.id === id) as
    Record<string, unknown> | undefined;
  if (!answer) return `no JSON-RPC response with id ${id}`;
  if (answer.jsonrpc !== "2.0") return "response is not JSON-RPC 2.0";
  if (answer.error !== undefined) return `JSON-RPC error ${JSON.stringify(answer.error).slice(0, 300)}`;
  if (typeof answer.result !== "object" || answer.result === null) return "response without a result";
  return workload.checkResult(answer.result as Record<string, unknown>);
}
