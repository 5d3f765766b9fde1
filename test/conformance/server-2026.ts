/**
 * The conformance suite's server for the 2026-07-28 revision, built on the v2 SDK (`@modelcontextprotocol/server`
 * + `@modelcontextprotocol/node`): stateless, a fresh McpServer per request from `createMcpHandler`, multi-round-trip
 * (`input_required`) tools whose `requestState` is sealed by the SDK's HMAC codec, caching hints on list and read
 * results, and `subscriptions/listen` for list-changed events.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { localhostHostValidation, toNodeHandler } from "@modelcontextprotocol/node";
import {
  CLIENT_CAPABILITIES_META_KEY,
  McpServer,
  ProtocolError,
  ProtocolErrorCode,
  ResourceTemplate,
  acceptedContent,
  completable,
  createMcpHandler,
  createRequestStateCodec,
  fromJsonSchema,
  inputRequired,
  type CallToolResult,
  type ClientCapabilities,
  type InputRequests,
  type InputRequiredResult,
} from "@modelcontextprotocol/server";
import * as z from "zod";
import {
  LOG_MESSAGES,
  PNG_BASE64,
  PROGRESS_STEPS,
  STEP_DELAY_MS,
  TEXT,
  WAV_BASE64,
  complete,
  promptWithArgumentsText,
  sleep,
  templateData,
} from "./fixture.js";
import type { RunningServer } from "./server-2025.js";

export const SERVER_INFO = { name: "mcp-gateway-conformance-2026", version: "1.0.0" } as const;

/** Cacheable results say how long they stay fresh; a gateway must pass these hints through unchanged. */
const CACHE_HINT = { ttlMs: 60_000, cacheScope: "public" } as const;

/** The JSON Schema 2020-12 input schema the json-schema-2020-12 scenario looks for, keyword for keyword. */
const SCHEMA_2020_12 = {
  $schema: "https://json-schema.org/draft/2020-12/schema",
  type: "object",
  $defs: {
    address: {
      $anchor: "addressDef",
      type: "object",
      properties: { street: { type: "string" }, city: { type: "string" } },
    },
  },
  properties: {
    name: { type: "string" },
    address: { $ref: "#/$defs/address" },
    contactMethod: { type: "string", enum: ["phone", "email"] },
    phone: { type: "string" },
    email: { type: "string" },
  },
  allOf: [{ anyOf: [{ required: ["phone"] }, { required: ["email"] }] }],
  if: { properties: { contactMethod: { const: "phone" } }, required: ["contactMethod"] },
  then: { required: ["phone"] },
  else: { required: ["email"] },
  additionalProperties: false,
} as const;

/** `x-mcp-header` is an MCP extension keyword that the SDK's JSON Schema type does not list. */
const REGION_SCHEMA = {
  type: "object",
  properties: {
    region: { type: "string", description: "also sent as Mcp-Param-Region", "x-mcp-header": "Region" },
    level: { type: "integer", description: "body only" },
  },
} as Parameters<typeof fromJsonSchema>[0];

const askName = (message = "What is your name?") =>
  inputRequired.elicit({
    message,
    requestedSchema: { type: "object", properties: { name: { type: "string" } }, required: ["name"] },
  });
const askConfirm = () =>
  inputRequired.elicit({
    message: "Please confirm",
    requestedSchema: { type: "object", properties: { ok: { type: "boolean" } }, required: ["ok"] },
  });
const askModel = (text: string, maxTokens: number) =>
  inputRequired.createMessage({ messages: [{ role: "user", content: { type: "text", text } }], maxTokens });

const text = (value: string): CallToolResult => ({ content: [{ type: "text", text: value }] });

interface StateClaims {
  tool: string;
  round?: number;
  name?: string;
  nonce: string;
}

export interface Server2026Options {
  port?: number;
  /**
   * `reject` (the default here) answers 2025-era requests with the SDK's unsupported-version error, so anything
   * a gateway sends upstream in the old wire shows up as a failure. `stateless` also serves the 2025 wire.
   */
  legacy?: "reject" | "stateless";
}

export async function startServer2026(options: Server2026Options = {}): Promise<RunningServer> {
  // Per process: every request gets a fresh McpServer, the sealed requestState is all that survives between rounds.
  const stateCodec = createRequestStateCodec<StateClaims>({ key: new Uint8Array(randomBytes(32)) });

  function build(): McpServer {
    const server = new McpServer(SERVER_INFO, {
      capabilities: {
        tools: { listChanged: true },
        resources: { listChanged: true },
        prompts: { listChanged: true },
        completions: {},
      },
      cacheHints: {
        "tools/list": CACHE_HINT,
        "prompts/list": CACHE_HINT,
        "resources/list": CACHE_HINT,
        "resources/templates/list": CACHE_HINT,
        "resources/read": CACHE_HINT,
      },
      requestState: { verify: stateCodec.verify },
    });

    server.registerTool("test_simple_text", { description: "Returns one text item" }, () =>
      text(TEXT.simpleTool),
    );
    server.registerTool("test_image_content", { description: "Returns one PNG image item" }, () => ({
      content: [{ type: "image", data: PNG_BASE64, mimeType: "image/png" }],
    }));
    server.registerTool("test_audio_content", { description: "Returns one WAV audio item" }, () => ({
      content: [{ type: "audio", data: WAV_BASE64, mimeType: "audio/wav" }],
    }));
    server.registerTool(
      "test_embedded_resource",
      { description: "Returns an embedded text resource" },
      () => ({
        content: [
          {
            type: "resource",
            resource: {
              uri: "test://embedded-resource",
              mimeType: "text/plain",
              text: TEXT.embeddedResource,
            },
          },
        ],
      }),
    );
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
      { description: "Logs three info messages while it runs", inputSchema: z.object({}) },
      async (_args, ctx) => {
        for (const [i, message] of LOG_MESSAGES.entries()) {
          if (i > 0) await sleep(STEP_DELAY_MS);
          await ctx.mcpReq.log("info", message);
        }
        return text("Tool with logging executed successfully");
      },
    );
    server.registerTool(
      "test_tool_with_progress",
      { description: "Reports progress 0, 50 and 100 of 100 while it runs", inputSchema: z.object({}) },
      async (_args, ctx) => {
        const progressToken = ctx.mcpReq._meta?.progressToken;
        for (const [i, progress] of PROGRESS_STEPS.entries()) {
          if (i > 0) await sleep(STEP_DELAY_MS);
          // Progress only for a caller that asked for it with a token.
          if (progressToken === undefined) continue;
          await ctx.mcpReq.notify({
            method: "notifications/progress",
            params: { progressToken, progress, total: 100 },
          });
        }
        return text(`progress reported for ${String(progressToken ?? "no token")}`);
      },
    );
    server.registerTool("test_error_handling", { description: "Always fails with a tool error" }, () => ({
      isError: true,
      content: [{ type: "text", text: TEXT.errorTool }],
    }));
    server.registerTool(
      "json_schema_2020_12_tool",
      { description: "Takes a JSON Schema 2020-12 input", inputSchema: fromJsonSchema(SCHEMA_2020_12) },
      (args) => text(`called with ${JSON.stringify(args)}`),
    );

    // An argument mirrored into an `Mcp-Param-Region` request header (SEP-2243), which the server checks against the body.
    server.registerTool(
      "test_x_mcp_header",
      {
        description: "Echoes a region argument that clients also send as a header",
        inputSchema: fromJsonSchema<{ region?: string; level?: number }>(REGION_SCHEMA),
      },
      (args) => text(`region=${args.region ?? "(none)"}`),
    );

    // Fixtures the server-stateless scenario calls by name.
    server.registerTool(
      "test_missing_capability",
      { description: "Needs the client's sampling capability", inputSchema: z.object({}) },
      (_args, ctx): CallToolResult | InputRequiredResult =>
        ctx.mcpReq.inputResponses?.["answer"] === undefined
          ? inputRequired({ inputRequests: { answer: askModel("Reply with one word", 16) } })
          : text("sampling answered"),
    );
    server.registerTool(
      "test_streaming_elicitation",
      { description: "Answers with a result only, never a request on the stream", inputSchema: z.object({}) },
      () => text("result only"),
    );
    server.registerTool(
      "test_logging_tool",
      { description: "Logs through the request, which only delivers when the request set a log level" },
      async (ctx) => {
        await ctx.mcpReq.log("info", "test_logging_tool ran");
        return text("logged");
      },
    );
    server.registerTool("test_trigger_tool_change", { description: "Announces a tools list change" }, () => {
      handler.notify.toolsChanged();
      return text("tools list change announced");
    });
    server.registerTool(
      "test_trigger_prompt_change",
      { description: "Announces a prompts list change" },
      () => {
        handler.notify.promptsChanged();
        return text("prompts list change announced");
      },
    );

    // Multi-round-trip tools (input_required results).
    server.registerTool(
      "test_input_required_result_elicitation",
      { description: "Asks the user's name in band", inputSchema: z.object({}) },
      (_args, ctx): CallToolResult | InputRequiredResult => {
        const name = acceptedContent<{ name: string }>(ctx.mcpReq.inputResponses, "user_name")?.name;
        return typeof name === "string"
          ? text(`Hello, ${name}!`)
          : inputRequired({ inputRequests: { user_name: askName() } });
      },
    );
    server.registerTool(
      "test_input_required_result_sampling",
      { description: "Asks the client's model in band", inputSchema: z.object({}) },
      (_args, ctx): CallToolResult | InputRequiredResult => {
        const answer = ctx.mcpReq.inputResponses?.["capital_question"] as
          { content?: { text?: string } } | undefined;
        return answer === undefined
          ? inputRequired({
              inputRequests: { capital_question: askModel("What is the capital of France?", 100) },
            })
          : text(`Sampling response: ${answer.content?.text ?? JSON.stringify(answer)}`);
      },
    );
    server.registerTool(
      "test_input_required_result_list_roots",
      { description: "Asks for the client's roots in band", inputSchema: z.object({}) },
      (_args, ctx): CallToolResult | InputRequiredResult => {
        const roots = (
          ctx.mcpReq.inputResponses?.["client_roots"] as { roots?: { uri?: string }[] } | undefined
        )?.roots;
        return Array.isArray(roots)
          ? text(`Client exposed ${roots.length} root(s): ${roots.map((r) => r.uri).join(", ")}`)
          : inputRequired({ inputRequests: { client_roots: inputRequired.listRoots() } });
      },
    );
    server.registerTool(
      "test_input_required_result_request_state",
      { description: "Round-trips sealed request state with a confirmation", inputSchema: z.object({}) },
      async (_args, ctx): Promise<CallToolResult | InputRequiredResult> => {
        if (acceptedContent(ctx.mcpReq.inputResponses, "confirm") === undefined) {
          return inputRequired({
            inputRequests: { confirm: askConfirm() },
            requestState: await stateCodec.mint({ tool: "request_state", nonce: randomUUID() }),
          });
        }
        if (ctx.mcpReq.requestState<StateClaims>()?.tool !== "request_state") {
          throw new ProtocolError(ProtocolErrorCode.InvalidParams, "requestState missing or not verified");
        }
        return text("state-ok: requestState verified and confirmation received");
      },
    );
    server.registerTool(
      "test_input_required_result_multiple_inputs",
      { description: "Asks for elicitation, sampling and roots in one round", inputSchema: z.object({}) },
      async (_args, ctx): Promise<CallToolResult | InputRequiredResult> => {
        const responses = ctx.mcpReq.inputResponses;
        const name = acceptedContent<{ name: string }>(responses, "user_name")?.name;
        const greeting = (responses?.["greeting"] as { content?: { text?: string } } | undefined)?.content
          ?.text;
        const roots = (responses?.["client_roots"] as { roots?: unknown[] } | undefined)?.roots;
        if (typeof name === "string" && typeof greeting === "string" && Array.isArray(roots)) {
          return text(`${greeting} ${name}: ${roots.length} root(s) visible`);
        }
        return inputRequired({
          inputRequests: {
            user_name: askName(),
            greeting: askModel("Generate a greeting", 50),
            client_roots: inputRequired.listRoots(),
          },
          requestState: await stateCodec.mint({ tool: "multiple_inputs", nonce: randomUUID() }),
        });
      },
    );
    server.registerTool(
      "test_input_required_result_multi_round",
      { description: "Two elicitation rounds, the state sealed anew each round", inputSchema: z.object({}) },
      async (_args, ctx): Promise<CallToolResult | InputRequiredResult> => {
        const state = ctx.mcpReq.requestState<StateClaims>();
        const round = state?.tool === "multi_round" ? (state.round ?? 0) : 0;
        if (round === 0) {
          return inputRequired({
            inputRequests: { step1: askName("Step 1: What is your name?") },
            requestState: await stateCodec.mint({ tool: "multi_round", round: 1, nonce: randomUUID() }),
          });
        }
        if (round === 1) {
          const name =
            acceptedContent<{ name: string }>(ctx.mcpReq.inputResponses, "step1")?.name ?? "unknown";
          return inputRequired({
            inputRequests: {
              step2: inputRequired.elicit({
                message: "Step 2: What is your favorite color?",
                requestedSchema: {
                  type: "object",
                  properties: { color: { type: "string" } },
                  required: ["color"],
                },
              }),
            },
            requestState: await stateCodec.mint({ tool: "multi_round", round: 2, name, nonce: randomUUID() }),
          });
        }
        const color =
          acceptedContent<{ color: string }>(ctx.mcpReq.inputResponses, "step2")?.color ?? "unknown";
        return text(`Multi-round complete: ${state?.name ?? "unknown"} likes ${color}`);
      },
    );
    server.registerTool(
      "test_input_required_result_tampered_state",
      { description: "Refuses a retry whose request state fails verification", inputSchema: z.object({}) },
      async (_args, ctx): Promise<CallToolResult | InputRequiredResult> => {
        if (
          ctx.mcpReq.requestState() !== undefined &&
          acceptedContent(ctx.mcpReq.inputResponses, "confirm")
        ) {
          return text("integrity-ok: requestState verified");
        }
        return inputRequired({
          inputRequests: { confirm: askConfirm() },
          requestState: await stateCodec.mint({ tool: "tampered_state", nonce: randomUUID() }),
        });
      },
    );
    server.registerTool(
      "test_input_required_result_capabilities",
      { description: "Asks only for input kinds the client declared", inputSchema: z.object({}) },
      (_args, ctx): CallToolResult | InputRequiredResult => {
        if (ctx.mcpReq.inputResponses !== undefined) return text("Capability-aware input requests fulfilled");
        // The envelope's key type is a template literal this TypeScript cannot index by the exported constant.
        const envelope = ctx.mcpReq.envelope as Record<string, ClientCapabilities | undefined> | undefined;
        const declared = envelope?.[CLIENT_CAPABILITIES_META_KEY];
        const inputRequests: InputRequests = {};
        if (declared?.elicitation !== undefined) inputRequests.user_name = askName();
        if (declared?.sampling !== undefined)
          inputRequests.greeting = askModel("Generate a short greeting", 50);
        if (declared?.roots !== undefined) inputRequests.client_roots = inputRequired.listRoots();
        return Object.keys(inputRequests).length === 0
          ? text("No declared client capability supports an in-band input request")
          : inputRequired({ inputRequests });
      },
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
      { description: "A resource whose updates listeners may ask for", mimeType: "text/plain" },
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

    server.registerPrompt("test_simple_prompt", { description: "A prompt without arguments" }, () => ({
      messages: [{ role: "user", content: { type: "text", text: TEXT.simplePrompt } }],
    }));
    server.registerPrompt(
      "test_prompt_with_arguments",
      {
        description: "A prompt with two required arguments",
        argsSchema: z.object({
          arg1: completable(z.string().describe("First test argument"), complete),
          arg2: z.string().describe("Second test argument"),
        }),
      },
      ({ arg1, arg2 }) => ({
        messages: [{ role: "user", content: { type: "text", text: promptWithArgumentsText(arg1, arg2) } }],
      }),
    );
    server.registerPrompt(
      "test_prompt_with_embedded_resource",
      { description: "A prompt embedding a resource", argsSchema: z.object({ resourceUri: z.string() }) },
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
    server.registerPrompt(
      "test_input_required_result_prompt",
      { description: "A prompt that asks the user for context before rendering" },
      (ctx) => {
        const context = acceptedContent<{ context: string }>(
          ctx.mcpReq.inputResponses,
          "user_context",
        )?.context;
        if (typeof context !== "string") {
          return inputRequired({
            inputRequests: {
              user_context: inputRequired.elicit({
                message: "What context should the prompt use?",
                requestedSchema: {
                  type: "object",
                  properties: { context: { type: "string" } },
                  required: ["context"],
                },
              }),
            },
          });
        }
        return {
          messages: [
            { role: "user", content: { type: "text", text: `Use the following context: ${context}` } },
          ],
        };
      },
    );
    return server;
  }

  const handler = createMcpHandler(build, { legacy: options.legacy ?? "reject" });
  const serve = toNodeHandler(handler);
  const validateHost = localhostHostValidation();
  const http: Server = createServer((req, res) => {
    if (!validateHost(req, res)) return;
    serve(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500).end();
      else res.destroy();
    });
  });
  await new Promise<void>((resolve) => http.listen(options.port ?? 0, "127.0.0.1", resolve));
  const { port } = http.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    async close() {
      http.closeAllConnections();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
}
