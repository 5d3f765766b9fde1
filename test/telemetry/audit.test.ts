import { describe, expect, it } from "vitest";
import { newExchange } from "../../ext-service/src/policy/exchange.js";
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
});
