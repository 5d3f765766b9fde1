import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe } from "vitest";

/**
 * A real redis-server for tests, on a free port of its own. Outside CI, a machine without
 * redis-server skips these tests with a notice; in CI (CI=true) a missing redis-server fails the
 * run, since .ci/run installs it.
 */
export const redisServerPath: string | undefined = (() => {
  const found = spawnSync("redis-server", ["--version"], { encoding: "utf8" });
  return found.status === 0 ? "redis-server" : undefined;
})();

if (!redisServerPath) {
  if (process.env.CI === "true") {
    throw new Error("redis-server is not on PATH: CI must install it (see .ci/run)");
  }
  process.stderr.write(
    "\n*** redis-server not found on PATH: the Redis tests are SKIPPED (apt-get install redis-server) ***\n\n",
  );
}

/** describe() when redis-server is available, describe.skip() otherwise. */
export const describeWithRedis = redisServerPath ? describe : describe.skip;

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      const port = typeof address === "object" && address ? address.port : 0;
      probe.close(() => resolve(port));
    });
  });
}

export interface TestRedis {
  port: number;
  url: string;
  /** Stops the server (SIGTERM, waits for exit). Data is not kept: nothing is persisted. */
  stop(): Promise<void>;
  /** Starts it again on the same port. */
  start(): Promise<void>;
  /** Stops it for good and removes its directory. */
  close(): Promise<void>;
}

export async function startRedis(extraArgs: string[] = []): Promise<TestRedis> {
  if (!redisServerPath) throw new Error("redis-server is not available");
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "mcp-gw-redis-"));
  let child: ChildProcess | undefined;

  const start = () =>
    new Promise<void>((resolve, reject) => {
      const proc = spawn(
        redisServerPath!,
        [
          "--port",
          String(port),
          "--bind",
          "127.0.0.1",
          "--save",
          "",
          "--appendonly",
          "no",
          "--dir",
          dir,
          ...extraArgs,
        ],
        { stdio: ["ignore", "pipe", "pipe"] },
      );
      let output = "";
      const onData = (data: Buffer) => {
        output += data.toString();
        if (output.includes("Ready to accept connections")) {
          proc.stdout.off("data", onData);
          proc.stdout.resume();
          resolve();
        }
      };
      proc.stdout.on("data", onData);
      proc.stderr.resume();
      proc.once("exit", (code) => {
        if (child === proc) child = undefined;
        reject(new Error(`redis-server exited (${code}) before it was ready:\n${output}`));
      });
      child = proc;
    });

  const stop = async () => {
    const proc = child;
    if (!proc) return;
    child = undefined;
    await new Promise<void>((resolve) => {
      proc.once("exit", () => resolve());
      proc.kill("SIGTERM");
    });
  };

  await start();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    stop,
    start,
    async close() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
