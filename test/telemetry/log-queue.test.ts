import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

/**
 * The log is written asynchronously (a queue in front of stdout). A reader that falls behind must
 * not grow the gateway's memory without bound: past the queue's bound lines are dropped, counted
 * in a metric and reported on stderr; what was queued is still written.
 */
describe("the log queue", () => {
  it("drops, counts and reports lines past its bound; writes every line it kept", async () => {
    const dir = mkdtempSync(join(tmpdir(), "mcp-gw-logq-"));
    try {
      const src = (name: string) => fileURLToPath(new URL(`../../ext-service/src/${name}`, import.meta.url));
      const script = join(dir, "flood.mts");
      writeFileSync(
        script,
        `import { createLogger, stdoutDestination } from ${JSON.stringify(src("telemetry/logger.ts"))};
import { Metrics } from ${JSON.stringify(src("telemetry/metrics.ts"))};
const log = createLogger("info", stdoutDestination(16 * 1024));
// One synchronous burst: the first write is still in flight when the queue fills.
for (let i = 0; i < 5000; i++) log.info({ n: i, pad: "x".repeat(100) }, "line");
void new Metrics(false).registry.getSingleMetricAsString("mcp_gateway_log_lines_dropped_total").then((metrics) => {
  process.stderr.write("METRIC " + metrics.split("\\n").filter((l) => !l.startsWith("#")).join(" ") + "\\n");
});
`,
      );
      const child = spawn(process.execPath, ["--import", "tsx", script], {
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
      child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      const code = await new Promise<number | null>((resolve) => child.on("close", resolve));

      expect(code).toBe(0);
      const kept = stdout
        .split("\n")
        .filter(Boolean)
        .map((l) => (JSON.parse(l) as { n: number }).n);
      const dropped = Number(/mcp_gateway_log_lines_dropped_total (\d+)/.exec(stderr)?.[1]);
      expect(dropped).toBeGreaterThan(0);
      expect(kept.length + dropped).toBe(5000);
      // What was kept is written whole and in order, starting with the first line.
      expect(kept[0]).toBe(0);
      expect(kept).toEqual([...kept].sort((a, b) => a - b));
      expect(stderr).toMatch(/mcp-gateway: \d+ log line\(s\) dropped: stdout's reader is not keeping up/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  it("writes lines that arrive apart in shared writes, each within the flush delay, and all by exit", async () => {
    const dir = mkdtempSync(join(tmpdir(), "mcp-gw-logq-"));
    try {
      const src = (name: string) => fileURLToPath(new URL(`../../ext-service/src/${name}`, import.meta.url));
      const script = join(dir, "trickle.mts");
      writeFileSync(
        script,
        `import fs from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { createLogger, stdoutDestination } from ${JSON.stringify(src("telemetry/logger.ts"))};
let writes = 0;
const write = fs.write;
fs.write = (...args) => {
  writes++;
  return write(...args);
};
const log = createLogger("info", stdoutDestination());
// One line every 2 ms, as audit lines at 500 requests a second.
for (let i = 0; i < 40; i++) {
  log.info({ n: i }, "line");
  await sleep(2);
}
// A last line alone: written by the flush timer while the process still runs.
log.info({ n: 40 }, "line");
const written = Date.now();
process.stderr.write("LAST " + written + "\\n");
await sleep(1500);
process.stderr.write("WRITES " + writes + "\\n");
log.info({ n: 41 }, "line");
// The last line: written on exit (the flush timer does not hold the process).
`,
      );
      const child = spawn(process.execPath, ["--import", "tsx", script], {
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stdout = "";
      let stderr = "";
      let lastSeenAt: number | undefined;
      child.stdout.on("data", (d: Buffer) => {
        stdout += d.toString();
        if (lastSeenAt === undefined && stdout.includes('"n":40')) lastSeenAt = Date.now();
      });
      child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      const code = await new Promise<number | null>((resolve) => child.on("close", resolve));

      expect(code, stderr).toBe(0);
      const lines = stdout
        .split("\n")
        .filter(Boolean)
        .map((l) => (JSON.parse(l) as { n: number }).n);
      expect(lines).toEqual(Array.from({ length: 42 }, (_, i) => i));
      const writes = Number(/WRITES (\d+)/.exec(stderr)?.[1]);
      // Each line on its own would be 41 writes; 40 lines over at least 80 ms share about 8.
      expect(writes).toBeGreaterThan(0);
      expect(writes).toBeLessThanOrEqual(20);
      // The line after the trickle came out while the process waited, not at its exit.
      const lastWrittenAt = Number(/LAST (\d+)/.exec(stderr)?.[1]);
      expect(lastSeenAt! - lastWrittenAt).toBeLessThan(1000);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
