import { readFileSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { McpError } from "@modelcontextprotocol/sdk/types.js";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse, stringify } from "yaml";
import { approvalsAdminApi } from "../../ext-service/src/approvals/admin-api.js";
import { ADMIN_TOKEN_ENV } from "../../ext-service/src/commands/approvals.js";
import { loadEngine } from "../../ext-service/src/config/compile.js";
import { startEnvoyRoleFront, type EnvoyRoleFront } from "../../ext-service/src/envoy/envoy-role-front.js";
import { toolPin } from "../../ext-service/src/policy/canonical.js";
import { adminBaseUrl, boundPort, startAdminServer } from "../../ext-service/src/telemetry/admin.js";
import { createDeployServer } from "../../examples/servers/deploy.js";
import { serveMcp, type RunningServer } from "../../examples/servers/http.js";
import { runCli } from "../config/cli-capture.js";
import { connectClient, readJsonBody, startGateway, waitFor, type Gateway } from "./harness.js";

/**
 * Issue 17 end to end, on both planes (the edge, and the ext-service behind the Envoy-role
 * front): an SDK client's deploy_service(environment: production) is held for approval; an
 * approval by a second identity lets exactly one identical retry through; another call (changed
 * arguments, another agent), a second use, a lapsed approval and a re-pinned tool are refused;
 * nobody approves their own call; the webhook hears of every request.
 */

const REGISTRY = parse(readFileSync(join(import.meta.dirname, "../../registry/registry.yaml"), "utf8")) as {
  servers: { name: string; upstreams: string[]; tools: Record<string, unknown>[] }[];
};
const DEPLOY = REGISTRY.servers.find((s) => s.name === "deploy")!;
const DEPLOY_TOOLS = DEPLOY.tools.map((t) => (t.name === "deploy_service" ? { ...t, risk: "critical" } : t));

interface Hooked {
  bodies: Record<string, unknown>[];
  url: string;
  close(): Promise<void>;
}

/** A webhook receiver that fails its first request (the notifier must retry). */
async function webhookReceiver(): Promise<Hooked> {
  const bodies: Record<string, unknown>[] = [];
  let calls = 0;
  const server: Server = createServer((req, res) => {
    void readJsonBody(req).then((body) => {
      calls++;
      if (calls === 1) return res.writeHead(503).end();
      bodies.push(body as Record<string, unknown>);
      res.writeHead(200, { "content-type": "text/plain" }).end("ok");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    bodies,
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

function approvalsConfig(webhook: string) {
  return {
    approvals: {
      approvers: [{ roles: ["approver"] }],
      rules: [
        // First: run_command is critical too, and the next rule's condition errs on its
        // arguments (no environment), which counts as a match.
        { name: "shell", tools: ["deploy/run_command"], ttl: "1s" },
        {
          name: "production-deploys",
          risk: ["critical"],
          when: "arguments.environment == 'production'",
        },
      ],
      webhook: { url: webhook, attempts: 3 },
    },
  };
}

const ROLES = {
  deployer: { rules: [{ effect: "allow", tools: ["deploy/*"] }] },
  approver: { rules: [] },
  admin: { rules: [] },
};
const AGENTS = {
  "release-bot": { roles: ["deployer"] },
  "other-bot": { roles: ["deployer"] },
  "release-lead": { roles: ["deployer", "approver"] },
  alice: { roles: ["approver"] },
};

interface ErrorData {
  reason: string;
  approval_id?: string;
  approve_url?: string;
  status?: string;
}

async function callError(promise: Promise<unknown>): Promise<{ code: number; data: ErrorData }> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof McpError) return { code: err.code, data: err.data as ErrorData };
    throw err;
  }
  throw new Error("the call went through");
}

describe.each(["edge", "envoy"] as const)("human approval of high-risk calls (%s plane)", (plane) => {
  const versions = new Map<string, Record<string, string>>();
  /** What the server describes deploy_service as (a new definition, for the re-pin case). */
  const served: { description?: string } = {};
  let deploy: RunningServer;
  let gw: Gateway;
  let front: EnvoyRoleFront | undefined;
  let hook: Hooked;
  let adminUrl: string;
  let closeAdmin: (() => Promise<void>) | undefined;
  const tokens: Record<string, string> = {};

  beforeAll(async () => {
    deploy = await serveMcp(
      () => createDeployServer(versions, { stepMs: 0, deployDescription: served.description }),
      0,
    );
    hook = await webhookReceiver();
    gw = await startGateway({
      servers: [{ name: "deploy", upstreams: [deploy.url], tools: DEPLOY_TOOLS }],
      roles: ROLES,
      agents: AGENTS,
      config: approvalsConfig(hook.url),
    });
    for (const name of [...Object.keys(AGENTS), "stranger"]) tokens[name] = await gw.token(name);
    if (plane === "edge") {
      const approvals = gw.edge.state.approvals;
      const admin = await startAdminServer(gw.metrics, { ready: () => true }, "127.0.0.1", 0, [
        approvalsAdminApi(() => gw.edge.engine, approvals, gw.log.logger),
      ]);
      adminUrl = adminBaseUrl("127.0.0.1", boundPort(admin));
      approvals.adminUrl = adminUrl;
      closeAdmin = () =>
        new Promise<void>((r) => {
          admin.close(() => r());
          admin.closeAllConnections();
        });
    } else {
      front = await startEnvoyRoleFront({
        extService: { engine: gw.engine, logger: gw.log.logger, metrics: gw.metrics },
      });
      adminUrl = `http://127.0.0.1:${front.extService!.adminPort}`;
    }
  });
  afterAll(async () => {
    await front?.close();
    await closeAdmin?.();
    await gw?.close();
    await deploy?.close();
    await hook?.close();
  });

  const mcpUrl = () => (plane === "edge" ? gw.url("deploy") : `${front!.url}/mcp/deploy`);
  const setEngine = (configFile: string) => {
    const { engine } = loadEngine(configFile);
    if (plane === "edge") gw.edge.setEngine(engine);
    else front!.extService!.setEngine(engine);
  };

  async function call(agent: string, args: Record<string, unknown>, tool = "deploy_service") {
    const c = await connectClient(mcpUrl(), tokens[agent]);
    try {
      return await c.client.callTool({ name: tool, arguments: args });
    } finally {
      await c.close();
    }
  }

  async function admin(
    agent: string,
    method: "GET" | "POST",
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ) {
    const res = await request(`${adminUrl}/admin/approvals${path}`, {
      method,
      headers: {
        authorization: `Bearer ${tokens[agent]}`,
        ...(body !== undefined ? { "content-type": "application/json" } : {}),
        ...headers,
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown> };
  }

  const prod = (version: string) => ({ service: "billing", version, environment: "production" });

  it("holds the call, notifies the webhook, and lets exactly one identical retry through after a second identity approves", async () => {
    const held = await callError(call("release-bot", prod("3.0.0")));
    expect(held.code).toBe(-32011);
    expect(held.data).toMatchObject({ reason: "approval_required", status: "pending" });
    const id = held.data.approval_id!;
    expect(held.data.approve_url).toBe(`${adminUrl}/admin/approvals/${id}`);
    expect(versions.get("billing")?.production).toBeUndefined();

    // The webhook's first answer is 503: the notifier retries.
    await waitFor(() => hook.bodies.some((b) => (b.approval as { id: string }).id === id), 5_000, "webhook");
    const note = hook.bodies.find((b) => (b.approval as { id: string }).id === id)!;
    expect(note.text).toContain(`release-bot`);
    expect(note.text).toContain(`deploy/deploy_service`);
    expect(note.text).toContain(`mcp-gateway approvals approve ${id}`);

    // Asking again before a decision is the same request, not a new one.
    expect((await callError(call("release-bot", prod("3.0.0")))).data.approval_id).toBe(id);

    const listed = await admin("alice", "GET", "?status=pending");
    expect(listed.status).toBe(200);
    const views = listed.body.approvals as { id: string; agent: string; arguments: unknown }[];
    expect(views.find((v) => v.id === id)).toMatchObject({ agent: "release-bot", arguments: prod("3.0.0") });

    // The CLI is a client of the same API.
    process.env[ADMIN_TOKEN_ENV] = tokens.alice;
    const cli = await runCli(["approvals", "approve", id, "--url", adminUrl, "--note", "release 3.0.0"]);
    delete process.env[ADMIN_TOKEN_ENV];
    expect(cli).toMatchObject({ code: 0, stderr: "" });
    expect(cli.stdout).toContain(`approved ${id}`);

    const done = await call("release-bot", prod("3.0.0"));
    expect(done.isError).toBeFalsy();
    expect(versions.get("billing")?.production).toBe("3.0.0");

    // Single use: the same call again needs a new approval.
    const again = await callError(call("release-bot", prod("3.0.0")));
    expect(again.data.reason).toBe("approval_required");
    expect(again.data.approval_id).not.toBe(id);

    const shown = await admin("alice", "GET", `/${id}`);
    expect(shown.body).toMatchObject({
      status: "used",
      decided_by: { agent: "alice" },
      note: "release 3.0.0",
    });
    const records = gw.log.lines.filter((l) => l.approval_audit === true && l.approval_id === id);
    expect(records.map((r) => r.event)).toEqual(["requested", "approved", "used"]);
    const scraped = await gw.metrics.registry.metrics();
    expect(scraped).toMatch(/mcp_gateway_approvals_total\{event="used"\} 1\n/);
    expect(scraped).toMatch(/mcp_gateway_approvals_total\{event="approved"\} 1\n/);
    expect(scraped).toMatch(/mcp_gateway_approvals_pending 1\n/);
  });

  it("shows approvers and the webhook the arguments with personal data and secrets redacted", async () => {
    const args = { service: "billing for jane.doe@example.com", version: "9.9.9", environment: "production" };
    const id = (await callError(call("release-bot", args))).data.approval_id!;
    const shown = await admin("alice", "GET", `/${id}`);
    expect(JSON.stringify(shown.body)).not.toContain("jane.doe@example.com");
    expect((shown.body.arguments as { service: string }).service).toMatch(/^billing for \[REDACTED:/);
    await waitFor(() => hook.bodies.some((b) => (b.approval as { id: string }).id === id), 5_000, "webhook");
    expect(JSON.stringify(hook.bodies)).not.toContain("jane.doe@example.com");
    expect(gw.log.lines.map((l) => JSON.stringify(l)).join("\n")).not.toContain("jane.doe@example.com");
  });

  it("refuses another call: changed arguments, another agent", async () => {
    const id = (await callError(call("release-bot", prod("3.1.0")))).data.approval_id!;
    expect((await admin("alice", "POST", `/${id}/approve`, {})).status).toBe(200);
    const changed = await callError(call("release-bot", prod("3.1.1")));
    expect(changed.data.reason).toBe("approval_required");
    const other = await callError(call("other-bot", prod("3.1.0")));
    expect(other.data.reason).toBe("approval_required");
    expect(versions.get("billing")?.production).toBe("3.0.0");
    // The approval is still there for the call it was given for.
    await call("release-bot", prod("3.1.0"));
    expect(versions.get("billing")?.production).toBe("3.1.0");
  });

  it("nobody approves their own call; only approvers (and admins to deny) may decide", async () => {
    const id = (await callError(call("release-lead", prod("3.2.0")))).data.approval_id!;
    const self = await admin("release-lead", "POST", `/${id}/approve`, {});
    expect(self).toMatchObject({ status: 403, body: { error: { code: "self_approval" } } });
    const bot = await admin("release-bot", "POST", `/${id}/approve`, {});
    expect(bot).toMatchObject({ status: 403, body: { error: { code: "forbidden" } } });
    const stranger = await admin("stranger", "GET", "");
    expect(stranger.status).toBe(403);
    const noToken = await request(`${adminUrl}/admin/approvals`);
    expect(noToken.statusCode).toBe(401);
    await noToken.body.dump();
    // Cross-site: a foreign Origin, or a decision not sent as JSON, is refused.
    const foreign = await admin("alice", "POST", `/${id}/approve`, {}, { origin: "https://evil.example" });
    expect(foreign.status).toBe(403);
    const form = await request(`${adminUrl}/admin/approvals/${id}/approve`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${tokens.alice}`,
        "content-type": "application/x-www-form-urlencoded",
      },
      body: "note=x",
    });
    expect(form.statusCode).toBe(415);
    await form.body.dump();
    expect((await callError(call("release-lead", prod("3.2.0")))).data.reason).toBe("approval_required");

    const denied = await admin("alice", "POST", `/${id}/deny`, { note: "not today" });
    expect(denied).toMatchObject({ status: 200, body: { status: "denied" } });
    const refused = await callError(call("release-lead", prod("3.2.0")));
    expect(refused.data).toMatchObject({ reason: "approval_denied", approval_id: id });
    expect(versions.get("billing")?.production).toBe("3.1.0");
  });

  it("refuses an approval after it expired", async () => {
    const id = (await callError(call("release-bot", { command: "uptime" }, "run_command"))).data.approval_id!;
    expect((await admin("alice", "POST", `/${id}/approve`, {})).status).toBe(200);
    await new Promise((r) => setTimeout(r, 1_100));
    const lapsed = await callError(call("release-bot", { command: "uptime" }, "run_command"));
    expect(lapsed.data.reason).toBe("approval_required");
    expect(lapsed.data.approval_id).not.toBe(id);
    expect((await admin("alice", "GET", `/${id}`)).body.status).toBe("expired");
  });

  it("refuses an approval after the tool was re-pinned", async () => {
    const id = (await callError(call("release-bot", prod("3.3.0")))).data.approval_id!;
    expect((await admin("alice", "POST", `/${id}/approve`, {})).status).toBe(200);
    const registryFile = join(gw.configFile, "../registry.yaml");
    const original = readFileSync(registryFile, "utf8");
    const registry = parse(original) as { servers: { tools: Record<string, unknown>[] }[] };
    const tool = registry.servers[0]!.tools.find((t) => t.name === "deploy_service")!;
    // The server ships a new definition; the operator reviews and re-pins it.
    served.description = "Deploy a service version to an environment (reviewed again).";
    tool.description = served.description;
    tool.pin = toolPin(tool);
    writeFileSync(registryFile, stringify(registry));
    setEngine(gw.configFile);
    try {
      const repinned = await callError(call("release-bot", prod("3.3.0")));
      expect(repinned.data.reason).toBe("approval_required");
      expect(repinned.data.approval_id).not.toBe(id);
      expect(versions.get("billing")?.production).toBe("3.1.0");
      // The new definition itself is callable once approved again.
      const again = (await callError(call("release-bot", prod("3.3.0")))).data.approval_id!;
      expect(again).toBe(repinned.data.approval_id);
      expect((await admin("alice", "POST", `/${again}/approve`, {})).status).toBe(200);
      await call("release-bot", prod("3.3.0"));
      expect(versions.get("billing")?.production).toBe("3.3.0");
    } finally {
      delete served.description;
      writeFileSync(registryFile, original);
      setEngine(gw.configFile);
    }
  });
});
