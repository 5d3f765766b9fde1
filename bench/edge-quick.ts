/**
 * Latency the local edge adds to a tools/call, measured against the same demo server in the
 * same run. Three processes: the kb demo server, the edge (`mcp-gateway edge`) and this load
 * generator. Requests alternate between direct and through-the-edge at a fixed, modest rate
 * (open loop: latency counts from each request's scheduled start, so a stall is not hidden).
 *
 *   npx tsx bench/edge-quick.ts [--rate 150] [--seconds 10]
 *
 * --rate is per target (the total is twice that). Prints median, p90, p99 and max per target.
 * --profile-dir DIR writes a CPU profile of the edge process there (open it in Chrome DevTools).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { Pool } from "undici";
import { stringify } from "yaml";
import { DEV_ISSUER, ensureDevKeys, signDevToken } from "../ext-service/src/config/devkeys.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const { values } = parseArgs({
  options: {
    rate: { type: "string", default: "150" },
    seconds: { type: "string", default: "10" },
    "profile-dir": { type: "string" },
  },
});
const RATE = Number(values.rate);
const SECONDS = Number(values.seconds);
const WARMUP_SECONDS = 2;

function child(args: string[], ready: RegExp): Promise<{ proc: ChildProcess; match: RegExpMatchArray }> {
  const proc = spawn(process.execPath, ["--import", "tsx", ...args], {
    cwd: root,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  return new Promise((resolve, reject) => {
    const onData = (d: Buffer) => {
      out += d.toString();
      const m = ready.exec(out);
      if (m) {
        proc.stdout!.off("data", onData);
        proc.stdout!.resume();
        resolve({ proc, match: m });
      }
    };
    proc.stdout!.on("data", onData);
    proc.stderr!.on("data", (d: Buffer) => (out += d.toString()));
    proc.once("exit", (code) => reject(new Error(`${args.join(" ")} exited with ${code}:\n${out}`)));
  });
}

const ACCEPT = { "content-type": "application/json", accept: "application/json, text/event-stream" };

async function initialize(pool: Pool, path: string, auth: Record<string, string>): Promise<string> {
  const res = await pool.request({
    path,
    method: "POST",
    headers: { ...ACCEPT, ...auth },
    body: JSON.stringify({
      jsonrpc: "2.0",
      id: 0,
      method: "initialize",
      params: {
        protocolVersion: "2025-06-18",
        capabilities: {},
        clientInfo: { name: "bench", version: "1" },
      },
    }),
  });
  await res.body.text();
  const sid = res.headers["mcp-session-id"];
  if (res.statusCode !== 200 || typeof sid !== "string")
    throw new Error(`initialize via ${path}: ${res.statusCode}`);
  return sid;
}

interface Target {
  name: string;
  pool: Pool;
  path: string;
  headers: Record<string, string>;
  samples: number[];
  errors: number;
}

const CALL = JSON.stringify({
  jsonrpc: "2.0",
  id: 1,
  method: "tools/call",
  params: { name: "search_articles", arguments: { query: "refund policy" } },
});

async function once(t: Target, scheduled: number, record: boolean): Promise<void> {
  try {
    const res = await t.pool.request({ path: t.path, method: "POST", headers: t.headers, body: CALL });
    const text = await res.body.text();
    if (res.statusCode !== 200 || !text.includes('"result"')) throw new Error(`status ${res.statusCode}`);
    if (record) t.samples.push(performance.now() - scheduled);
  } catch {
    if (record) t.errors++;
  }
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

async function main(): Promise<void> {
  const tmp = mkdtempSync(join(tmpdir(), "edge-bench-"));
  const procs: ChildProcess[] = [];
  try {
    const kb = await child(
      [
        "--input-type=module",
        "-e",
        `const m = await import(${JSON.stringify(join(root, "examples/servers/kb.ts"))});
         const s = await m.startKbServer(0);
         console.log("KB " + s.url);`,
      ],
      /KB (\S+)/,
    );
    procs.push(kb.proc);
    const kbUrl = kb.match[1]!;

    const keys = await ensureDevKeys(join(tmp, "keys"));
    writeFileSync(
      join(tmp, "registry.yaml"),
      // the real registry entry for kb, pointed at this run's server
      stringify({
        version: "bench",
        servers: [
          {
            ...(await import("../ext-service/src/config/load.js"))
              .loadConfig(join(root, "examples/gateway.yaml"))
              .registry.servers.find((s) => s.name === "kb")!,
            upstreams: [kbUrl],
          },
        ],
      }),
    );
    writeFileSync(
      join(tmp, "gateway.yaml"),
      stringify({
        registry: "registry.yaml",
        auth: {
          issuers: [{ issuer: DEV_ISSUER, audiences: ["mcp-gateway"], jwks: { file: keys.jwksFile } }],
        },
        roles: { reader: { rules: [{ effect: "allow", tools: ["kb/*"] }] } },
        agents: { "bench-bot": { roles: ["reader"] } },
        edge: { rateLimit: { requestsPerSecond: 100_000, burst: 100_000 } },
        logLevel: "info", // audit records are part of the cost
      }),
    );
    const edge = await child(
      [
        ...(values["profile-dir"] ? ["--cpu-prof", "--cpu-prof-dir", values["profile-dir"]] : []),
        "ext-service/src/cli.ts",
        "edge",
        "--config",
        join(tmp, "gateway.yaml"),
        "--port",
        "0",
        "--admin-port",
        "0",
      ],
      /"edge":"(http:\/\/[^"]+)"/,
    );
    procs.push(edge.proc);

    const token = await signDevToken(keys.privateJwk, { subject: "bench-bot", ttl: "1h" });
    const kbOrigin = new URL(kbUrl);
    const direct: Target = {
      name: "direct",
      pool: new Pool(kbOrigin.origin, { connections: 16 }),
      path: kbOrigin.pathname,
      headers: {},
      samples: [],
      errors: 0,
    };
    const viaEdge: Target = {
      name: "edge",
      pool: new Pool(edge.match[1]!, { connections: 16 }),
      path: "/mcp/kb",
      headers: {},
      samples: [],
      errors: 0,
    };
    const auth = { authorization: `Bearer ${token}` };
    for (const [t, extra] of [
      [direct, {}],
      [viaEdge, auth],
    ] as const) {
      const sid = await initialize(t.pool, t.path, extra);
      t.headers = { ...ACCEPT, ...extra, "mcp-session-id": sid, "mcp-protocol-version": "2025-06-18" };
    }

    // Alternate: direct, edge, direct, edge ... at RATE per target.
    const interval = 1000 / (2 * RATE);
    const total = Math.round((WARMUP_SECONDS + SECONDS) * RATE * 2);
    const warmup = Math.round(WARMUP_SECONDS * RATE * 2);
    const start = performance.now() + 50;
    const inflight: Promise<void>[] = [];
    for (let i = 0; i < total; i++) {
      const scheduled = start + i * interval;
      const wait = scheduled - performance.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      inflight.push(once(i % 2 === 0 ? direct : viaEdge, scheduled, i >= warmup));
    }
    await Promise.all(inflight);

    const rows = [direct, viaEdge].map((t) => {
      const s = [...t.samples].sort((a, b) => a - b);
      return {
        t,
        p50: quantile(s, 0.5),
        p90: quantile(s, 0.9),
        p99: quantile(s, 0.99),
        max: s.at(-1) ?? NaN,
      };
    });
    const f = (n: number) => n.toFixed(2).padStart(8);
    console.log(
      `\ntools/call search_articles, ${RATE} req/s per target for ${SECONDS}s (after ${WARMUP_SECONDS}s warm-up), alternating, Node ${process.version}`,
    );
    console.log(`target      n  errors   p50 ms   p90 ms   p99 ms   max ms`);
    for (const r of rows) {
      console.log(
        `${r.t.name.padEnd(7)} ${String(r.t.samples.length).padStart(5)} ${String(r.t.errors).padStart(7)} ${f(r.p50)} ${f(r.p90)} ${f(r.p99)} ${f(r.max)}`,
      );
    }
    const [d, e] = rows as [(typeof rows)[0], (typeof rows)[0]];
    console.log(`added by the edge: median ${f(e.p50 - d.p50)} ms, p99 ${f(e.p99 - d.p99)} ms`);
    await direct.pool.close();
    await viaEdge.pool.close();
  } finally {
    for (const p of procs) {
      if (p.exitCode === null) {
        const exited = new Promise((r) => p.once("exit", r));
        p.kill("SIGTERM");
        await exited;
      }
    }
    rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
