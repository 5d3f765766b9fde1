import { execFile, spawn, type ChildProcess } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join, relative, sep } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { edgeAddresses, serveAddresses, untilOutput } from "../state/support.js";

// The shipped package, as the image gets it: `npm pack` (package.json `files`), the tarball
// unpacked into an empty folder and its production dependencies installed from the lockfile
// (the Dockerfile's runtime stage runs the same commands). Every command below runs from that
// folder through a symlink to the bin, as npx, a global install and node_modules/.bin run it.

const ROOT = join(import.meta.dirname, "..", "..");
const run = promisify(execFile);

const work = mkdtempSync(join(tmpdir(), "mcp-gw-pack-"));
const app = join(work, "app");
const bin = join(work, "bin", "mcp-gateway");
const elsewhere = join(work, "cwd");
let packed: string[] = [];

interface Cli {
  code: number;
  stdout: string;
  stderr: string;
}

async function cli(args: string[]): Promise<Cli> {
  try {
    const { stdout, stderr } = await run(process.execPath, [bin, ...args], { cwd: elsewhere });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === "number" ? e.code : -1, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
  }
}

interface Started {
  child: ChildProcess;
  output(): string;
  exit: Promise<number | null>;
}

function start(args: string[], script = bin, env: NodeJS.ProcessEnv = process.env): Started {
  const child = spawn(process.execPath, [script, ...args], {
    cwd: elsewhere,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const exit = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return { child, output: () => out, exit };
}

function waitForOutput(proc: Started, pattern: RegExp): Promise<RegExpMatchArray> {
  return waitForFound(proc, (out) => pattern.exec(out) ?? undefined, String(pattern));
}

function waitForFound<T>(proc: Started, find: (output: string) => T | undefined, what: string): Promise<T> {
  return untilOutput(proc.child, proc.output, find, what, 90_000);
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

const running: Started[] = [];
afterAll(async () => {
  for (const proc of running) {
    if (proc.child.exitCode === null) {
      proc.child.kill("SIGKILL");
      await proc.exit;
    }
  }
  // Removing the installed node_modules tree alone can take over 30 s on the loaded machine.
  rmSync(work, { recursive: true, force: true });
}, 180_000);

beforeAll(async () => {
  // prepack builds dist/ first, so the tarball never holds a stale build.
  const { stdout } = await run("npm", ["pack", "--json", "--silent", "--pack-destination", work], {
    cwd: ROOT,
    maxBuffer: 16 * 1024 * 1024,
  });
  const report = JSON.parse(stdout.slice(stdout.indexOf("["))) as {
    filename: string;
    files: { path: string }[];
  }[];
  packed = report[0]!.files.map((f) => f.path);
  mkdirSync(app);
  await run("tar", ["-xzf", join(work, report[0]!.filename), "-C", app, "--strip-components=1"]);
  cpSync(join(ROOT, "package-lock.json"), join(app, "package-lock.json"));
  // --offline: the cache `npm ci` filled for this checkout has every locked tarball.
  await run("npm", ["ci", "--omit=dev", "--offline", "--no-audit", "--no-fund"], { cwd: app });
  mkdirSync(join(work, "bin"));
  mkdirSync(elsewhere);
  symlinkSync(join(app, "dist", "ext-service", "src", "cli.js"), bin);
}, 480_000);

// Each case starts the installed CLI in a child process: seconds each on a loaded 2-core machine.
describe("the packed package (npm pack = the image's content)", { timeout: 150_000 }, () => {
  it("ships the build, the protos, the demo config and registry, and nothing of the test or bench trees", () => {
    for (const file of [
      "package.json",
      "README.md",
      "dist/ext-service/src/cli.js",
      "dist/examples/servers/run.js",
      "proto/grpc/health/v1/health.proto",
      "examples/gateway.yaml",
      "registry/registry.yaml",
      "schemas/gateway.schema.json",
      "console/index.html",
      "console/app.js",
      "console/shared.js",
      "console/pages/approvals.js",
      "console/console.css",
    ]) {
      expect(packed, file).toContain(file);
    }
    // The console serves every file under console/ (routes.ts reads the tree): all of them ship.
    const consoleTree = readdirSync(join(ROOT, "console"), { recursive: true, withFileTypes: true })
      .filter((entry) => entry.isFile())
      .map((entry) => relative(ROOT, join(entry.parentPath, entry.name)).split(sep).join("/"));
    expect(consoleTree).toContain("console/pages/overview.js");
    expect(packed).toEqual(expect.arrayContaining(consoleTree));
    expect(packed.filter((f) => /^(test|bench|dist\/bench|envoy|deploy|k6|docs)\//.test(f))).toEqual([]);
    expect(packed.filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts"))).toEqual([]);
    // Only production dependencies were installed next to it.
    expect(existsSync(join(app, "node_modules", "@grpc", "grpc-js"))).toBe(true);
    expect(existsSync(join(app, "node_modules", "vitest"))).toBe(false);
    expect(readdirSync(app).sort()).toEqual(
      [
        "README.md",
        "console",
        "dist",
        "examples",
        "node_modules",
        "package-lock.json",
        "package.json",
        "proto",
        "registry",
        "schemas",
      ].sort(),
    );
  });

  it("prints usage through a symlinked bin", async () => {
    const help = await cli(["--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: mcp-gateway <command>/m);
    const serveHelp = await cli(["serve", "--help"]);
    expect(serveHelp.code).toBe(0);
    expect(serveHelp.stdout).toMatch(/^Usage: mcp-gateway serve --config/);
  });

  let keysDir = "";
  let config = "";
  it("mints a dev token and validates a config that uses the shipped registry", async () => {
    keysDir = join(work, "keys");
    const token = await cli(["token", "--sub", "research-bot", "--keys", keysDir, "--init-key"]);
    expect(token.code).toBe(0);
    expect(token.stdout.trim()).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    config = join(work, "gateway.yaml");
    writeFileSync(
      config,
      stringify({
        registry: join(app, "registry", "registry.yaml"),
        listen: {
          grpc: { host: "127.0.0.1", port: 0 },
          admin: { host: "127.0.0.1", port: 0 },
          edge: { host: "127.0.0.1", port: 0 },
        },
        auth: {
          mode: "required",
          issuers: [
            {
              issuer: "mcp-gateway-dev",
              audiences: ["mcp-gateway"],
              jwks: { file: join(keysDir, "jwks.json") },
              algorithms: ["ES256"],
            },
          ],
        },
        roles: { reader: { rules: [{ effect: "allow", tools: ["kb/*"] }] } },
        agents: { "research-bot": { roles: ["reader"] } },
        shutdownGrace: "1s",
        drainDelay: "0s",
        logLevel: "info",
      }),
    );
    const valid = await cli(["validate", "--config", config]);
    expect(valid.stderr).toBe("");
    expect(valid.code).toBe(0);
    expect(valid.stdout).toMatch(/: valid \(registry /);
  });

  it("fails validate with exit 1 on a broken config, naming the problem", async () => {
    const broken = join(work, "broken.yaml");
    writeFileSync(
      broken,
      stringify({
        registry: join(app, "registry", "registry.yaml"),
        auth: { mode: "open-door" },
        roles: { reader: { rules: [{ effect: "allow", tools: ["kb/*"] }] } },
      }),
    );
    const result = await cli(["validate", "--config", broken]);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe("");
    expect(result.stderr).toMatch(/broken\.yaml:\d+:\d+: auth\.mode: /);
  });

  it("starts serve: /readyz answers 200 and the gRPC port accepts connections; SIGTERM stops it with 0", async () => {
    const serve = start(["serve", "--config", config]);
    running.push(serve);
    const started = await waitForFound(serve, serveAddresses, "serve's start line");
    expect(started.grpcHost).toBe("127.0.0.1");
    expect(started.admin).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const ready = await fetch(`${started.admin}/readyz`);
    expect(ready.status).toBe(200);
    expect(await portOpen(started.grpcPort)).toBe(true);
    serve.child.kill("SIGTERM");
    expect(await serve.exit).toBe(0);
  }, 150_000);

  it("starts edge: /readyz answers 200 and an MCP request without a token gets the 401 challenge", async () => {
    const edge = start(["edge", "--config", config]);
    running.push(edge);
    const started = await waitForFound(edge, edgeAddresses, "the edge's start line");
    expect(started.edge).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(started.admin).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect((await fetch(`${started.admin}/readyz`)).status).toBe(200);
    const denied = await fetch(`${started.edge}/mcp/kb`, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json, text/event-stream" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" }),
    });
    expect(denied.status).toBe(401);
    expect(denied.headers.get("www-authenticate")).toMatch(/^Bearer .*resource_metadata=/);
    edge.child.kill("SIGTERM");
    expect(await edge.exit).toBe(0);
  }, 150_000);

  it("starts a demo MCP server the way compose does (the image's dist/examples/servers/run.js)", async () => {
    const script = join(app, "dist", "examples", "servers", "run.js");
    const demo = start(["kb"], script, { ...process.env, HOST: "127.0.0.1", PORT: "0" });
    running.push(demo);
    const m = await waitForOutput(demo, /listening on http:\/\/127\.0\.0\.1:(\d+)/);
    expect(await portOpen(Number(m[1]))).toBe(true);
    demo.child.kill("SIGTERM");
    expect(await demo.exit).toBe(0);
  }, 150_000);
});
