import { spawn, type ChildProcess } from "node:child_process";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
  type Progress,
} from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEnvoyRoleFront, type EnvoyRoleFront } from "../../ext-service/src/envoy/envoy-role-front.js";
import {
  connectClient,
  startGateway,
  unusedPort,
  waitFor,
  type Connected,
  type Gateway,
} from "../e2e/harness.js";

/**
 * An unmodified third-party server (@modelcontextprotocol/server-everything, Streamable HTTP)
 * behind the Envoy-role front, driven by the SDK 1.x client directly and through the front:
 * server-to-client requests (sampling, elicitation, roots) answered by client POSTs while the
 * tool call's SSE response is still open, progress and logging notifications, all through
 * ext_authz + ext_proc as the model of Envoy 1.38 runs them.
 */

const require = createRequire(import.meta.url);
const EVERYTHING = join(
  dirname(require.resolve("@modelcontextprotocol/server-everything/package.json")),
  "dist",
  "index.js",
);

interface Session extends Connected {
  rootsRequests: number;
}

function handlers(session: { rootsRequests: number }) {
  return (client: Client) => {
    client.setRequestHandler(CreateMessageRequestSchema, async (req) => ({
      model: "test-model",
      role: "assistant",
      stopReason: "endTurn",
      content: {
        type: "text",
        text: `echo of ${req.params.messages.length} message(s), max ${req.params.maxTokens}`,
      },
    }));
    client.setRequestHandler(ElicitRequestSchema, async () => ({
      action: "accept",
      content: { name: "Ada Lovelace", check: true },
    }));
    client.setRequestHandler(ListRootsRequestSchema, async () => {
      session.rootsRequests++;
      return { roots: [{ uri: "file:///tmp/project", name: "project" }] };
    });
  };
}

async function open(url: string, token: string | undefined): Promise<Session> {
  const state = { rootsRequests: 0 };
  const connected = await connectClient(
    url,
    token,
    { sampling: {}, elicitation: {}, roots: { listChanged: true } },
    handlers(state),
  );
  return Object.assign(state, connected);
}

describe("server-everything through the Envoy-role front behaves as directly", () => {
  let child: ChildProcess;
  let gw: Gateway;
  let front: EnvoyRoleFront;
  let direct: Session;
  let gated: Session;

  beforeAll(async () => {
    const port = await unusedPort();
    child = spawn(process.execPath, [EVERYTHING, "streamableHttp"], {
      env: { ...process.env, PORT: String(port) },
      stdio: ["ignore", "ignore", "pipe"],
    });
    await new Promise<void>((resolve, reject) => {
      child.once("exit", (code) => reject(new Error(`server-everything exited with ${code}`)));
      child.stderr!.on("data", (d: Buffer) => {
        if (d.toString().includes("listening")) resolve();
      });
    });
    const directUrl = `http://127.0.0.1:${port}/mcp`;
    const probe = await open(directUrl, undefined);
    await waitFor(() => probe.rootsRequests > 0, 5_000, "conditional tools to register");
    const { tools } = await probe.client.listTools();
    await probe.close();
    gw = await startGateway({
      servers: [
        {
          name: "everything",
          upstreams: [directUrl],
          tools: tools.map((t) => ({
            name: t.name,
            ...(t.title !== undefined ? { title: t.title } : {}),
            description: t.description ?? "",
            inputSchema: t.inputSchema,
            ...(t.outputSchema ? { outputSchema: t.outputSchema } : {}),
            ...(t.annotations ? { annotations: t.annotations } : {}),
          })),
        },
      ],
    });
    front = await startEnvoyRoleFront({ extService: { engine: gw.engine, logger: gw.log.logger } });
    direct = await open(directUrl, undefined);
    gated = await open(`${front.url}/mcp/everything`, await gw.token("tester"));
  });

  afterAll(async () => {
    await direct?.close();
    await gated?.close();
    await front?.close();
    await gw?.close();
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    }
  });

  const both = async <T>(f: (s: Session) => Promise<T>): Promise<[T, T]> => [await f(direct), await f(gated)];

  it("initialize and tools/list are the same", async () => {
    expect(gated.client.getServerCapabilities()).toEqual(direct.client.getServerCapabilities());
    const [d, g] = await both((s) => s.client.listTools());
    expect(g).toEqual(d);
  });

  it("roots/list: a server-to-client request on the GET stream, answered by a client POST", async () => {
    // The server asks for roots/list by itself once the session is set up: at once when the
    // machine is idle, over 5 s once at load average 27 (it is a separate node process).
    await waitFor(() => gated.rootsRequests > 0, 15_000, "roots/list through the front");
  });

  it("sampling round trip while the tool call's response stream is open", async () => {
    const [d, g] = await both((s) =>
      s.client.callTool({ name: "trigger-sampling-request", arguments: { prompt: "2+2?", maxTokens: 7 } }),
    );
    expect(g).toEqual(d);
    expect(JSON.stringify(g.content)).toContain("echo of 1 message(s), max 7");
  });

  it("elicitation round trip", async () => {
    const [d, g] = await both((s) =>
      s.client.callTool({ name: "trigger-elicitation-request", arguments: {} }),
    );
    expect(g).toEqual(d);
    expect(JSON.stringify(g.content)).toContain("Name: Ada Lovelace");
  });

  it("progress notifications of a long-running operation, as they happen", async () => {
    const run = async (s: Session) => {
      const progress: Progress[] = [];
      const result = await s.client.callTool(
        { name: "trigger-long-running-operation", arguments: { duration: 0.3, steps: 3 } },
        undefined,
        { onprogress: (p) => progress.push(p) },
      );
      return { result, progress };
    };
    const [d, g] = await both(run);
    expect(g).toEqual(d);
    expect(g.progress.map((p) => p.progress)).toEqual([1, 2, 3]);
  });

  it("prompts and resources", async () => {
    const [dp, gp] = await both((s) =>
      s.client.getPrompt({ name: "args-prompt", arguments: { city: "Lyon" } }),
    );
    expect(gp).toEqual(dp);
    const [dl, gl] = await both((s) => s.client.listResources());
    expect(gl).toEqual(dl);
    const uri = gl.resources[0]!.uri;
    const [dr, gr] = await both((s) => s.client.readResource({ uri }));
    expect(gr).toEqual(dr);
  });

  it("every exchange through the front has exactly one audit record", async () => {
    await gated.client.ping();
    await new Promise((resolve) => setTimeout(resolve, 50));
    const audits = gw.log.audits.filter((a) => a.plane === "envoy");
    expect(audits.length).toBeGreaterThan(5);
    expect(new Set(audits.map((a) => a.request_id)).size).toBe(audits.length);
    expect(audits.every((a) => a.agent === "tester" && a.server === "everything")).toBe(true);
  });
});
