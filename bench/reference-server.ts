import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * The reference MCP server the benchmark measures against: Streamable HTTP, stateless, written on
 * node:http with pre-serialized results so that it costs as little as possible and answers the
 * same bytes every time. A slow server would hide the gateway's cost inside its own; the official
 * SDK server (schema validation, per-request transport objects) is several times slower than this
 * one, so it is deliberately not used here.
 *
 * `POST /mcp` answers application/json; `POST /mcp-sse` answers the same messages as
 * text/event-stream (one `message` event per response), as the SDK servers do by default.
 */

export const REFERENCE_JSON_PATH = "/mcp";
export const REFERENCE_SSE_PATH = "/mcp-sse";
export const SUPPORTED_PROTOCOL_VERSIONS = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
export const REFERENCE_SERVER_INFO = { name: "bench-reference", version: "1.0.0" };
const MAX_BODY_BYTES = 4 * 1024 * 1024;

export interface ToolDefinition {
  name: string;
  description: string;
  inputSchema: Record<string, unknown>;
  annotations?: Record<string, unknown>;
}

const DOMAINS = ["tickets", "orders", "invoices", "customers", "articles", "builds"] as const;
const VERBS = [
  ["list", "List {d}, newest first, optionally filtered by status."],
  ["get", "Fetch one of the {d} by its identifier, with all fields."],
  ["create", "Create a new entry in {d} from the given fields."],
  ["update", "Update fields of an existing entry in {d}."],
  ["search", "Full-text search over {d}; returns ids and short summaries."],
  ["archive", "Archive an entry in {d} so it no longer shows in lists."],
  ["export", "Export {d} matching a filter as CSV text."],
  ["count", "Count {d} matching a filter."],
] as const;

function schemaFor(verb: string): Record<string, unknown> {
  const id = { type: "string", minLength: 1, maxLength: 64 };
  switch (verb) {
    case "list":
      return {
        type: "object",
        properties: {
          status: { type: "string", enum: ["open", "pending", "closed"] },
          limit: { type: "integer", minimum: 1, maximum: 100 },
        },
        additionalProperties: false,
      };
    case "get":
    case "archive":
      return { type: "object", properties: { id }, required: ["id"], additionalProperties: false };
    case "create":
    case "update":
      return {
        type: "object",
        properties: {
          ...(verb === "update" ? { id } : {}),
          title: { type: "string", minLength: 3, maxLength: 200 },
          body: { type: "string", maxLength: 10_000 },
          priority: { type: "string", enum: ["low", "normal", "high"] },
        },
        required: verb === "update" ? ["id"] : ["title"],
        additionalProperties: false,
      };
    case "search":
      return {
        type: "object",
        properties: {
          query: { type: "string", minLength: 1, maxLength: 500 },
          limit: { type: "integer", minimum: 1, maximum: 50 },
        },
        required: ["query"],
        additionalProperties: false,
      };
    default:
      return {
        type: "object",
        properties: { filter: { type: "string", maxLength: 500 } },
        additionalProperties: false,
      };
  }
}

/**
 * The 50 tools: `echo`, `get_report` and 48 plausible CRUD tools; the `get_*` ones are annotated
 * read-only, so the gateway may cache their results (the call_cached workload).
 */
export const REFERENCE_TOOLS: readonly ToolDefinition[] = Object.freeze([
  {
    name: "echo",
    description: "Return the given text unchanged. Used for the small tools/call workload.",
    inputSchema: {
      type: "object",
      properties: { text: { type: "string", maxLength: 1000 } },
      required: ["text"],
      additionalProperties: false,
    },
  },
  {
    name: "get_report",
    description: "Return the weekly operations report as CSV text (about 64 KB).",
    inputSchema: {
      type: "object",
      properties: { week: { type: "string", pattern: "^[0-9]{4}-W[0-9]{2}$" } },
      required: ["week"],
      additionalProperties: false,
    },
  },
  ...DOMAINS.flatMap((d) =>
    VERBS.map(([verb, text]) => ({
      name: `${verb}_${d}`,
      description: text.replace("{d}", d),
      inputSchema: schemaFor(verb),
      ...(verb === "get" ? { annotations: { readOnlyHint: true } } : {}),
    })),
  ),
]);

/** 64 KiB of report text: CSV rows with words and short codes, no secrets, no personal data. */
export const REPORT_TEXT: string = (() => {
  const services = ["billing", "search", "checkout", "catalog", "identity", "shipping", "ledger"];
  const states = ["resolved", "mitigated", "monitoring", "closed"];
  const notes = [
    "latency spike after a deploy, rolled back within the hour",
    "queue backlog drained after scaling the worker pool",
    "cache hit ratio dropped during the nightly reindex",
    "elevated error rate from one availability zone",
    "certificate rotation completed without customer impact",
    "slow queries traced to a missing index, index added",
  ];
  let out = "incident,service,state,week,note\n";
  for (let i = 0; out.length < 65_536; i++) {
    out += `INC-${1000 + i},${services[i % services.length]},${states[i % states.length]},W${(i % 52) + 1},${notes[i % notes.length]}\n`;
  }
  return out.slice(0, 65_536);
})();

const TOOL_NAMES = new Set(REFERENCE_TOOLS.map((t) => t.name));
const TOOLS_LIST_RESULT = JSON.stringify({ tools: REFERENCE_TOOLS });
const REPORT_RESULT = JSON.stringify({ content: [{ type: "text", text: REPORT_TEXT }] });

export interface ReferenceAnswer {
  status: number;
  contentType: string | undefined;
  body: string;
}

type Id = string | number;

function resultMessage(id: Id, resultJson: string): string {
  return `{"jsonrpc":"2.0","id":${JSON.stringify(id)},"result":${resultJson}}`;
}

function errorMessage(id: Id | null, code: number, message: string): string {
  return JSON.stringify({ jsonrpc: "2.0", id, error: { code, message } });
}

function isId(value: unknown): value is Id {
  return typeof value === "string" || (typeof value === "number" && Number.isFinite(value));
}

/** Thrown for a message that is not a JSON-RPC 2.0 message at all. */
class InvalidRequest {
  constructor(readonly answer: string) {}
}

function invalid(id: unknown): never {
  throw new InvalidRequest(errorMessage(isId(id) ? id : null, -32600, "Invalid Request"));
}

/** Answers one JSON-RPC message; undefined for notifications and client responses. */
function answerMessage(message: unknown): string | undefined {
  if (typeof message !== "object" || message === null || Array.isArray(message)) invalid(null);
  const m = message as Record<string, unknown>;
  if (m.jsonrpc !== "2.0") invalid(m.id);
  if (typeof m.method !== "string") {
    // A response from the client (to a server request we never send): accepted, not answered.
    if (("result" in m || "error" in m) && "id" in m) return undefined;
    invalid(m.id);
  }
  if (!("id" in m)) return undefined;
  if (!isId(m.id)) invalid(null);
  const id = m.id;
  const params =
    typeof m.params === "object" && m.params !== null ? (m.params as Record<string, unknown>) : {};
  switch (m.method) {
    case "initialize": {
      const asked = params.protocolVersion;
      const version =
        typeof asked === "string" && SUPPORTED_PROTOCOL_VERSIONS.includes(asked)
          ? asked
          : SUPPORTED_PROTOCOL_VERSIONS[0];
      return resultMessage(
        id,
        JSON.stringify({
          protocolVersion: version,
          capabilities: { tools: { listChanged: false } },
          serverInfo: REFERENCE_SERVER_INFO,
        }),
      );
    }
    case "ping":
      return resultMessage(id, "{}");
    case "tools/list":
      return resultMessage(id, TOOLS_LIST_RESULT);
    case "tools/call": {
      const name = params.name;
      if (typeof name !== "string") return errorMessage(id, -32602, "Invalid params: 'name' is required");
      if (!TOOL_NAMES.has(name)) return errorMessage(id, -32602, `Unknown tool: ${name}`);
      if (name === "get_report") return resultMessage(id, REPORT_RESULT);
      const args =
        typeof params.arguments === "object" && params.arguments !== null
          ? (params.arguments as Record<string, unknown>)
          : {};
      const text = name === "echo" ? String(args.text ?? "") : `${name}: ok`;
      return resultMessage(id, JSON.stringify({ content: [{ type: "text", text }] }));
    }
    default:
      return errorMessage(id, -32601, `Method not found: ${m.method}`);
  }
}

/**
 * The answer to one POST body, as a pure function: the HTTP server uses it, and the ext-service
 * target uses it to feed Envoy-role response bodies that match what this server would send.
 */
export function answerPost(body: string, sse: boolean): ReferenceAnswer {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return {
      status: 400,
      contentType: "application/json",
      body: errorMessage(null, -32700, "Parse error"),
    };
  }
  const batch = Array.isArray(parsed);
  if (batch && (parsed as unknown[]).length === 0) {
    return {
      status: 400,
      contentType: "application/json",
      body: errorMessage(null, -32600, "Invalid Request: empty batch"),
    };
  }
  const answers: string[] = [];
  for (const message of batch ? (parsed as unknown[]) : [parsed]) {
    try {
      const a = answerMessage(message);
      if (a !== undefined) answers.push(a);
    } catch (err) {
      if (!(err instanceof InvalidRequest)) throw err;
      // A lone invalid message is a bad HTTP request; inside a batch it gets its own error.
      if (!batch) return { status: 400, contentType: "application/json", body: err.answer };
      answers.push(err.answer);
    }
  }
  if (answers.length === 0) return { status: 202, contentType: undefined, body: "" };
  if (sse) {
    return {
      status: 200,
      contentType: "text/event-stream",
      body: answers.map((a) => `event: message\ndata: ${a}\n\n`).join(""),
    };
  }
  return {
    status: 200,
    contentType: "application/json",
    body: batch ? `[${answers.join(",")}]` : answers[0]!,
  };
}

function handle(req: IncomingMessage, res: ServerResponse): void {
  const url = req.url ?? "/";
  const q = url.indexOf("?");
  const path = q < 0 ? url : url.slice(0, q);
  if (path !== REFERENCE_JSON_PATH && path !== REFERENCE_SSE_PATH) {
    res.writeHead(404, { "content-type": "application/json" });
    res.end(errorMessage(null, -32600, "Not found"));
    return;
  }
  if (req.method !== "POST") {
    // Stateless: no server-initiated stream (GET) and no session to end (DELETE).
    res.writeHead(405, { allow: "POST", "content-type": "application/json" });
    res.end(errorMessage(null, -32600, "Method not allowed"));
    return;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  req.on("data", (chunk: Buffer) => {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) {
      res.writeHead(413, { "content-type": "application/json", connection: "close" });
      res.end(errorMessage(null, -32600, "Request body too large"));
      req.destroy();
      return;
    }
    chunks.push(chunk);
  });
  req.on("end", () => {
    if (res.headersSent) return;
    const text = chunks.length === 1 ? chunks[0]!.toString("utf8") : Buffer.concat(chunks).toString("utf8");
    const answer = answerPost(text, path === REFERENCE_SSE_PATH);
    if (answer.status === 202) {
      res.writeHead(202).end();
    } else if (answer.contentType === "text/event-stream") {
      // Chunked, like a streaming server; the whole event is written at once.
      res.writeHead(answer.status, { "content-type": answer.contentType, "cache-control": "no-cache" });
      res.end(answer.body);
    } else {
      res.writeHead(answer.status, {
        "content-type": answer.contentType ?? "application/json",
        "content-length": Buffer.byteLength(answer.body),
      });
      res.end(answer.body);
    }
  });
}

export interface RunningServer {
  port: number;
  close(): Promise<void>;
}

export function startReferenceServer(opts: { host?: string; port?: number } = {}): Promise<RunningServer> {
  const server = createServer({ keepAliveTimeout: 60_000 }, handle);
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, opts.host ?? "127.0.0.1", () => {
      server.off("error", reject);
      resolve({
        port: (server.address() as AddressInfo).port,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}

/** Entry for bench/host.ts: runs the server in its own process. */
export async function serveReference(
  params: { port?: number } = {},
): Promise<{ ports: Record<string, number>; close(): Promise<void> }> {
  const server = await startReferenceServer({ port: params.port });
  return { ports: { http: server.port }, close: server.close };
}
