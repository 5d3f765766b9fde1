import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { denyExchange, newExchange } from "../../ext-service/src/policy/exchange.js";
import { AuditTrail } from "../../ext-service/src/telemetry/audit.js";
import { createLogger } from "../../ext-service/src/telemetry/logger.js";
import { Metrics } from "../../ext-service/src/telemetry/metrics.js";

function capture(level = "info") {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger(level, { write: (line: string) => void lines.push(JSON.parse(line)) });
  return { lines, logger };
}

describe("AuditTrail", () => {
  it("writes exactly one record per exchange, on the logger's stream with its base fields", async () => {
    const { lines, logger } = capture();
    const metrics = new Metrics(false);
    const audit = new AuditTrail(logger, metrics, "edge", () => 1_500);
    const exchange = newExchange("req-1", "POST", 1_000);
    exchange.server = "kb";
    exchange.methods.push("tools/call");
    exchange.tools.push("search");
    exchange.principal = { agent: "bot", roles: [], claims: {}, issuer: "i", anonymous: false };

    const record = audit.finish(exchange, 200);
    expect(audit.finish(exchange, 500)).toBeUndefined();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      level: 30,
      service: "mcp-gateway",
      msg: "audit",
      audit: true,
      request_id: "req-1",
      plane: "edge",
      agent: "bot",
      server: "kb",
      status: 200,
      methods: ["tools/call"],
      tools: ["search"],
      decision: "allow",
      latency_ms: 500,
    });
    expect(record).toMatchObject({ request_id: "req-1", status: 200 });
    const counted = await metrics.registry.getSingleMetricAsString("mcp_gateway_requests_total");
    expect(counted).toContain('server="kb",method="tools/call",decision="allow"} 1');
  });

  it("follows the logger's level: no records below info", () => {
    const { lines, logger } = capture("warn");
    new AuditTrail(logger, new Metrics(false), "envoy").finish(newExchange("req-2", "GET", 0), 200);
    expect(lines).toHaveLength(0);
  });

  it("leaves redaction on for every other log line of the same logger", () => {
    const { lines, logger } = capture();
    new AuditTrail(logger, new Metrics(false), "edge");
    logger.info({ token: "secret-token", headers: { authorization: "Bearer x" } }, "other");
    expect(lines[0]).toMatchObject({ token: "[redacted]", headers: { authorization: "[redacted]" } });
  });

  it("finishSoon: the record is taken at once and written at the end of the event-loop turn", async () => {
    const { lines, logger } = capture();
    const audit = new AuditTrail(logger, new Metrics(false), "envoy");
    const exchange = newExchange("req-3", "POST", 0);
    exchange.methods.push("tools/call");
    const record = audit.finishSoon(exchange, 403);
    expect(record).toMatchObject({ request_id: "req-3", status: 403, methods: ["tools/call"] });
    expect(lines).toHaveLength(0);
    // Later changes to the exchange, and later finish calls, change nothing.
    denyExchange(exchange, "internal_error");
    exchange.methods.push("ping");
    expect(audit.finish(exchange, 500)).toBeUndefined();
    expect(audit.finishSoon(exchange, 500)).toBeUndefined();
    await new Promise((resolve) => setImmediate(resolve));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      request_id: "req-3",
      status: 403,
      methods: ["tools/call"],
      reasons: [],
    });
  });

  it("flush() writes waiting records at once", () => {
    const { lines, logger } = capture();
    const audit = new AuditTrail(logger, new Metrics(false), "envoy");
    audit.finishSoon(newExchange("req-4", "POST", 0), 200);
    audit.finishSoon(newExchange("req-5", "POST", 0), 200);
    audit.flush();
    expect(lines.map((l) => l.request_id)).toEqual(["req-4", "req-5"]);
  });

  it("a process that exits before the turn ends still writes its waiting records", () => {
    const dir = mkdtempSync(join(tmpdir(), "mcp-gw-audit-"));
    try {
      const src = (name: string) => fileURLToPath(new URL(`../../ext-service/src/${name}`, import.meta.url));
      const script = join(dir, "exit.ts");
      writeFileSync(
        script,
        `import { AuditTrail } from ${JSON.stringify(src("telemetry/audit.ts"))};
import { createLogger } from ${JSON.stringify(src("telemetry/logger.ts"))};
import { Metrics } from ${JSON.stringify(src("telemetry/metrics.ts"))};
import { newExchange } from ${JSON.stringify(src("policy/exchange.ts"))};
const audit = new AuditTrail(createLogger("info"), new Metrics(false), "envoy");
audit.finishSoon(newExchange("req-exit", "POST", 0), 200);
process.exit(0);
`,
      );
      const out = execFileSync(process.execPath, ["--import", "tsx", script], { encoding: "utf8" });
      const records = out
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(records.filter((r) => r.audit === true && r.request_id === "req-exit")).toHaveLength(1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  describe("writes the very line pino writes for the record", () => {
    function rawCapture(options: pino.LoggerOptions = {}) {
      const lines: string[] = [];
      const logger = pino(
        {
          base: { service: "mcp-gateway" },
          timestamp: pino.stdTimeFunctions.isoTime,
          redact: { paths: ["token", "*.token"], censor: "[redacted]" },
          ...options,
        },
        { write: (line: string) => void lines.push(line) },
      );
      return { lines, logger };
    }
    const untimed = (line: string) => line.replace(/"time":"[^"]*"/, '"time":"T"');

    function exchangeWithEverything() {
      const exchange = newExchange('req-"9\u2028', "POST", 1_000);
      exchange.traceId = "0af7651916cd43dd8448eb211c80319c";
      exchange.server = "kb";
      exchange.principal = { agent: "b\u00f6t\n", roles: [], claims: {}, issuer: "i", anonymous: false };
      exchange.methods.push("tools/call", "notifications/progress");
      exchange.tools.push("search");
      exchange.counters["dlp:email"] = 2;
      denyExchange(exchange, "tool_pin_mismatch");
      return exchange;
    }

    it("byte for byte, but for the time", () => {
      const { lines, logger } = rawCapture();
      const record = new AuditTrail(logger, new Metrics(false), "edge", () => 1_234.5678).finish(
        exchangeWithEverything(),
        403,
      );
      logger.child({}, { redact: [] }).info(record, "audit");
      expect(lines).toHaveLength(2);
      expect(untimed(lines[0]!)).toBe(untimed(lines[1]!));
      expect(JSON.parse(lines[0]!)).toMatchObject({ level: 30, service: "mcp-gateway", msg: "audit" });
    });

    it("as pino does after the logger's bindings change", () => {
      const { lines, logger } = rawCapture();
      const audit = new AuditTrail(logger, new Metrics(false), "edge", () => 10);
      const twin = logger.child({}, { redact: [] }); // what the trail logs through
      logger.setBindings({ region: "eu" });
      twin.info(audit.finish(newExchange("req-3", "GET", 0), 200), "audit");
      expect(lines).toHaveLength(2);
      expect(untimed(lines[0]!)).toBe(untimed(lines[1]!));
    });

    it("through pino itself when the logger changes lines (mixin, hooks, formatters, prefix)", () => {
      const variants: pino.LoggerOptions[] = [
        { mixin: () => ({ extra: 1 }) },
        { hooks: { streamWrite: (s: string) => s.replace("{", '{"extra":1,') } },
        { formatters: { log: (o: Record<string, unknown>) => ({ ...o, extra: 1 }) } },
        { msgPrefix: "[gw] " },
        { nestedKey: "payload" },
        { serializers: { tools: (t: string[]) => t.length } },
      ];
      for (const options of variants) {
        const { lines, logger } = rawCapture(options);
        const record = new AuditTrail(logger, new Metrics(false), "edge", () => 10).finish(
          exchangeWithEverything(),
          403,
        );
        logger.child({}, { redact: [] }).info(record, "audit");
        expect(lines).toHaveLength(2);
        expect(untimed(lines[0]!)).toBe(untimed(lines[1]!));
      }
    });
  });
});
