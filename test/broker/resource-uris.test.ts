import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { McpServer, ResourceTemplate } from "@modelcontextprotocol/sdk/server/mcp.js";
import { SubscribeRequestSchema, UnsubscribeRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { toNodeHandler } from "@modelcontextprotocol/node";
import {
  McpServer as McpServerV2,
  ResourceTemplate as ResourceTemplateV2,
  createMcpHandler,
  type McpHttpHandler,
} from "@modelcontextprotocol/server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEnvoyRoleFront, type EnvoyRoleFront } from "../../ext-service/src/envoy/envoy-role-front.js";
import { serveMcp, type RunningServer } from "../../examples/servers/http.js";
import { startGateway, waitFor, type Gateway, type GatewaySpec } from "../e2e/harness.js";
import { connect2025, connectModern } from "./support.js";

/**
 * Resource URIs and URI templates through the aggregated endpoint (/mcp) are absolute URIs (the MCP
 * schema's `format: uri`, which strict clients check, such as the Python SDK's pydantic AnyUrl):
 * `<server>.<uri>`, whatever the tool separator, for every URI the client is given (lists, contents
 * read, resource links and embedded resources of tool results and prompts, updates), and each reads
 * (and subscribes) back under that URI. A 2025 server and a 2026-07-28 server serve the same URIs;
 * the 1.x SDK client and the v2 client (2025 and 2026-07-28) on both planes.
 */

/** RFC 3986 section 3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ), then ":". */
const SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*:/;
/** RFC 3986 section 2: unreserved, reserved and '%' (of a pct-encoded octet) only. */
const URI_CHARACTERS = /^[A-Za-z0-9\-._~:/?#[\]@!$&'()*+,;=%]*$/;

/** An absolute URI as RFC 3986 has it (WHATWG's `new URL()` alone takes `kb__kb://x`). */
function isAbsoluteUri(uri: string): boolean {
  if (!SCHEME.test(uri) || !URI_CHARACTERS.test(uri) || /%(?![0-9A-Fa-f]{2})/.test(uri)) return false;
  try {
    new URL(uri);
    return true;
  } catch {
    return false;
  }
}

/** A URI template (RFC 6570) with each expression expanded: what a client reads. */
const expanded = (template: string) => template.replace(/\{[^}]*\}/g, "intro");

const RESOURCES = ["docs://guide", "file:///srv/readme.txt", "urn:docs:changelog"];
const TEMPLATE = "docs://pages/{page}";
const GUIDE = "docs://guide";
const SERVERS = ["docs25", "docs26"] as const;

/** The content of a tool result and of a prompt: a resource link and an embedded resource. */
const LINKED = [
  { type: "text" as const, text: "see the page and the guide" },
  { type: "resource_link" as const, uri: "docs://pages/intro", name: "intro", mimeType: "text/plain" },
  { type: "resource" as const, resource: { uri: GUIDE, mimeType: "text/plain", text: "the guide" } },
];

const contents = (uri: URL) => ({ contents: [{ uri: uri.href, mimeType: "text/plain", text: uri.href }] });

/** 2025 sessions' servers by the URIs they subscribed to: an update goes to each. */
const subscribers = new Map<string, Set<McpServer>>();

function legacyDocs(): McpServer {
  const server = new McpServer({ name: "docs25", version: "1.0.0" });
  for (const uri of RESOURCES) server.registerResource(uri, uri, { mimeType: "text/plain" }, contents);
  server.registerResource("page", new ResourceTemplate(TEMPLATE, { list: undefined }), {}, contents);
  server.registerTool("find", { description: "Links a page and embeds the guide" }, () => ({
    content: LINKED,
  }));
  server.registerPrompt("cite", { description: "Embeds the guide" }, () => ({
    messages: [{ role: "user", content: LINKED[2]! }],
  }));
  server.server.registerCapabilities({ resources: { subscribe: true } });
  server.server.setRequestHandler(SubscribeRequestSchema, (request) => {
    let set = subscribers.get(request.params.uri);
    if (!set) subscribers.set(request.params.uri, (set = new Set()));
    set.add(server);
    return {};
  });
  server.server.setRequestHandler(UnsubscribeRequestSchema, (request) => {
    subscribers.get(request.params.uri)?.delete(server);
    return {};
  });
  return server;
}

async function updateLegacy(uri: string): Promise<void> {
  await Promise.allSettled(
    [...(subscribers.get(uri) ?? [])].map((server) => server.server.sendResourceUpdated({ uri })),
  );
}

const FIND = { name: "find", description: "Links a page and embeds the guide" };

/** The two servers, and a gateway over them with `config` (its broker separator). */
function docsGateway(plane: "edge" | "envoy", config?: GatewaySpec["config"]) {
  let handler: McpHttpHandler;
  let http: Server;
  let legacy: RunningServer;
  let gw: Gateway;
  let front: EnvoyRoleFront | undefined;
  beforeAll(async () => {
    handler = createMcpHandler(
      () => {
        const server = new McpServerV2(
          { name: "docs26", version: "1.0.0" },
          { capabilities: { resources: { subscribe: true } } },
        );
        for (const uri of RESOURCES)
          server.registerResource(uri, uri, { mimeType: "text/plain" }, async (u) => contents(u));
        server.registerResource(
          "page",
          new ResourceTemplateV2(TEMPLATE, { list: undefined }),
          {},
          async (u) => contents(u),
        );
        server.registerTool("find", { description: "Links a page and embeds the guide" }, async () => ({
          content: LINKED,
        }));
        server.registerPrompt("cite", { description: "Embeds the guide" }, async () => ({
          messages: [{ role: "user", content: LINKED[2]! }],
        }));
        return server;
      },
      // 2025 requests too (stateless): the 2025 clients list, read and call it as well.
      { legacy: "stateless" },
    );
    const serve = toNodeHandler(handler);
    http = createServer((req, res) => void serve(req, res).catch(() => res.destroy()));
    await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
    legacy = await serveMcp(legacyDocs, 0);
    gw = await startGateway({
      servers: [
        { name: "docs25", upstreams: [legacy.url], tools: [FIND] },
        {
          name: "docs26",
          upstreams: [`http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp`],
          tools: [FIND],
        },
      ],
      security: { pins: { enforce: false, verifyBeforeCall: false } },
      ...(config ? { config } : {}),
    });
    if (plane === "envoy")
      front = await startEnvoyRoleFront({
        extService: { engine: gw.engine, logger: gw.log.logger, metrics: gw.metrics },
      });
  });
  afterAll(async () => {
    await front?.close();
    await gw?.close();
    http?.closeAllConnections();
    await new Promise((resolve) => http?.close(resolve));
    await legacy?.close();
  });
  return {
    url: () => `${front?.url ?? gw.edge.url}/mcp`,
    token: () => gw.token("tester"),
    notify: (uri: string) => handler.notify.resourceUpdated(uri),
  };
}

/** What the test does with a client of either era. */
interface UriClient {
  resourceUris(): Promise<{ resources: string[]; templates: string[] }>;
  read(uri: string): Promise<{ contents: { uri: string }[] }>;
  call(name: string): Promise<{ content?: unknown }>;
  prompt(name: string): Promise<{ messages: { content: unknown }[] }>;
  close(): Promise<void>;
}

async function uriClient(kind: "1.x" | "2.x" | "2026-07-28", url: string, token: string): Promise<UriClient> {
  if (kind !== "2026-07-28") {
    const c = await connect2025(kind, url, token);
    return { ...c, call: (name) => c.call(name), prompt: (name) => c.prompt(name) };
  }
  const client = await connectModern(url, token);
  return {
    resourceUris: async () => ({
      resources: (await client.listResources()).resources.map((r) => r.uri),
      templates: (await client.listResourceTemplates()).resourceTemplates.map((t) => t.uriTemplate),
    }),
    read: (uri) => client.readResource({ uri }),
    call: (name) => client.callTool({ name, arguments: {} }),
    prompt: (name) => client.getPrompt({ name }),
    close: () => client.close(),
  };
}

describe.each(["edge", "envoy"] as const)("resource URIs through /mcp, %s plane", (plane) => {
  const docs = docsGateway(plane);

  for (const kind of ["1.x", "2.x", "2026-07-28"] as const) {
    it(`${kind}: lists absolute URIs and templates (<server>.<uri>), each read back under the URI listed`, async () => {
      const client = await uriClient(kind, docs.url(), await docs.token());
      try {
        const { resources, templates } = await client.resourceUris();
        expect(resources.sort()).toEqual(SERVERS.flatMap((s) => RESOURCES.map((u) => `${s}.${u}`)).sort());
        expect(templates.sort()).toEqual(SERVERS.map((s) => `${s}.${TEMPLATE}`));
        for (const uri of [...resources, ...templates.map(expanded)]) {
          expect(isAbsoluteUri(uri), uri).toBe(true);
          const read = await client.read(uri);
          expect(read.contents.map((c) => c.uri)).toEqual([uri]);
        }
        // A resource link or an embedded resource names it as the lists do: the client can read it.
        for (const server of SERVERS) {
          const [, link, embedded] = (await client.call(`${server}__find`)).content as [
            unknown,
            { type: string; uri: string },
            { resource: { uri: string } },
          ];
          expect(link).toMatchObject({ type: "resource_link", uri: `${server}.docs://pages/intro` });
          expect(embedded.resource.uri).toBe(`${server}.${GUIDE}`);
          for (const uri of [link.uri, embedded.resource.uri]) {
            expect(isAbsoluteUri(uri), uri).toBe(true);
            expect((await client.read(uri)).contents[0]!.uri).toBe(uri);
          }
          const prompt = await client.prompt(`${server}__cite`);
          expect(prompt.messages[0]!.content).toMatchObject({ resource: { uri: `${server}.${GUIDE}` } });
        }
      } finally {
        await client.close();
      }
    });
  }

  for (const sdk of ["1.x", "2.x"] as const) {
    it(`${sdk} (2025): a listed URI subscribes, its update comes under it; the earlier form still reads and unsubscribes`, async () => {
      const updated: string[] = [];
      const client = await connect2025(sdk, docs.url(), await docs.token(), {
        onResourceUpdated: (uri) => updated.push(uri),
      });
      try {
        const uri = (await client.resourceUris()).resources.find((u) => u === `docs25.${GUIDE}`)!;
        const before = subscribers.get(GUIDE)?.size ?? 0;
        await client.subscribe(uri);
        expect(subscribers.get(GUIDE)?.size).toBe(before + 1);
        // The GET stream behind the client's opens after initialize: update until one arrives.
        for (let i = 0; i < 10 && updated.length === 0; i++) {
          await updateLegacy(GUIDE);
          await waitFor(() => updated.length > 0, 500).catch(() => undefined);
        }
        expect(updated[0]).toBe(uri);
        // `<server><separator><uri>` of earlier releases: a read routes (the contents carry the
        // URI of this release), an unsubscribe too; a new subscription takes only the listed URI.
        const read = await client.read(`docs25__${GUIDE}`);
        expect(read.contents[0]!.uri).toBe(uri);
        await expect(client.subscribe(`docs25__${GUIDE}`)).rejects.toMatchObject({
          data: { reason: "resource_unknown" },
        });
        await client.unsubscribe(`docs25__${GUIDE}`);
        expect(subscribers.get(GUIDE)?.size).toBe(before);
      } finally {
        await client.close();
      }
    });
  }

  it("2026-07-28: subscriptions/listen on the listed URIs gets each server's update under them", async () => {
    const updated: string[] = [];
    const client = await connectModern(docs.url(), await docs.token(), {
      setup: (c) =>
        c.setNotificationHandler("notifications/resources/updated", (n) => {
          updated.push(n.params.uri);
        }),
    });
    try {
      const listed = (await client.listResources()).resources.map((r) => r.uri);
      const resourceSubscriptions = listed.filter((u) => u.endsWith(`.${GUIDE}`)).sort();
      expect(resourceSubscriptions).toEqual([`docs25.${GUIDE}`, `docs26.${GUIDE}`]);
      const subscription = await client.listen({ resourceSubscriptions });
      try {
        expect(subscription.honoredFilter).toEqual({ resourceSubscriptions });
        docs.notify(GUIDE);
        await updateLegacy(GUIDE);
        await waitFor(() => updated.length === 2, 10_000, "both servers' updates of the guide");
        expect(updated.sort()).toEqual(resourceSubscriptions);
      } finally {
        await subscription.close();
      }
    } finally {
      await client.close();
    }
  });
});

describe("resource URIs through /mcp with the separator '_.'", () => {
  const docs = docsGateway("edge", { broker: { separator: "_." } });

  it("tools take the separator, URIs stay <server>.<uri>; the earlier form still reads", async () => {
    const client = await connect2025("1.x", docs.url(), await docs.token());
    try {
      expect((await client.tools()).sort()).toEqual(["docs25_.find", "docs26_.find"]);
      const { resources, templates } = await client.resourceUris();
      for (const uri of [...resources, ...templates]) expect(isAbsoluteUri(expanded(uri)), uri).toBe(true);
      expect(resources).toContain(`docs26.${GUIDE}`);
      expect((await client.read(`docs26_.${GUIDE}`)).contents[0]!.uri).toBe(`docs26.${GUIDE}`);
    } finally {
      await client.close();
    }
  });
});
