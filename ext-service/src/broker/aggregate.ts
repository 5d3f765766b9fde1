import { ProtocolError, SERVER_INFO_META_KEY, type ServerContext } from "@modelcontextprotocol/server";
import type { Principal } from "../policy/identity.js";
import { JsonRpcCode, Reasons } from "../policy/reasons.js";
import { isPlainObject } from "../mcp/jsonrpc.js";
import type { GatewayEngine } from "../config/compile.js";
import { durationMs } from "../config/schema.js";
import type { BrokerListCache, FetchedList, ListKind, ListOwner } from "./list-cache.js";
import { fanOut, fanoutMs } from "./fanout.js";
import { LIST_PAGES } from "./list-page.js";
import { BrokerNames, SingleServerNames, type ViewNames } from "./names.js";
import { auditOf, refusedInBand } from "./refusals.js";
import { hopCapabilities, type Scope } from "./scope.js";
import type { BrokerHops } from "./hops.js";

// The aggregate over the servers of a view: which servers it holds, how it names their tools,
// prompts and resources, their lists merged into one, and a name routed back to its server.

const LISTS = {
  tools: { method: "tools/list", field: "tools" },
  prompts: { method: "prompts/list", field: "prompts" },
  resources: { method: "resources/list", field: "resources" },
  resourceTemplates: { method: "resources/templates/list", field: "resourceTemplates" },
} as const;
/** Pages read from one server for one list: a server cannot keep the broker paging for ever. */
const MAX_LIST_PAGES = 100;

export const UNKNOWN_REASON = {
  tools: "tool_unknown",
  prompts: "prompt_unknown",
  resources: "resource_unknown",
} as const;

export function unknownName(kind: "tools" | "prompts" | "resources", name: string): ProtocolError {
  const reason = UNKNOWN_REASON[kind];
  const info = Reasons[reason];
  return new ProtocolError(info.code, `${info.message}: ${name}`, { reason });
}

/**
 * A hop's "unknown" refusal names the server's own name (`delete_ticket`); the client asked for
 * the aggregate's (`tickets__delete_ticket`), a name it can find in its lists. The rest of the
 * error (code, reason, the hop's request id) is the per-server path's, as it gave it.
 */
export function asAsked(kind: "tools" | "prompts" | "resources", name: string): (err: unknown) => never {
  return (err) => {
    if (err instanceof ProtocolError && isPlainObject(err.data) && err.data.reason === UNKNOWN_REASON[kind])
      throw new ProtocolError(err.code, unknownName(kind, name).message, err.data);
    throw err;
  };
}

/**
 * A hop's result without the server's 2026-07-28 identity (`_meta` serverInfo): the client's
 * server is the gateway, whose identity the SDK stamps on every result, as on the lists.
 */
export function asGateway<T>(result: T): T {
  const meta = (result as { _meta?: unknown } | undefined)?._meta;
  if (!isPlainObject(meta) || !(SERVER_INFO_META_KEY in meta)) return result;
  const rest = { ...meta };
  delete rest[SERVER_INFO_META_KEY];
  return { ...result, _meta: rest };
}

/** A content block of `server`, its resource link's or embedded resource's URI as the view gives it. */
function blockUris(block: unknown, names: ViewNames, server: string): unknown {
  if (!isPlainObject(block)) return block;
  if (block.type === "resource_link" && typeof block.uri === "string")
    return { ...block, uri: names.joinUri(server, block.uri) };
  if (block.type === "resource" && isPlainObject(block.resource) && typeof block.resource.uri === "string")
    return { ...block, resource: { ...block.resource, uri: names.joinUri(server, block.resource.uri) } };
  return block;
}

function hasUri(block: unknown): boolean {
  return isPlainObject(block) && (block.type === "resource_link" || block.type === "resource");
}

/**
 * A `tools/call` result of `server` whose resource links and embedded resources carry the URIs the
 * view gives (names.ts), so that the client can read (or subscribe to) what it was pointed at. The
 * result is kept as it is when it has none (the common case): nothing is copied.
 * `structuredContent` is the tool's own data, checked against its output schema: left alone.
 */
export function callResultUris<T>(result: T, names: ViewNames, server: string): T {
  const content = (result as { content?: unknown } | undefined)?.content;
  if (!Array.isArray(content) || !content.some(hasUri)) return result;
  return { ...result, content: content.map((b) => blockUris(b, names, server)) };
}

/** A prompt message's content blocks (one, or a list). */
function messageBlocks(message: unknown): unknown[] {
  const content = isPlainObject(message) ? message.content : undefined;
  return Array.isArray(content) ? content : [content];
}

/** A `prompts/get` result of `server`, the URIs in its messages' content as the view gives them. */
export function promptUris<T>(result: T, names: ViewNames, server: string): T {
  const messages = (result as { messages?: unknown } | undefined)?.messages;
  if (!Array.isArray(messages) || !messages.some((m) => messageBlocks(m).some(hasUri))) return result;
  return {
    ...result,
    messages: messages.map((m) => {
      if (!isPlainObject(m) || !messageBlocks(m).some(hasUri)) return m;
      const content = m.content;
      return {
        ...m,
        content: Array.isArray(content)
          ? content.map((b) => blockUris(b, names, server))
          : blockUris(content, names, server),
      };
    }),
  };
}

/** The servers of an agent's view as one: their lists merged, a prefixed name routed to its server. */
export class BrokerAggregate {
  readonly names: BrokerNames;

  constructor(
    private readonly engineOf: () => GatewayEngine,
    private readonly lists: BrokerListCache,
    private readonly hops: BrokerHops,
  ) {
    this.names = new BrokerNames(engineOf().config.broker.separator);
  }

  private get engine(): GatewayEngine {
    return this.engineOf();
  }

  /** Servers of the view that the agent may reach, in registry order. */
  servers(principal: Principal, view: string | undefined): string[] {
    const engine = this.engine;
    const names =
      view === undefined ? engine.registry.serverNames() : (engine.config.broker.views[view]?.servers ?? []);
    return names.filter(
      (n) => engine.registry.server(n) !== undefined && engine.rbac.mayReachServer(principal, n),
    );
  }

  /** How the view names things: prefixed by server, or one server's own names (`prefix: false`). */
  namesOf(view: string | undefined): ViewNames {
    const config = view === undefined ? undefined : this.engine.config.broker.views[view];
    if (config?.prefix === false && config.servers.length === 1)
      return new SingleServerNames(config.servers[0]!);
    return this.names;
  }

  private inView(view: string | undefined, server: string, tool: string): boolean {
    if (view === undefined) return true;
    const tools = this.engine.config.broker.views[view]?.tools;
    if (tools === undefined) return true;
    return tools.includes(`${server}/*`) || tools.includes(`${server}/${tool}`);
  }

  /** Whose lists a request sees: what a hop's list depends on besides the server (list-cache.ts). */
  private listOwner(scope: Scope, ctx: ServerContext): ListOwner {
    return {
      principal: scope.principal,
      view: scope.view,
      protocolVersion: scope.modern ? "2026" : (scope.session?.protocolVersion ?? ""),
      capabilities: Object.keys(hopCapabilities(scope, ctx)),
    };
  }

  /** One server's whole list (every page) through its hop. */
  private fetchList(scope: Scope, server: string, kind: ListKind, ctx: ServerContext): Promise<FetchedList> {
    return this.hops.withHop(scope, server, ctx, async (client) => {
      // Straight requests, not the client's list helpers: a client attached to an existing
      // session has not seen the server's capabilities, and they would return nothing. Each page
      // is checked by list-page.ts, not by the SDK's schema of the method (a deep walk of every
      // definition, half the cost of an uncached list); a page that fails is refused as a whole.
      const { method, field } = LISTS[kind];
      const items: Record<string, unknown>[] = [];
      const pages: unknown[] = [];
      let cursor: string | undefined;
      for (let page = 0; page < MAX_LIST_PAGES; page++) {
        const result = await client.request(
          { method, params: cursor === undefined ? {} : { cursor } },
          LIST_PAGES[kind],
        );
        pages.push(result);
        items.push(...(result[field] as Record<string, unknown>[]));
        cursor = result.nextCursor;
        if (cursor === undefined) break;
      }
      return { items, pages, hinted: client.getProtocolEra() === "modern" };
    });
  }

  /**
   * One list over every server of the view, each server's part kept per agent view
   * (list-cache.ts); a server that fails, or has not answered by the fan-out's deadline
   * (broker.fanoutTimeout, fanout.ts), is left out (and counted). A late one's answer goes on to
   * the cache (if nothing made it stale meanwhile); its failure is handled as if it had come in
   * time. For a 2026-07-28 client, the caching hints of the whole: fresh for as long as every part
   * is (a part without hints, or a server left out, makes it 0: the next list asks again), and
   * private (it is this agent's view).
   */
  async listAll(
    scope: Scope,
    kind: ListKind,
    ctx: ServerContext,
  ): Promise<{ items: Record<string, unknown>[]; hints: { ttlMs?: number; cacheScope?: "private" } }> {
    const engine = this.engine;
    const owner = this.listOwner(scope, ctx);
    const servers = this.servers(scope.principal, scope.view);
    const lists = await fanOut(
      servers.map((server) =>
        this.lists.list(engine, owner, server, kind, () => this.fetchList(scope, server, kind, ctx)),
      ),
      fanoutMs(engine),
      (i, late) => {
        const server = servers[i]!;
        this.hops.late(server, kind);
        late.catch((err: unknown) => this.failed(server, kind, err));
      },
    );
    const out: Record<string, unknown>[] = [];
    const names = this.namesOf(scope.view);
    let ttlMs = durationMs(engine.config.cache.hints.maxTtl);
    lists.forEach((result, i) => {
      const server = servers[i]!;
      if (result.status === "late") {
        auditOf(ctx)?.leftOut(server, true);
        ttlMs = 0;
        return;
      }
      if (result.status === "rejected") {
        const failed = this.failed(server, kind, result.reason);
        if (failed === "dropped") auditOf(ctx)?.leftOut(server);
        // A server without this kind of primitive bounds nothing.
        if (failed !== "absent") ttlMs = 0;
        return;
      }
      ttlMs = Math.min(ttlMs, result.value.freshForMs);
      for (const item of result.value.items) {
        if (kind === "tools" && !this.inView(scope.view, server, String(item.name))) continue;
        if (kind === "resources") out.push({ ...item, uri: names.joinUri(server, String(item.uri)) });
        else if (kind === "resourceTemplates")
          out.push({ ...item, uriTemplate: names.joinUri(server, String(item.uriTemplate)) });
        else out.push({ ...item, name: names.join(server, String(item.name)) });
      }
    });
    return { items: out, hints: scope.modern ? { ttlMs: Math.floor(ttlMs), cacheScope: "private" } : {} };
  }

  /**
   * A server's list failed: `absent` when it has no such list (method not found, not a failure),
   * `refused` when the agent's token was (expired, too large: refused and audited as such by
   * withHopOnce), else `dropped`: left out as down or refusing (BrokerHops.dropped).
   */
  private failed(server: string, kind: ListKind, err: unknown): "absent" | "refused" | "dropped" {
    const refused = (err as { code?: unknown; data?: { reason?: unknown } } | null) ?? {};
    if (refused.data?.reason === "jwt_expired" || refused.data?.reason === "agent_token_too_large")
      return "refused";
    if (refused.code === JsonRpcCode.MethodNotFound) return "absent";
    this.hops.dropped(server, kind, err);
    return "dropped";
  }

  /**
   * The server a prefixed name (a resource's URI, for "resources") routes to, if it is in the
   * agent's view; else the message is refused as unknown (as /mcp/<server> refuses a name the
   * agent may not use), and audited. `legacyUri`: a URI in the form of earlier releases routes
   * too (names.ts).
   */
  route(
    scope: Scope,
    kind: "tools" | "prompts" | "resources",
    name: string,
    ctx: ServerContext,
    legacyUri = false,
  ): { server: string; name: string } {
    const names = this.namesOf(scope.view);
    const split = kind === "resources" ? names.splitUri(name, legacyUri) : names.split(name);
    if (
      split &&
      this.servers(scope.principal, scope.view).includes(split.server) &&
      (kind !== "tools" || this.inView(scope.view, split.server, split.name))
    )
      return split;
    const registered = split !== undefined && this.engine.registry.server(split.server) !== undefined;
    throw refusedInBand(ctx, {
      reason: UNKNOWN_REASON[kind],
      cause: registered ? "not_in_view" : "server_not_registered",
      id: ctx.mcpReq.id,
      detail: name,
      ...(registered ? { server: split.server } : {}),
      subject: { kind, name },
    });
  }
}
