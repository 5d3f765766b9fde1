import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { CURL_BEGIN, CURL_END, repoRoot } from "../../ext-service/src/commands/dev.js";
import {
  DEV_ISSUER,
  devSessionKeyFile,
  ensureDevKeys,
  signDevToken,
} from "../../ext-service/src/config/devkeys.js";
import { edgeAddresses, untilOutput } from "../state/support.js";
import { connectClient, fakeUpstream, httpCall, MCP_HEADERS, readJsonBody, rpc, tempDir } from "./harness.js";

const CLI = join(repoRoot(), "ext-service", "src", "cli.ts");

interface Running {
  child: ChildProcess;
  stdout(): string;
  exit: Promise<number | null>;
}

/** Runs the CLI from source in a child process (as `npm start` does from dist/). */
function cli(args: string[]): Running {
  const child = spawn(process.execPath, ["--import", "tsx", CLI, ...args], {
    cwd: repoRoot(),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const exit = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return { child, stdout: () => out, exit };
}

function until(run: Running, pattern: RegExp): Promise<RegExpMatchArray> {
  return untilFound(run, (out) => pattern.exec(out) ?? undefined, String(pattern));
}

function untilFound<T>(run: Running, find: (stdout: string) => T | undefined, what: string): Promise<T> {
  return untilOutput(run.child, run.stdout, find, what, 20_000);
}

function bash(script: string): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn("bash", ["-c", script], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    child.once("exit", (code) => resolve({ code, out }));
  });
}

describe("mcp-gateway dev (npm start)", () => {
  const keys = tempDir();
  let run: Running | undefined;
  afterAll(async () => {
    if (run && run.child.exitCode === null) {
      run.child.kill("SIGKILL");
      await run.exit;
    }
    keys.remove();
  });

  // A cold `dev` start from source plus a curl round trip: 9 s at load average 16, 18-19 s at 27.
  it("prints URLs, tokens and a curl command that really lists tools; Ctrl-C stops it cleanly", async () => {
    run = cli(["dev", "--port", "0", "--admin-port", "0", "--demo-ports", "0", "--keys", keys.dir]);
    await until(run, /Ctrl-C stops everything\./);
    const out = run.stdout();
    for (const server of ["kb", "tickets", "deploy"]) {
      expect(out).toMatch(new RegExp(`  ${server} +http://127\\.0\\.0\\.1:\\d+/mcp/${server} `));
    }
    for (const agent of ["research-bot", "support-bot", "release-bot"])
      expect(out).toContain(`  ${agent}  roles: `);
    // One ready token per demo agent: examples/gateway.yaml has six since db83629 (platform-admin).
    expect(out.match(/^ {4}eyJ[\w-]+\.[\w-]+\.[\w-]+$/gm)).toHaveLength(6);

    const snippet = out.slice(out.indexOf(CURL_BEGIN) + CURL_BEGIN.length, out.indexOf(CURL_END));
    const result = await bash(snippet);
    expect(result.code).toBe(0);
    const listed = JSON.parse(result.out) as { id: number; result: { tools: { name: string }[] } };
    expect(listed.id).toBe(2);
    expect(listed.result.tools.map((t) => t.name)).toEqual(["list_tickets", "get_ticket", "create_ticket"]);

    const admin = (await until(run, /Admin: (http:\/\/127\.0\.0\.1:\d+)\/metrics/))[1]!;
    expect((await httpCall(`${admin}/readyz`, { method: "GET" })).status).toBe(200);
    expect((await httpCall(`${admin}/metrics`, { method: "GET" })).text).toContain(
      "mcp_gateway_requests_total",
    );
    // the audit records of the two curl requests are on stdout, without the token
    await until(run, /"methods":\["tools\/list"\]/);
    const token = /^TOKEN='([^']+)'$/m.exec(snippet)![1]!;
    expect(run.stdout().split(CURL_END)[1]).not.toContain(token);

    // The one URL for every server (README, "Connect an MCP client"), with the same token.
    const aggregated = /^One URL for every server .*\n {2}(http:\/\/127\.0\.0\.1:\d+\/mcp)$/m.exec(out)?.[1];
    expect(aggregated).toBeDefined();
    const mcp = await connectClient(aggregated!, token);
    try {
      const tools = (await mcp.client.listTools()).tools.map((t) => t.name);
      expect(tools).toContain("tickets__create_ticket");
      expect(tools).toContain("kb__search_articles");
      expect(tools).not.toContain("tickets__delete_ticket");
      await mcp.transport.terminateSession();
    } finally {
      await mcp.close();
    }

    run.child.kill("SIGINT");
    expect(await run.exit).toBe(0);
    // Audit records of streams that end with the gateway may come between the two lines.
    expect(run.stdout()).toMatch(/SIGINT: stopping the gateway and the demo servers\n(?:\{.*\}\n)*stopped\n/);
  }, 60_000);

  // Two cold `dev` starts one after the other, as the test below.
  it("keeps the agents' aggregated session ids valid across a restart (a dev session key in --keys, 0600)", async () => {
    const dir = tempDir();
    const args = ["--admin-port", "0", "--demo-ports", "0", "--keys", dir.dir];
    let first: Running | undefined = cli(["dev", "--port", "0", ...args]);
    let second: Running | undefined;
    try {
      await until(first, /Ctrl-C stops everything\./);
      const url = /^One URL for every server .*\n {2}(http:\/\/127\.0\.0\.1:(\d+)\/mcp)$/m.exec(
        first.stdout(),
      )!;
      const token = /^ {2}support-bot {2}roles: .*\n {4}(\S+)$/m.exec(first.stdout())![1]!;
      const keyFile = devSessionKeyFile(dir.dir);
      expect(statSync(keyFile).mode & 0o777).toBe(0o600);
      const key = readFileSync(keyFile, "utf8");
      const mcp = await connectClient(url[1]!, token);
      const sessionId = mcp.transport.sessionId!;
      const before = (await mcp.client.listTools()).tools.map((t) => t.name);
      await mcp.close();
      first.child.kill("SIGINT");
      expect(await first.exit).toBe(0);
      first = undefined;

      second = cli(["dev", "--port", url[2]!, ...args]);
      await until(second, /Ctrl-C stops everything\./);
      expect(readFileSync(keyFile, "utf8")).toBe(key); // read back, not made anew
      const r = await httpCall(url[1]!, {
        headers: {
          ...MCP_HEADERS,
          authorization: `Bearer ${token}`,
          "mcp-session-id": sessionId,
          "mcp-protocol-version": "2025-06-18",
        },
        body: rpc("tools/list", undefined, 2),
      });
      expect(r.status).toBe(200);
      expect(r.messages[0]).toMatchObject({ id: 2, result: { tools: before.map((name) => ({ name })) } });
    } finally {
      for (const run of [first, second]) {
        if (run && run.child.exitCode === null) {
          run.child.kill("SIGKILL");
          await run.exit;
        }
      }
      dir.remove();
    }
  }, 90_000);

  // Two cold `dev` starts one after the other (each a tsx compile, keys and three demo servers):
  // 12 s at load average 16 on two cores, over the 20 s default at higher load.
  it("explains a busy port instead of crashing", async () => {
    const blocker = cli(["dev", "--port", "0", "--admin-port", "0", "--demo-ports", "0", "--keys", keys.dir]);
    try {
      const url = (await until(blocker, /tickets +http:\/\/127\.0\.0\.1:(\d+)\/mcp\/tickets/))[1]!;
      const second = cli([
        "dev",
        "--port",
        url,
        "--admin-port",
        "0",
        "--demo-ports",
        "0",
        "--keys",
        keys.dir,
      ]);
      expect(await second.exit).toBe(1);
      expect(second.stdout()).toContain(`The gateway port ${url} is already in use`);
      // Another `npm start` on the defaults is the usual cause: say how to pick free ports.
      expect(second.stdout()).toContain("npm start -- --port 0 --demo-ports 0 --admin-port 0");
      expect(second.stdout()).not.toMatch(/\n\s+at /);
    } finally {
      blocker.child.kill("SIGTERM");
      expect(await blocker.exit).toBe(0);
    }
  }, 60_000);
});

describe("mcp-gateway edge", () => {
  const tmp = tempDir();
  afterAll(() => tmp.remove());

  it("serves with admin endpoints and drains on SIGTERM", async () => {
    const keys = await ensureDevKeys(join(tmp.dir, "keys"));
    writeFileSync(
      join(tmp.dir, "registry.yaml"),
      stringify({ version: "1", servers: [{ name: "svc", upstreams: ["http://127.0.0.1:9/mcp"] }] }),
    );
    writeFileSync(
      join(tmp.dir, "gateway.yaml"),
      stringify({
        registry: "registry.yaml",
        auth: {
          issuers: [{ issuer: DEV_ISSUER, audiences: ["mcp-gateway"], jwks: { file: keys.jwksFile } }],
        },
      }),
    );
    const run = cli(["edge", "--config", join(tmp.dir, "gateway.yaml"), "--port", "0", "--admin-port", "0"]);
    try {
      const { edge, admin } = await untilFound(run, edgeAddresses, "the edge's start line");
      expect((await httpCall(`${admin}/healthz`, { method: "GET" })).status).toBe(200);
      expect((await httpCall(`${admin}/readyz`, { method: "GET" })).status).toBe(200);
      const r = await httpCall(`${edge}/mcp/svc`, { headers: { ...MCP_HEADERS }, body: rpc("ping") });
      expect(r.status).toBe(401);
      expect(r.messages[0]).toMatchObject({ error: { data: { reason: "token_missing" } } });
    } finally {
      run.child.kill("SIGTERM");
    }
    expect(await run.exit).toBe(0);
    expect(run.stdout()).toContain('"msg":"draining"');
    // No sessions.keys: its session ids die with it, and the operator is told at start.
    expect(run.stdout()).toMatch(
      /"setting":"sessions\.keys".*no sessions\.keys: session ids are sealed with a key of this process only/,
    );
  });

  it("writes every audit record before it exits on SIGTERM, though nothing read its stdout meanwhile", async () => {
    const keys = await ensureDevKeys(join(tmp.dir, "keys"));
    writeFileSync(
      join(tmp.dir, "records-registry.yaml"),
      stringify({ version: "1", servers: [{ name: "svc", upstreams: ["http://127.0.0.1:9/mcp"] }] }),
    );
    writeFileSync(
      join(tmp.dir, "records.yaml"),
      stringify({
        registry: "records-registry.yaml",
        auth: {
          issuers: [{ issuer: DEV_ISSUER, audiences: ["mcp-gateway"], jwks: { file: keys.jwksFile } }],
        },
      }),
    );
    const run = cli(["edge", "--config", join(tmp.dir, "records.yaml"), "--port", "0", "--admin-port", "0"]);
    const requests = 400;
    try {
      // A cold start from source took over 20 s at load average 22.
      const { edge } = await untilOutput(
        run.child,
        run.stdout,
        edgeAddresses,
        "the edge's start line",
        60_000,
      );
      // Nobody reads the gateway's stdout now: once the pipe is full its log lines wait in the
      // gateway (a synchronous write would stall every request instead).
      run.child.stdout!.pause();
      for (let i = 0; i < requests; i += 20) {
        const batch = await Promise.all(
          Array.from({ length: 20 }, () =>
            httpCall(`${edge}/mcp/svc`, { headers: { ...MCP_HEADERS }, body: rpc("ping") }),
          ),
        );
        expect(batch.map((r) => r.status)).toEqual(Array(20).fill(401));
      }
    } finally {
      run.child.kill("SIGTERM");
      run.child.stdout!.resume();
    }
    expect(await run.exit).toBe(0);
    const records = run
      .stdout()
      .split("\n")
      .filter((line) => line.includes('"audit":true'))
      .map((line) => JSON.parse(line) as { request_id: string; status: number });
    expect(records).toHaveLength(requests);
    expect(new Set(records.map((r) => r.request_id)).size).toBe(requests);
    expect(records.every((r) => r.status === 401)).toBe(true);
  }, 120_000);

  it("reloads config and registry on SIGHUP; a broken config is logged and the running one kept", async () => {
    const keys = await ensureDevKeys(join(tmp.dir, "keys"));
    const upstream = await fakeUpstream(async (req, res) => {
      const msg = (await readJsonBody(req)) as { id: number };
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ jsonrpc: "2.0", id: msg.id, result: {} }));
    });
    const registry = (servers: string[]) =>
      writeFileSync(
        join(tmp.dir, "reload-registry.yaml"),
        stringify({
          version: servers.join("+"),
          servers: servers.map((name) => ({ name, upstreams: [upstream.url] })),
        }),
      );
    const gateway = (extra: Record<string, unknown> = {}) =>
      writeFileSync(
        join(tmp.dir, "reload.yaml"),
        stringify({
          registry: "reload-registry.yaml",
          auth: {
            issuers: [{ issuer: DEV_ISSUER, audiences: ["mcp-gateway"], jwks: { file: keys.jwksFile } }],
          },
          roles: { all: { rules: [{ effect: "allow", tools: ["*/*"] }] } },
          agents: { tester: { roles: ["all"] } },
          sessions: { keys: [{ file: "session.key" }] },
          ...extra,
        }),
      );
    writeFileSync(join(tmp.dir, "session.key"), "k".repeat(32) + "\n");
    registry(["one"]);
    gateway();
    const run = cli(["edge", "--config", join(tmp.dir, "reload.yaml"), "--port", "0", "--admin-port", "0"]);
    try {
      const { edge, admin } = await untilFound(run, edgeAddresses, "the edge's start line");
      const token = await signDevToken(keys.privateJwk, { subject: "tester" });
      const ping = (server: string) =>
        httpCall(`${edge}/mcp/${server}`, {
          headers: { ...MCP_HEADERS, authorization: `Bearer ${token}` },
          body: rpc("ping"),
        });
      expect((await ping("one")).status).toBe(200);
      expect((await ping("two")).status).toBe(404);

      registry(["one", "two"]);
      run.child.kill("SIGHUP");
      await until(run, /"registry_version":"one\+two".*"msg":"config reloaded"/);
      expect((await ping("two")).status).toBe(200);

      gateway({ edgee: {} });
      run.child.kill("SIGHUP");
      await until(run, /config reload rejected/);
      expect(run.stdout()).toContain("unknown key 'edgee'");
      expect((await ping("two")).status).toBe(200);
      expect(run.child.exitCode).toBeNull();

      const metrics = (await httpCall(`${admin}/metrics`, { method: "GET" })).text;
      expect(metrics).toContain('mcp_gateway_config_reloads_total{result="applied"} 1');
      expect(metrics).toContain('mcp_gateway_config_reloads_total{result="rejected"} 1');
      expect(run.stdout()).not.toContain("no sessions.keys");
    } finally {
      run.child.kill("SIGTERM");
      await upstream.close();
    }
    expect(await run.exit).toBe(0);
  });

  it("refuses to start on an invalid config, naming the problem", async () => {
    writeFileSync(join(tmp.dir, "bad.yaml"), "registry: registry.yaml\nedgee: {}\n");
    const run = cli(["edge", "--config", join(tmp.dir, "bad.yaml")]);
    expect(await run.exit).toBe(1);
    expect(run.stdout()).toContain("unknown key 'edgee'");
  });
});
