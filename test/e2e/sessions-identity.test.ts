import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { ElicitRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { importJWK, SignJWT, type JWK } from "jose";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { serveMcp, type RunningServer } from "../../examples/servers/http.js";
import { loadEngine } from "../../ext-service/src/config/compile.js";
import { ensureDevKeys, signDevToken } from "../../ext-service/src/config/devkeys.js";
import { startEdge, type Edge } from "../../ext-service/src/edge/index.js";
import { EnvoyRoleClient, type Upstream } from "../../ext-service/src/envoy/envoy-role-client.js";
import { startExtService, type ExtService } from "../../ext-service/src/envoy/server.js";
import { Metrics } from "../../ext-service/src/telemetry/metrics.js";
import { httpCall, LogCapture, MCP_HEADERS, rpc, tempDir } from "./harness.js";

/**
 * Who a session and an identity belong to, on both data planes: the local edge (real HTTP, the
 * official SDK client) and the Envoy adapters (EnvoyRoleClient playing Envoy), in front of one
 * real SDK server. Sessions are sealed by the gateway and bound to (issuer, agent, server)
 * (security review F5); agents are namespaced by issuer (F9); agent names that are no valid
 * header value are refused or encoded (F10); token lifetime is bounded (F18).
 */

const IDP = "https://idp-a.test";
const PARTNER = "https://partner.test";
const CHINESE = "客服机器人";

/** What the upstream saw, as its `whoami` tool reports it. */
interface Seen {
  session: string | undefined;
  agent: string | undefined;
  issuer: string | undefined;
}

function upstreamServer(): McpServer {
  const server = new McpServer({ name: "identity-echo", version: "1.0.0" });
  server.registerTool("whoami", { description: "Who is calling." }, (extra) => {
    const headers = extra.requestInfo?.headers ?? {};
    const seen: Seen = {
      session: extra.sessionId,
      agent: headers["x-mcp-agent"] as string | undefined,
      issuer: headers["x-mcp-issuer"] as string | undefined,
    };
    return { content: [{ type: "text", text: JSON.stringify(seen) }] };
  });
  server.registerTool("publish", { description: "Publishes after asking the user." }, async () => {
    const answer = await server.server.elicitInput({
      message: "Publish the Q3 draft?",
      requestedSchema: { type: "object", properties: { confirm: { type: "boolean" } } },
    });
    return { content: [{ type: "text", text: answer.action === "accept" ? "PUBLISHED" : "not published" }] };
  });
  return server;
}

interface Setup {
  dir: string;
  upstream: RunningServer;
  idpKey: JWK;
  partnerKey: JWK;
  /** A gateway.yaml in `dir` with the given session key file. */
  configFile(name: string, keyFile: string): string;
}

async function setup(): Promise<Setup & { remove(): void }> {
  const tmp = tempDir("mcp-gw-sessions-");
  const upstream = await serveMcp(upstreamServer, 0);
  const idp = await ensureDevKeys(join(tmp.dir, "idp"));
  const partner = await ensureDevKeys(join(tmp.dir, "partner"));
  writeFileSync(
    join(tmp.dir, "registry.yaml"),
    stringify({
      version: "t",
      servers: [
        { name: "echo", upstreams: [upstream.url], tools: [{ name: "whoami" }, { name: "publish" }] },
      ],
    }),
  );
  for (const key of ["key-1", "key-2"]) writeFileSync(join(tmp.dir, key), randomBytes(32).toString("base64"));
  return {
    dir: tmp.dir,
    upstream,
    idpKey: idp.privateJwk,
    partnerKey: partner.privateJwk,
    configFile(name, keyFile) {
      const file = join(tmp.dir, `${name}.yaml`);
      writeFileSync(
        file,
        stringify({
          registry: "registry.yaml",
          auth: {
            mode: "required",
            issuers: [
              {
                issuer: IDP,
                audiences: ["mcp-gateway"],
                jwks: { file: idp.jwksFile },
                algorithms: ["ES256"],
              },
              // A second trusted issuer whose tokens may carry roles (a partner IdP).
              {
                issuer: PARTNER,
                audiences: ["mcp-gateway"],
                jwks: { file: partner.jwksFile },
                algorithms: ["ES256"],
                trustTokenRoles: true,
              },
            ],
          },
          roles: { all: { rules: [{ effect: "allow", tools: ["echo/*"] }] } },
          agents: {
            alice: { issuer: IDP, roles: ["all"] },
            bob: { issuer: IDP, roles: ["all"] },
            [CHINESE]: { issuer: IDP, roles: ["all"] },
          },
          sessions: { keys: [{ file: keyFile }] },
          // The tools are not pinned here: these tests are about who holds a session.
          security: { pins: { enforce: false } },
          edge: { breaker: { consecutiveFailures: 2, cooldown: "60s" } },
          logLevel: "info",
        }),
      );
      return file;
    },
    async remove() {
      await upstream.close();
      tmp.remove();
    },
  } as Setup & { remove(): void };
}

const INIT = rpc("initialize", {
  protocolVersion: "2025-06-18",
  capabilities: { elicitation: {} },
  clientInfo: { name: "raw", version: "1" },
});

function seenIn(result: unknown): Seen {
  return JSON.parse((result as { content: { text: string }[] }).content[0]!.text) as Seen;
}

describe("sessions, agents and issuers on the local edge (SDK client over HTTP)", () => {
  let s: Awaited<ReturnType<typeof setup>>;
  let edge: Edge;
  let twin: Edge;
  let stranger: Edge;
  let log: LogCapture;
  const token = (agent: string, extra: { issuer?: string; roles?: string[] } = {}) =>
    signDevToken(extra.issuer === PARTNER ? s.partnerKey : s.idpKey, {
      subject: agent,
      issuer: extra.issuer ?? IDP,
      ...(extra.roles ? { roles: extra.roles } : {}),
    });
  const url = (e: Edge) => `${e.url}/mcp/echo`;

  beforeAll(async () => {
    s = await setup();
    log = new LogCapture();
    const start = async (file: string) =>
      startEdge({
        engine: loadEngine(file).engine,
        logger: log.logger,
        metrics: new Metrics(false),
        host: "127.0.0.1",
        port: 0,
      });
    edge = await start(s.configFile("a", "key-1"));
    twin = await start(s.configFile("b", "key-1")); // another replica: same key
    stranger = await start(s.configFile("c", "key-2")); // a gateway with another key
  });
  afterAll(async () => {
    await Promise.all([edge?.close(0), twin?.close(0), stranger?.close(0)]);
    await s?.remove();
  });

  async function connect(
    target: Edge,
    bearer: string,
    sessionId?: string,
    onElicit?: () => Promise<unknown>,
  ) {
    const client = new Client({ name: "t", version: "1" }, { capabilities: { elicitation: {} } });
    if (onElicit) client.setRequestHandler(ElicitRequestSchema, onElicit as never);
    const transport = new StreamableHTTPClientTransport(new URL(url(target)), {
      requestInit: { headers: { authorization: `Bearer ${bearer}` } },
      ...(sessionId ? { sessionId } : {}),
    });
    await client.connect(transport);
    return { client, transport };
  }

  const raw = async (method: string, bearer: string, sessionId: string, body?: string) =>
    httpCall(url(edge), {
      method,
      headers: {
        ...(method === "GET" ? { accept: "text/event-stream" } : MCP_HEADERS),
        authorization: `Bearer ${bearer}`,
        "mcp-session-id": sessionId,
        "mcp-protocol-version": "2025-06-18",
      },
      ...(body ? { body } : {}),
    });

  it("gives the client a sealed session id; the server sees its own id, the agent and its issuer", async () => {
    const alice = await connect(edge, await token("alice"));
    try {
      const sealed = alice.transport.sessionId!;
      const seen = seenIn(await alice.client.callTool({ name: "whoami", arguments: {} }));
      expect(seen.session).toMatch(/^[0-9a-f-]{36}$/);
      expect(sealed).toMatch(/^g1\./);
      expect(sealed).not.toContain(seen.session);
      expect(seen).toMatchObject({ agent: "alice", issuer: IDP });
    } finally {
      await alice.client.close();
    }
  });

  it("reads another agent's session id as unknown: POST, GET stream, DELETE; the owner's session is untouched", async () => {
    const alice = await connect(edge, await token("alice"));
    try {
      const sealed = alice.transport.sessionId!;
      const bob = await token("bob");
      const call = rpc("tools/call", { name: "whoami", arguments: {} }, 7);
      for (const [method, body] of [
        ["POST", call],
        ["GET", undefined],
        ["DELETE", undefined],
      ] as const) {
        const r = await raw(method, bob, sealed, body);
        expect(r.status, method).toBe(404);
        expect(r.messages[0], method).toMatchObject({ error: { data: { reason: "session_unknown" } } });
      }
      // The same agent of another trusted issuer (with roles of its own) does not own it either.
      const partnerAlice = await token("alice", { issuer: PARTNER, roles: ["all"] });
      expect((await raw("POST", partnerAlice, sealed, call)).status).toBe(404);
      // Neither a changed character nor the server's raw id opens a session.
      const flipped = sealed.slice(0, -3) + (sealed.at(-3) === "A" ? "B" : "A") + sealed.slice(-2);
      expect((await raw("POST", await token("alice"), flipped, call)).status).toBe(404);
      const upstreamId = seenIn(await alice.client.callTool({ name: "whoami", arguments: {} })).session!;
      expect((await raw("POST", await token("alice"), upstreamId, call)).status).toBe(404);
      // Alice's session still works (bob's DELETE never reached the server).
      expect(seenIn(await alice.client.callTool({ name: "whoami", arguments: {} })).session).toBe(upstreamId);
      const audit = log.audits.filter(
        (a) => a.agent === "bob" && a.reasons.includes("session_unknown" as never),
      );
      expect(audit.map((a) => a.http_method).sort()).toEqual(["DELETE", "GET", "POST"]);
    } finally {
      await alice.client.close();
    }
  });

  it("lets no other agent answer the owner's elicitation", async () => {
    let answerAlice!: (value: unknown) => void;
    let asked!: () => void;
    const elicited = new Promise<void>((r) => (asked = r));
    const alice = await connect(
      edge,
      await token("alice"),
      undefined,
      () =>
        new Promise((resolve) => {
          answerAlice = resolve;
          asked();
        }),
    );
    try {
      const result = alice.client.callTool({ name: "publish", arguments: {} });
      await elicited;
      // The SDK numbers server-to-client requests from 0: bob answers "accept" in alice's session.
      const forged = JSON.stringify({
        jsonrpc: "2.0",
        id: 0,
        result: { action: "accept", content: { confirm: true } },
      });
      const r = await raw("POST", await token("bob"), alice.transport.sessionId!, forged);
      expect(r.status).toBe(404);
      answerAlice({ action: "decline" });
      expect((await result).content).toEqual([{ type: "text", text: "not published" }]);
    } finally {
      await alice.client.close();
    }
  });

  it("serves a session on any replica with the same key, and on none with another key", async () => {
    const alice = await connect(edge, await token("alice"));
    try {
      const sealed = alice.transport.sessionId!;
      const first = seenIn(await alice.client.callTool({ name: "whoami", arguments: {} })).session;
      const moved = await connect(twin, await token("alice"), sealed);
      expect(seenIn(await moved.client.callTool({ name: "whoami", arguments: {} })).session).toBe(first);
      const elsewhere = await httpCall(url(stranger), {
        headers: {
          ...MCP_HEADERS,
          authorization: `Bearer ${await token("alice")}`,
          "mcp-session-id": sealed,
        },
        body: rpc("tools/list"),
      });
      expect(elsewhere.status).toBe(404);
    } finally {
      await alice.client.close();
    }
  });

  it("namespaces agents by issuer: another issuer's 'alice' gets none of alice's roles", async () => {
    const partnerAlice = await token("alice", { issuer: PARTNER });
    const r = await httpCall(url(edge), {
      headers: { ...MCP_HEADERS, authorization: `Bearer ${partnerAlice}` },
      body: INIT,
    });
    // No role: the server does not exist for it (404, as for an unregistered name).
    expect(r.status).toBe(404);
    expect(r.messages[0]).toMatchObject({ error: { data: { reason: "server_unknown" } } });
    const requestId = (r.messages[0] as { error: { data: { request_id: string } } }).error.data.request_id;
    expect(await log.auditFor(requestId)).toEqual([
      expect.objectContaining({
        agent: "alice",
        issuer: PARTNER,
        reasons: ["server_forbidden"],
        status: 404,
      }),
    ]);
  });

  it("serves an agent whose name is not Latin-1 (percent-encoded upstream), refuses control characters", async () => {
    const named = await connect(edge, await token(CHINESE));
    try {
      const seen = seenIn(await named.client.callTool({ name: "whoami", arguments: {} }));
      expect(seen.agent).toBe(encodeURIComponent(CHINESE));
      expect(decodeURIComponent(seen.agent!)).toBe(CHINESE);
    } finally {
      await named.client.close();
    }
    for (const agent of ["bot\u0000x", "bot\u007fx", "bot\r\nx-mcp-agent: admin"]) {
      const r = await httpCall(url(edge), {
        headers: { ...MCP_HEADERS, authorization: `Bearer ${await token(agent)}` },
        body: INIT,
      });
      expect(r.status, JSON.stringify(agent)).toBe(401);
      expect(r.messages[0]).toMatchObject({ error: { data: { reason: "jwt_claims_invalid" } } });
    }
    // None of it touched the breaker (2 failures would open it): the server still answers.
    const alice = await connect(edge, await token("alice"));
    await alice.client.close();
  });

  it("refuses a token that lives too long (exp: 1e300) or was issued in the future", async () => {
    const key = await importJWK(s.idpKey, "ES256");
    const now = Math.floor(Date.now() / 1000);
    for (const [claims, reason] of [
      [{ iat: now, exp: 1e300 }, "jwt_claims_invalid"],
      [{ iat: now, exp: now + 48 * 3600 }, "jwt_claims_invalid"],
      [{ iat: now + 3600, exp: now + 7200 }, "jwt_not_yet_valid"],
    ] as const) {
      const jwt = await new SignJWT({ ...claims, sub: "alice", iss: IDP, aud: "mcp-gateway" })
        .setProtectedHeader({ alg: "ES256", kid: s.idpKey.kid })
        .sign(key);
      const r = await httpCall(url(edge), {
        headers: { ...MCP_HEADERS, authorization: `Bearer ${jwt}` },
        body: INIT,
      });
      expect(r.status).toBe(401);
      expect(r.messages[0]).toMatchObject({ error: { data: { reason } } });
    }
  });
});

describe("sessions, agents and issuers through the Envoy adapters (two ext-service replicas)", () => {
  let s: Awaited<ReturnType<typeof setup>>;
  const services: ExtService[] = [];
  const clients: EnvoyRoleClient[] = [];
  let log: LogCapture;
  const token = (agent: string, extra: { issuer?: string; roles?: string[] } = {}) =>
    signDevToken(extra.issuer === PARTNER ? s.partnerKey : s.idpKey, {
      subject: agent,
      issuer: extra.issuer ?? IDP,
      ...(extra.roles ? { roles: extra.roles } : {}),
    });

  beforeAll(async () => {
    s = await setup();
    log = new LogCapture();
    for (const [name, key] of [
      ["r1", "key-1"],
      ["r2", "key-1"],
      ["other", "key-2"],
    ] as const) {
      const service = await startExtService({
        engine: loadEngine(s.configFile(name, key)).engine,
        logger: log.logger,
        grpcHost: "127.0.0.1",
        grpcPort: 0,
        adminPort: 0,
        metrics: new Metrics(false),
      });
      services.push(service);
      clients.push(new EnvoyRoleClient(service.grpcAddress, { messageTimeoutMs: 10_000 }));
    }
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await Promise.all(services.map((svc) => svc.close(0)));
    await s?.remove();
  });

  /** Envoy's router: the request as the filters left it goes to the real SDK server. */
  const upstream: Upstream = async (req) => {
    const headers = Object.fromEntries(
      Object.entries(req.headers).filter(
        ([k]) => !k.startsWith(":") && !["host", "content-length", "connection"].includes(k),
      ),
    );
    const controller = new AbortController();
    const res = await request(s.upstream.url, {
      method: req.method as "GET" | "POST" | "DELETE",
      headers,
      body: req.body.byteLength > 0 ? req.body : undefined,
      signal: controller.signal,
    });
    const responseHeaders: Record<string, string> = {};
    for (const [k, v] of Object.entries(res.headers)) {
      if (v !== undefined && !["transfer-encoding", "connection", "keep-alive"].includes(k))
        responseHeaders[k] = String(v);
    }
    if (req.method === "GET" && String(res.headers["content-type"]).startsWith("text/event-stream")) {
      controller.abort(); // a server stream never ends by itself
      await res.body.text().catch(() => undefined);
      return { status: res.statusCode, headers: responseHeaders, body: [] };
    }
    return {
      status: res.statusCode,
      headers: responseHeaders,
      body: Buffer.from(await res.body.arrayBuffer()),
    };
  };

  const send = async (replica: number, method: string, bearer: string, body?: string, sessionId?: string) =>
    clients[replica]!.exchange(
      {
        method,
        path: "/mcp/echo",
        headers: {
          ...(method === "POST" ? MCP_HEADERS : { accept: "text/event-stream" }),
          authorization: `Bearer ${bearer}`,
          "mcp-protocol-version": "2025-06-18",
          ...(sessionId ? { "mcp-session-id": sessionId } : {}),
        },
        ...(body ? { body } : {}),
      },
      upstream,
    );

  const whoami = (id = 2) => rpc("tools/call", { name: "whoami", arguments: {} }, id);
  const seenOf = (body: Buffer): Seen => {
    const text = body.toString("utf8");
    const data = text.startsWith("{") ? text : /^data: (.*)$/m.exec(text)![1]!;
    return seenIn((JSON.parse(data) as { result: unknown }).result);
  };

  async function open(agent: string): Promise<string> {
    const bearer = await token(agent);
    const init = await send(0, "POST", bearer, INIT);
    expect(init.response.status).toBe(200);
    const sealed = init.response.headers["mcp-session-id"]!;
    const initialized = JSON.stringify({ jsonrpc: "2.0", method: "notifications/initialized" });
    expect((await send(0, "POST", bearer, initialized, sealed)).response.status).toBe(202);
    return sealed;
  }

  it("seals the upstream's session id; a second replica with the same key serves the session", async () => {
    const sealed = await open("alice");
    expect(sealed).toMatch(/^g1\./);
    const r = await send(1, "POST", await token("alice"), whoami(), sealed);
    expect(r.response.status).toBe(200);
    const seen = seenOf(r.response.body);
    expect(r.upstreamRequest!.headers["mcp-session-id"]).toBe(seen.session);
    expect(sealed).not.toContain(seen.session);
    expect(seen).toMatchObject({ agent: "alice", issuer: IDP });
    // A gateway with another key does not know it.
    const other = await send(2, "POST", await token("alice"), whoami(), sealed);
    expect([other.answeredBy, other.response.status]).toEqual(["ext_authz", 404]);
  });

  it("answers another agent's POST, GET, DELETE and elicitation response in the session with 404", async () => {
    const sealed = await open("alice");
    const bob = await token("bob");
    const forgedAnswer = JSON.stringify({ jsonrpc: "2.0", id: 0, result: { action: "accept" } });
    for (const [method, body] of [
      ["POST", whoami()],
      ["POST", forgedAnswer],
      ["GET", undefined],
      ["DELETE", undefined],
    ] as const) {
      const r = await send(1, method, bob, body, sealed);
      expect(r.answeredBy, method).toBe("ext_authz");
      expect(r.response.status, method).toBe(404);
      expect(JSON.parse(r.response.body.toString()).error.data.reason).toBe("session_unknown");
      expect(r.upstreamRequest).toBeUndefined();
    }
    const partnerAlice = await token("alice", { issuer: PARTNER, roles: ["all"] });
    expect((await send(0, "POST", partnerAlice, whoami(), sealed)).response.status).toBe(404);
    // The owner's session is intact.
    const mine = await send(0, "POST", await token("alice"), whoami(), sealed);
    expect(mine.response.status).toBe(200);
  });

  it("namespaces agents by issuer, encodes a non-Latin-1 name, refuses control characters and long-lived tokens", async () => {
    const partnerAlice = await send(0, "POST", await token("alice", { issuer: PARTNER }), INIT);
    expect([partnerAlice.answeredBy, partnerAlice.response.status]).toEqual(["ext_authz", 404]);
    expect(JSON.parse(partnerAlice.response.body.toString()).error.data.reason).toBe("server_unknown");

    const named = await send(0, "POST", await token(CHINESE), INIT);
    expect(named.response.status).toBe(200);
    expect(named.upstreamRequest!.headers["x-mcp-agent"]).toBe(encodeURIComponent(CHINESE));
    expect(named.upstreamRequest!.headers["x-mcp-issuer"]).toBe(IDP);

    const nul = await send(0, "POST", await token("bot\u0000x"), INIT);
    expect([nul.answeredBy, nul.response.status]).toEqual(["ext_authz", 401]);

    const key = await importJWK(s.idpKey, "ES256");
    const now = Math.floor(Date.now() / 1000);
    const forever = await new SignJWT({ sub: "alice", iss: IDP, aud: "mcp-gateway", iat: now, exp: 1e300 })
      .setProtectedHeader({ alg: "ES256", kid: s.idpKey.kid })
      .sign(key);
    const r = await send(0, "POST", forever, INIT);
    expect(r.response.status).toBe(401);
    expect(JSON.parse(r.response.body.toString()).error.data.reason).toBe("jwt_claims_invalid");
  });
});
