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
});
