/**
 * The conformance suite's server for the 2025-11-25 revision, built on the 1.x SDK (`@modelcontextprotocol/sdk`):
 * stateful Streamable HTTP, one McpServer and transport per session, server-to-client requests on the call's stream.
 */
import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { localhostHostValidation } from "@modelcontextprotocol/node";
import { InMemoryEventStore } from "@modelcontextprotocol/sdk/examples/shared/inMemoryEventStore.js";
import { completable } from "@modelcontextprotocol/sdk/server/completable.js";
import { McpServer, ResourceTemplate } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import {
  CreateMessageResultSchema,
  ElicitResultSchema,
  McpError,
  ErrorCode,
  SubscribeRequestSchema,
  UnsubscribeRequestSchema,
  type ServerNotification,
} from "@modelcontextprotocol/sdk/types.js";
import * as z from "zod";
import {
  DEFAULTS_SCHEMA,
  ENUMS_SCHEMA,
  LOG_MESSAGES,
  PNG_BASE64,
  PROGRESS_STEPS,
  STEP_DELAY_MS,
  TEXT,
  WAV_BASE64,
  complete,
  elicitationSummary,
  promptWithArgumentsText,
  sleep,
  templateData,
} from "./fixture.js";

/** How long test_reconnection waits after closing its stream, and the retry hint clients get: resume fast. */
const RECONNECT_PAUSE_MS = 100;
const RETRY_HINT_MS = 50;

export const SERVER_INFO = { name: "mcp-gateway-conformance-2025", version: "1.0.0" } as const;

/** Elicitation schemas are plain JSON Schema; the SDK's request type narrows them, the wire does not. */
type ElicitParams = { message: string; requestedSchema: Record<string, unknown> };

function buildServer(progressStepMs: number, strictCapabilities = false): McpServer {
  const server = new McpServer(SERVER_INFO, {
    // Strict: a request the client did not declare the capability for is refused here, before it
    // is sent (the SDK's enforceStrictCapabilities), as a server that checks before it asks.
    ...(strictCapabilities ? { enforceStrictCapabilities: true } : {}),
    capabilities: {
      tools: { listChanged: true },
      resources: { subscribe: true, listChanged: true },
      prompts: { listChanged: true },
      logging: {},
      completions: {},
    },
  });
  const subscriptions = new Set<string>();

  server.registerTool("test_simple_text", { description: "Returns one text item" }, () => ({
    content: [{ type: "text", text: TEXT.simpleTool }],
  }));
  server.registerTool("test_image_content", { description: "Returns one PNG image item" }, () => ({
    content: [{ type: "image", data: PNG_BASE64, mimeType: "image/png" }],
  }));
  server.registerTool("test_audio_content", { description: "Returns one WAV audio item" }, () => ({
    content: [{ type: "audio", data: WAV_BASE64, mimeType: "audio/wav" }],
  }));
  server.registerTool("test_embedded_resource", { description: "Returns an embedded text resource" }, () => ({
    content: [
      {
        type: "resource",
        resource: { uri: "test://embedded-resource", mimeType: "text/plain", text: TEXT.embeddedResource },
      },
    ],
  }));
  server.registerTool(
    "test_multiple_content_types",
    { description: "Returns text, an image and an embedded resource" },
    () => ({
      content: [
        { type: "text", text: "Multiple content types test:" },
        { type: "image", data: PNG_BASE64, mimeType: "image/png" },
        {
          type: "resource",
          resource: {
            uri: "test://mixed-content-resource",
            mimeType: "application/json",
            text: JSON.stringify({ test: "data", value: 123 }),
          },
        },
      ],
    }),
  );
  server.registerTool(
    "test_tool_with_logging",
    { description: "Sends three info log messages while it runs", inputSchema: {} },
    async (_args, extra) => {
      for (const [i, message] of LOG_MESSAGES.entries()) {
        if (i > 0) await sleep(STEP_DELAY_MS);
        await extra.sendNotification({
          method: "notifications/message",
          params: { level: "info", data: message },
        });
      }
      return { content: [{ type: "text", text: "Tool with logging executed successfully" }] };
    },
  );
  server.registerTool(
    "test_tool_with_progress",
    { description: "Reports progress 0, 50 and 100 of 100 while it runs", inputSchema: {} },
    async (_args, extra) => {
      const progressToken = extra._meta?.progressToken;
      for (const [i, progress] of PROGRESS_STEPS.entries()) {
        if (i > 0) await sleep(progressStepMs);
        if (extra.signal.aborted) throw new Error("cancelled");
        if (progressToken === undefined) continue;
        const notification: ServerNotification = {
          method: "notifications/progress",
          params: { progressToken, progress, total: 100 },
        };
        await extra.sendNotification(notification);
      }
      return {
        content: [{ type: "text", text: `progress reported for ${String(progressToken ?? "no token")}` }],
      };
    },
  );
  server.registerTool("test_error_handling", { description: "Always fails with a tool error" }, () => ({
    isError: true,
    content: [{ type: "text", text: TEXT.errorTool }],
  }));
  server.registerTool(
    "test_reconnection",
    {
      description: "Closes its own SSE stream mid-call; the result arrives when the client resumes",
      inputSchema: {},
    },
    async (_args, extra) => {
      extra.closeSSEStream?.();
      await sleep(RECONNECT_PAUSE_MS);
      return { content: [{ type: "text", text: "Reconnection test completed" }] };
    },
  );
  server.registerTool(
    "test_sampling",
    { description: "Asks the client's model to complete a prompt", inputSchema: { prompt: z.string() } },
    async ({ prompt }, extra) => {
      const result = await extra.sendRequest(
        {
          method: "sampling/createMessage",
          params: { messages: [{ role: "user", content: { type: "text", text: prompt } }], maxTokens: 100 },
        },
        CreateMessageResultSchema,
      );
      const text = result.content.type === "text" ? result.content.text : `(${result.content.type})`;
      return { content: [{ type: "text", text: `LLM response: ${text}` }] };
    },
  );
  server.registerTool(
    "test_elicitation",
    { description: "Asks the user for a response", inputSchema: { message: z.string() } },
    async ({ message }, extra) => {
      const params: ElicitParams = {
        message,
        requestedSchema: {
          type: "object",
          properties: { response: { type: "string", description: "The user's response" } },
          required: ["response"],
        },
      };
      const result = await extra.sendRequest(
        { method: "elicitation/create", params: params as never },
        ElicitResultSchema,
      );
      return {
        content: [
          {
            type: "text",
            text: `User response: action=${result.action}, content=${JSON.stringify(result.content ?? {})}`,
          },
        ],
      };
    },
  );
  const elicitWith = (name: string, description: string, message: string, schema: Record<string, unknown>) =>
    server.registerTool(name, { description, inputSchema: {} }, async (_args, extra) => {
      const params: ElicitParams = { message, requestedSchema: schema };
      const result = await extra.sendRequest(
        { method: "elicitation/create", params: params as never },
        ElicitResultSchema,
      );
      return { content: [{ type: "text", text: elicitationSummary(result) }] };
    });
  elicitWith(
    "test_elicitation_sep1034_defaults",
    "Elicits a form whose fields all carry defaults",
    "Please review the fields (defaults filled in)",
    DEFAULTS_SCHEMA,
  );
  elicitWith(
    "test_elicitation_sep1330_enums",
    "Elicits a form with every enum shape",
    "Please pick from the enum fields",
    ENUMS_SCHEMA,
  );

  server.registerResource(
    "static-text",
    "test://static-text",
    { description: "A static text resource", mimeType: "text/plain" },
    (uri) => ({ contents: [{ uri: uri.href, mimeType: "text/plain", text: TEXT.staticResource }] }),
  );
  server.registerResource(
    "static-binary",
    "test://static-binary",
    { description: "A static PNG resource", mimeType: "image/png" },
    (uri) => ({ contents: [{ uri: uri.href, mimeType: "image/png", blob: PNG_BASE64 }] }),
  );
  server.registerResource(
    "watched-resource",
    "test://watched-resource",
    { description: "A resource clients may subscribe to", mimeType: "text/plain" },
    (uri) => ({ contents: [{ uri: uri.href, mimeType: "text/plain", text: "Watched resource content" }] }),
  );
  server.registerResource(
    "template",
    new ResourceTemplate("test://template/{id}/data", { list: undefined, complete: { id: complete } }),
    { description: "A resource template with an id parameter", mimeType: "application/json" },
    (uri, variables) => ({
      contents: [{ uri: uri.href, mimeType: "application/json", text: templateData(String(variables.id)) }],
    }),
  );
  server.server.setRequestHandler(SubscribeRequestSchema, (request) => {
    subscriptions.add(request.params.uri);
    return {};
  });
  server.server.setRequestHandler(UnsubscribeRequestSchema, (request) => {
    subscriptions.delete(request.params.uri);
    return {};
  });

  server.registerPrompt("test_simple_prompt", { description: "A prompt without arguments" }, () => ({
    messages: [{ role: "user", content: { type: "text", text: TEXT.simplePrompt } }],
  }));
  server.registerPrompt(
    "test_prompt_with_arguments",
    {
      description: "A prompt with two required arguments",
      argsSchema: {
        arg1: completable(z.string().describe("First test argument"), complete),
        arg2: z.string().describe("Second test argument"),
      },
    },
    ({ arg1, arg2 }) => ({
      messages: [{ role: "user", content: { type: "text", text: promptWithArgumentsText(arg1, arg2) } }],
    }),
  );
  server.registerPrompt(
    "test_prompt_with_embedded_resource",
    { description: "A prompt embedding a resource", argsSchema: { resourceUri: z.string() } },
    ({ resourceUri }) => ({
      messages: [
        {
          role: "user",
          content: {
            type: "resource",
            resource: { uri: resourceUri, mimeType: "text/plain", text: TEXT.promptEmbedded },
          },
        },
        { role: "user", content: { type: "text", text: "Please process the embedded resource above." } },
      ],
    }),
  );
  server.registerPrompt("test_prompt_with_image", { description: "A prompt with an image" }, () => ({
    messages: [
      { role: "user", content: { type: "image", data: PNG_BASE64, mimeType: "image/png" } },
      { role: "user", content: { type: "text", text: "Please analyze the image above." } },
    ],
  }));

  return server;
}

export interface RunningServer {
  url: string;
  close(): Promise<void>;
}

/**
 * Starts the 2025-11-25 conformance server on 127.0.0.1. Only `Host` is validated (loopback names), like the SDK's
 * own localhost apps: a gateway in front must refuse a foreign Origin itself, the server does not do it for it.
 */
export async function startServer2025(
  port = 0,
  /** Pause between test_tool_with_progress's steps: long enough for a test to cancel it mid-call. */
  {
    progressStepMs = STEP_DELAY_MS,
    strictCapabilities = false,
  }: {
    progressStepMs?: number;
    /** Refuse to send a server-to-client request the client did not declare a capability for. */
    strictCapabilities?: boolean;
  } = {},
): Promise<RunningServer> {
  const transports = new Map<string, StreamableHTTPServerTransport>();
  const validateHost = localhostHostValidation();

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (!validateHost(req, res)) return;
    const sessionId = req.headers["mcp-session-id"];
    const existing = typeof sessionId === "string" ? transports.get(sessionId) : undefined;
    if (existing) {
      await existing.handleRequest(req, res);
      return;
    }
    if (typeof sessionId === "string") {
      res.writeHead(404, { "content-type": "application/json" });
      res.end(
        JSON.stringify({ jsonrpc: "2.0", id: null, error: { code: -32001, message: "Session not found" } }),
      );
      return;
    }
    if (req.method !== "POST") {
      res.writeHead(400, { "content-type": "application/json" });
      res.end(JSON.stringify({ jsonrpc: "2.0", id: null, error: { code: -32000, message: "No session" } }));
      return;
    }
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: randomUUID,
      eventStore: new InMemoryEventStore(),
      retryInterval: RETRY_HINT_MS,
      onsessioninitialized: (id) => {
        transports.set(id, transport);
      },
      onsessionclosed: (id) => {
        transports.delete(id);
      },
    });
    transport.onclose = () => {
      if (transport.sessionId) transports.delete(transport.sessionId);
    };
    await buildServer(progressStepMs, strictCapabilities).connect(transport);
    await transport.handleRequest(req, res);
  };

  const http: Server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) {
        const code = error instanceof McpError ? error.code : ErrorCode.InternalError;
        res.writeHead(500, { "content-type": "application/json" });
        res.end(JSON.stringify({ jsonrpc: "2.0", id: null, error: { code, message: "internal error" } }));
      } else {
        res.destroy();
      }
    });
  });
  await new Promise<void>((resolve) => http.listen(port, "127.0.0.1", resolve));
  const address = http.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${address.port}/mcp`,
    async close() {
      await Promise.all([...transports.values()].map((t) => t.close().catch(() => undefined)));
      http.closeAllConnections();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
}
