import {
  isInputRequiredResult,
  Server,
  type JSONRPCRequest,
  type Result,
  type ServerContext,
} from "@modelcontextprotocol/server";
import { JsonRpcCode } from "../policy/reasons.js";
import type { GatewayEngine } from "../config/compile.js";
import { asAsked, asGateway, callResultUris, promptUris, type BrokerAggregate } from "./aggregate.js";
import { CALL_RESULT } from "./call-result.js";
import { hopBroken } from "./hop-errors.js";
import { HOP_TIMEOUT_MS, takeRawCallResult, type BrokerHops } from "./hops.js";
import { fanOut, fanoutMs } from "./fanout.js";
import type { ServerPresence } from "./presence.js";
import { refusedInBand } from "./refusals.js";
import { retryParams, type Scope } from "./scope.js";
import { bridgeSubject, isBridgeState, type InputBridge } from "./bridge.js";
import type { Client } from "@modelcontextprotocol/client";

// What the aggregated endpoint serves: its MCP server's capabilities and request handlers.

const BROKER_INFO = { name: "mcp-gateway", version: "1.0.0" };
/**
 * The optional capabilities the aggregate advertises only when a server of the view offers them
 * (ServerPresence); tools, prompts and resources are always advertised, so that a server that
 * joins the view later can be announced with their list_changed.
 */
const OPTIONAL_CAPABILITIES = ["completions", "logging"] as const;
/** Ids sealed before the session kept what it was told: what every session was told then. */
const OFFERED_BEFORE = [...OPTIONAL_CAPABILITIES];

type RequestHandler = (request: JSONRPCRequest, ctx: ServerContext) => Promise<Result>;

/**
 * The SDK's server, but a `tools/call` result is sent as the handler returns it: the server's
 * result through the hop (call-result.ts), which the per-server path inspected. The SDK's server
 * parses every `tools/call` result with its schema of the method again (a deep walk of a large
 * result) and drops what the schema does not name. Everything else of the SDK's handling stays
 * (its checks of the request, of a 2026-07-28 `requestState`, of an `input_required` result): it
 * runs as it did, and is shown an empty result in place of a complete one.
 */
class AggregateServer extends Server {
  protected override _wrapHandler(method: string, handler: RequestHandler): RequestHandler {
    if (method !== "tools/call") return super._wrapHandler(method, handler);
    return async (request, ctx) => {
      let relayed: Result | undefined;
      const checked = await super._wrapHandler(method, async (req, c) => {
        const result = await handler(req, c);
        if (isInputRequiredResult(result)) return result;
        relayed = result;
        return { content: [] };
      })(request, ctx);
      if (relayed === undefined) return checked;
      // As the SDK does: a result without content gets an empty one (2025 requires it).
      return relayed.content === undefined ? { ...relayed, content: [] } : relayed;
    };
  }
}

/** What the aggregate's server is built from (the broker's parts). */
export interface ServerParts {
  engine: () => GatewayEngine;
  aggregate: BrokerAggregate;
  hops: BrokerHops;
  presence: ServerPresence;
  bridge: InputBridge;
}

/**
 * A call, prompt or read relayed to `server`. In 2026-07-28 its server may speak only 2025 and ask
 * the client for input on the call's stream: the bridge answers the client `input_required`
 * instead, and a retry with a state the bridge issued goes on with the call it holds (bridge.ts)
 * rather than making a new hop.
 */
function relay<T>(
  parts: ServerParts,
  scope: Scope,
  ctx: ServerContext,
  server: string,
  method: string,
  name: string,
  args: unknown,
  work: (client: Client, signal: AbortSignal | undefined) => Promise<T>,
): Promise<T> {
  if (!scope.modern) return parts.hops.withHop(scope, server, ctx, work);
  const subject = () => bridgeSubject(scope, server, method, name, args);
  const state = ctx.mcpReq.requestState<unknown>();
  // An input_required result, as the work's own may be (its request allows them).
  if (isBridgeState(state))
    return parts.bridge.resume(ctx, subject(), state, ctx.mcpReq.inputResponses) as Promise<T>;
  return parts.bridge.run(subject, (bind) =>
    parts.hops.withHop(scope, server, ctx, (client, signal, use) => {
      bind(use);
      return work(client, signal);
    }),
  ) as Promise<T>;
}

/** The optional capabilities at least one of `servers` offers, as far as this process knows. */
export function offeredCapabilities(parts: ServerParts, servers: readonly string[]): string[] {
  const engine = parts.engine();
  return OPTIONAL_CAPABILITIES.filter((capability) =>
    servers.some((server) => parts.presence.capabilitiesOf(engine, server)?.[capability] !== undefined),
  );
}

/**
 * The aggregate's MCP server for one scope (a 2025 session, or one 2026-07-28 request), built with
 * the SDK's server class: each handler routes to the servers of the view through their hops.
 */
export function buildServer(parts: ServerParts, scope: Scope): Server {
  // 2025: what the client was told at initialize (sealed); 2026-07-28: what the view's servers
  // offer now.
  const offers = new Set(
    scope.modern
      ? offeredCapabilities(parts, parts.aggregate.servers(scope.principal, scope.view))
      : (scope.session?.offers ?? OFFERED_BEFORE),
  );
  const server = new AggregateServer(BROKER_INFO, {
    capabilities: {
      tools: { listChanged: true },
      prompts: { listChanged: true },
      resources: { subscribe: true, listChanged: true },
      ...(offers.has("completions") ? { completions: {} } : {}),
      ...(offers.has("logging") ? { logging: {} } : {}),
    },
    instructions: parts.aggregate.namesOf(scope.view).instructions,
  });
  server.setRequestHandler("tools/list", async (_request, ctx) => {
    const { items, hints } = await parts.aggregate.listAll(scope, "tools", ctx);
    return { tools: items as never, ...hints };
  });
  server.setRequestHandler("prompts/list", async (_request, ctx) => {
    const { items, hints } = await parts.aggregate.listAll(scope, "prompts", ctx);
    return { prompts: items as never, ...hints };
  });
  server.setRequestHandler("resources/list", async (_request, ctx) => {
    const { items, hints } = await parts.aggregate.listAll(scope, "resources", ctx);
    return { resources: items as never, ...hints };
  });
  server.setRequestHandler("resources/templates/list", async (_request, ctx) => {
    const { items, hints } = await parts.aggregate.listAll(scope, "resourceTemplates", ctx);
    return { resourceTemplates: items as never, ...hints };
  });
  server.setRequestHandler("tools/call", async (request, ctx) => {
    const target = parts.aggregate.route(scope, "tools", request.params.name, ctx);
    const progressToken = request.params._meta?.progressToken;
    const params = {
      name: target.name,
      ...(request.params.arguments ? { arguments: request.params.arguments } : {}),
      ...(scope.modern ? retryParams(ctx) : {}),
    };
    return relay(
      parts,
      scope,
      ctx,
      target.server,
      "tools/call",
      request.params.name,
      request.params.arguments,
      (client, signal) => {
        const options = {
          signal,
          timeout: HOP_TIMEOUT_MS,
          resetTimeoutOnProgress: true,
          ...(progressToken !== undefined
            ? {
                onprogress: (progress: { progress: number; total?: number; message?: string }) =>
                  void ctx.mcpReq
                    .notify({ method: "notifications/progress", params: { ...progress, progressToken } })
                    .catch(() => undefined),
              }
            : {}),
        };
        // A straight request with the broker's own result schema (call-result.ts): the result goes
        // back as the server sent it. 2026-07-28: an `input_required` result comes back to the agent
        // as it is, and the agent's Mcp-Param-* headers (checked against the pinned schema) go with it.
        if (client.getProtocolEra() === "modern") {
          takeRawCallResult(client);
          // What the server sent, which the SDK's codec did not check (hops.ts keepRawCallResult).
          return client
            .request({ method: "tools/call", params }, CALL_RESULT, {
              ...options,
              allowInputRequired: true,
              headers: scope.paramHeaders ?? {},
            })
            .then((result) => takeRawCallResult(client) ?? result);
        }
        return client.request({ method: "tools/call", params }, CALL_RESULT, options);
      },
    )
      .then(
        (result) => callResultUris(asGateway(result), parts.aggregate.namesOf(scope.view), target.server),
        asAsked("tools", request.params.name),
      )
      .catch(hopBroken(ctx)) as never;
  });
  server.setRequestHandler("prompts/get", async (request, ctx) => {
    const target = parts.aggregate.route(scope, "prompts", request.params.name, ctx);
    const params = {
      name: target.name,
      ...(request.params.arguments ? { arguments: request.params.arguments } : {}),
      ...(scope.modern ? retryParams(ctx) : {}),
    };
    return relay(
      parts,
      scope,
      ctx,
      target.server,
      "prompts/get",
      request.params.name,
      request.params.arguments,
      (client, signal) => client.getPrompt(params, { signal, allowInputRequired: true }),
    )
      .then(
        (result) => promptUris(asGateway(result), parts.aggregate.namesOf(scope.view), target.server),
        asAsked("prompts", request.params.name),
      )
      .catch(hopBroken(ctx));
  });
  server.setRequestHandler("resources/read", async (request, ctx) => {
    // A URI in the form of earlier releases still reads (names.ts); the contents carry the new one.
    const target = parts.aggregate.route(scope, "resources", request.params.uri, ctx, true);
    const params = { uri: target.name, ...(scope.modern ? retryParams(ctx) : {}) };
    const result = await relay(
      parts,
      scope,
      ctx,
      target.server,
      "resources/read",
      request.params.uri,
      undefined,
      (client, signal) => client.readResource(params, { signal, allowInputRequired: true }),
    )
      .then(asGateway, asAsked("resources", request.params.uri))
      .catch(hopBroken(ctx));
    if (isInputRequiredResult(result)) return result as never;
    return {
      ...result,
      contents: result.contents.map((c) => ({
        ...c,
        uri: parts.aggregate.namesOf(scope.view).joinUri(target.server, c.uri),
      })),
    };
  });
  if (offers.has("completions"))
    server.setRequestHandler("completion/complete", async (request, ctx) => {
      const ref = request.params.ref;
      const target =
        ref.type === "ref/prompt"
          ? parts.aggregate.route(scope, "prompts", ref.name, ctx)
          : parts.aggregate.route(scope, "resources", ref.uri, ctx);
      const notOffered = () =>
        refusedInBand(ctx, {
          reason: "method_unknown",
          cause: "not_offered",
          id: ctx.mcpReq.id,
          detail: `completion/complete: ${target.server} offers no completions`,
          server: target.server,
          data: { server: target.server },
        });
      // Known not to offer them: refused here, no hop. Not known (it was down when the client
      // connected): asked, and its bare "method not found" is answered the same way.
      const known = parts.presence.capabilitiesOf(parts.engine(), target.server);
      if (known !== undefined && known.completions === undefined) throw notOffered();
      const hopRef = ref.type === "ref/prompt" ? { ...ref, name: target.name } : { ...ref, uri: target.name };
      return parts.hops
        .withHop(scope, target.server, ctx, (client, signal) =>
          // A straight request: a client attached to a session has not seen the server's capabilities.
          client.request(
            { method: "completion/complete", params: { ...request.params, ref: hopRef } },
            { signal },
          ),
        )
        .then(asGateway, (err: unknown) => {
          const e = err as { code?: unknown; data?: { reason?: unknown } } | null;
          if (e?.code === JsonRpcCode.MethodNotFound && e.data?.reason === undefined) throw notOffered();
          throw err;
        })
        .catch(hopBroken(ctx));
    });
  if (!scope.modern && offers.has("logging")) {
    // To each server of the view that offers logging (or is not known not to); each hop is
    // decided and audited on its server's path.
    server.setRequestHandler("logging/setLevel", async (request, ctx) => {
      const engine = parts.engine();
      // Answered once each has, or at the fan-out's deadline: a slow server's goes on.
      await fanOut(
        parts.aggregate
          .servers(scope.principal, scope.view)
          .filter((name) => {
            const known = parts.presence.capabilitiesOf(engine, name);
            return known === undefined || known.logging !== undefined;
          })
          .map((name) =>
            parts.hops.withHop(scope, name, ctx, (client) =>
              client.request({ method: "logging/setLevel", params: { level: request.params.level } }),
            ),
          ),
        fanoutMs(engine),
        () => undefined,
      );
      return {};
    });
  }
  if (!scope.modern) {
    server.setRequestHandler("resources/subscribe", async (request, ctx) => {
      const target = parts.aggregate.route(scope, "resources", request.params.uri, ctx);
      await parts.hops
        .withHop(scope, target.server, ctx, (client) =>
          client.request({ method: "resources/subscribe", params: { uri: target.name } }),
        )
        .catch(hopBroken(ctx));
      return {};
    });
    server.setRequestHandler("resources/unsubscribe", async (request, ctx) => {
      // A subscription made under a URI of an earlier release (names.ts) can still be ended.
      const target = parts.aggregate.route(scope, "resources", request.params.uri, ctx, true);
      await parts.hops
        .withHop(scope, target.server, ctx, (client) =>
          client.request({ method: "resources/unsubscribe", params: { uri: target.name } }),
        )
        .catch(hopBroken(ctx));
      return {};
    });
  }
  // A method the aggregate does not serve: refused with its reason and audited, as on
  // /mcp/<server> (the SDK's own answer has no reason). Not in 2026-07-28, where the SDK answers
  // an unknown method with HTTP 404 (SEP-2575) before any handler runs, only when none is set:
  // that answer reaches the caller as a refusal of its own (refusals.ts, sdkRefusal).
  if (!scope.modern)
    server.fallbackRequestHandler = (request, ctx) =>
      Promise.reject(
        refusedInBand(ctx, { reason: "method_unknown", id: request.id, detail: request.method }),
      );
  return server;
}
