import { spawn, type ChildProcess } from "node:child_process";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
  LoggingMessageNotificationSchema,
  type Progress,
} from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectClient, startGateway, unusedPort, waitFor, type Connected, type Gateway } from "./harness.js";

/**
 * An unmodified third-party server, @modelcontextprotocol/server-everything in its Streamable
 * HTTP mode, driven by the SDK client twice: directly and through the edge. Whatever the policy
 * allows must behave the same both ways, including server-to-client requests (sampling,
 * elicitation, roots) and notifications (progress, logging).
 */

const require = createRequire(import.meta.url);
const EVERYTHING = join(
  dirname(require.resolve("@modelcontextprotocol/server-everything/package.json")),
  "dist",
  "index.js",
);

interface Session extends Connected {
  rootsRequests: number;
  logs: { level: string; data: unknown }[];
}

const CAPABILITIES = { sampling: {}, elicitation: {}, roots: { listChanged: true } };

function handlers(session: { rootsRequests: number; logs: Session["logs"] }) {
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
    client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
      session.logs.push({ level: n.params.level, data: n.params.data });
    });
  };
}

/**
 * A result with the server's clock reading (server-everything writes `created at
 * <toLocaleTimeString()>` into dynamic resources) replaced by a fixed word. The reading must look
 * like a time, so a gateway that rewrote it would still fail the comparison.
 */
function withoutClock<T>(result: T): T {
  const CLOCK = /(created at )\d{1,2}:\d{2}:\d{2}(?:\u202f| )?(?:[AP]M)?/g;
  return JSON.parse(JSON.stringify(result).replace(CLOCK, "$1<clock>")) as T;
}

async function open(url: string, token: string | undefined): Promise<Session> {
  const state = { rootsRequests: 0, logs: [] as Session["logs"] };
  const connected = await connectClient(url, token, CAPABILITIES, handlers(state));
  return Object.assign(state, connected);
}

describe("server-everything through the edge behaves as directly", () => {
  let child: ChildProcess;
  let directUrl: string;
  let gw: Gateway;
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
    directUrl = `http://127.0.0.1:${port}/mcp`;

    // The test registry is generated from the server's own tools/list (with every capability,
    // so the conditional tools appear).
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
      edge: { rateLimit: { requestsPerSecond: 1000, burst: 1000 } },
    });
    direct = await open(directUrl, undefined);
    gated = await open(gw.url("everything"), await gw.token("tester"));
  });

  afterAll(async () => {
    await direct?.close();
    await gated?.close();
    await gw?.close();
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    }
  });

  const both = async <T>(f: (s: Session) => Promise<T>): Promise<[T, T]> => [await f(direct), await f(gated)];

  it("initialize: same server info, capabilities and instructions", () => {
    expect(gated.client.getServerVersion()).toEqual(direct.client.getServerVersion());
    expect(gated.client.getServerCapabilities()).toEqual(direct.client.getServerCapabilities());
    expect(gated.client.getInstructions()).toEqual(direct.client.getInstructions());
    expect(gated.transport.sessionId).toBeTruthy();
  });

  it("server-to-client roots/list request and the logging notification after it", async () => {
    await waitFor(() => direct.rootsRequests > 0 && gated.rootsRequests > 0, 5_000, "roots/list on both");
    const rootsLog = (s: Session) => s.logs.find((l) => String(l.data).startsWith("Roots updated"));
    await waitFor(() => !!rootsLog(direct) && !!rootsLog(gated), 5_000, "the roots log on both");
    expect(rootsLog(gated)).toEqual(rootsLog(direct));
    expect(rootsLog(gated)?.data).toBe("Roots updated: 1 root(s) received from client");
  });

  it("tools/list", async () => {
    const [d, g] = await both((s) => s.client.listTools());
    expect(g.tools.length).toBeGreaterThan(10);
    expect(g).toEqual(d);
  });

  it("tools/call: echo, get-sum, get-tiny-image", async () => {
    for (const call of [
      { name: "echo", arguments: { message: "through the gateway" } },
      { name: "get-sum", arguments: { a: 2, b: 40 } },
      { name: "get-tiny-image", arguments: {} },
    ]) {
      const [d, g] = await both((s) => s.client.callTool(call));
      expect(g).toEqual(d);
      expect(g.isError).toBeFalsy();
    }
  });

  it("sampling round-trip: the server asks the client's model mid-call", async () => {
    const [d, g] = await both((s) =>
      s.client.callTool({ name: "trigger-sampling-request", arguments: { prompt: "2+2?", maxTokens: 7 } }),
    );
    expect(g).toEqual(d);
    expect(JSON.stringify(g.content)).toContain("echo of 1 message(s), max 7");
  });

  it("elicitation round-trip: the server asks the user mid-call", async () => {
    const [d, g] = await both((s) =>
      s.client.callTool({ name: "trigger-elicitation-request", arguments: {} }),
    );
    expect(g).toEqual(d);
    expect(JSON.stringify(g.content)).toContain("Name: Ada Lovelace");
  });

  it("progress notifications of a long-running operation", async () => {
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

  it("prompts: list, get with and without arguments, completion", async () => {
    const [dl, gl] = await both((s) => s.client.listPrompts());
    expect(gl).toEqual(dl);
    const [ds, gs] = await both((s) => s.client.getPrompt({ name: "simple-prompt" }));
    expect(gs).toEqual(ds);
    const [da, ga] = await both((s) =>
      s.client.getPrompt({ name: "args-prompt", arguments: { city: "Lyon" } }),
    );
    expect(ga).toEqual(da);
    const [dc, gc] = await both((s) =>
      s.client.complete({
        ref: { type: "ref/prompt", name: "completable-prompt" },
        argument: { name: "department", value: "E" },
      }),
    );
    expect(gc).toEqual(dc);
  });

  it("resources: list, templates, read static and templated", async () => {
    const [dl, gl] = await both((s) => s.client.listResources());
    expect(gl).toEqual(dl);
    const [dt, gt] = await both((s) => s.client.listResourceTemplates());
    expect(gt).toEqual(dt);
    const uri = gl.resources[0]!.uri;
    const [dr, gr] = await both((s) => s.client.readResource({ uri }));
    expect(gr).toEqual(dr);
    // The dynamic resource's text carries the server's clock to the second, so two reads can
    // differ by it: the clock is compared as a shape, everything else exactly.
    const [dd, gd] = await both((s) => s.client.readResource({ uri: "demo://resource/dynamic/text/7" }));
    expect(withoutClock(gd)).toEqual(withoutClock(dd));
    expect(withoutClock(gd)).not.toEqual(gd);
  });

  it("logging notifications on the server-to-client stream", async () => {
    const count = (s: Session) => s.logs.filter((l) => String(l.data).includes("-level message")).length;
    const before = [count(direct), count(gated)];
    await both((s) => s.client.callTool({ name: "toggle-simulated-logging", arguments: {} }));
    await waitFor(
      () => count(direct) > before[0]! && count(gated) > before[1]!,
      8_000,
      "a simulated log on both",
    );
    await both((s) => s.client.callTool({ name: "toggle-simulated-logging", arguments: {} }));
    const last = (s: Session) => s.logs.filter((l) => String(l.data).includes("-level message")).at(-1)!;
    expect(String(last(gated).data)).toMatch(/-level message - SessionId /);
    expect(typeof last(gated).level).toBe("string");
  });

  it("ping, and every gateway exchange has one audit record", async () => {
    await both((s) => s.client.ping());
    const audits = gw.log.audits;
    expect(new Set(audits.map((a) => a.request_id)).size).toBe(audits.length);
    expect(audits.every((a) => a.agent === "tester" && a.server === "everything")).toBe(true);
  });
});
