import { readFileSync } from "node:fs";
import type { Server } from "node:http";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEnvoyRoleFront, type EnvoyRoleFront } from "../../ext-service/src/envoy/envoy-role-front.js";
import { boundPort, startAdminServer } from "../../ext-service/src/telemetry/admin.js";
import { createLogger } from "../../ext-service/src/telemetry/logger.js";
import { Metrics } from "../../ext-service/src/telemetry/metrics.js";
import {
  fakeUpstream,
  httpCall,
  MCP_HEADERS,
  readJsonBody,
  startGateway,
  type Gateway,
} from "../e2e/harness.js";

/**
 * Every metric the Grafana dashboard queries exists: the mcp_gateway_* ones in a scrape of
 * /metrics of each plane (the local edge's admin port, and the ext-service's behind the
 * Envoy-role front), after a tools/call went through each; Envoy's in Envoy's documented
 * statistics (ENVOY_STATS, with where each is documented).
 */

const ROOT = join(import.meta.dirname, "../..");

interface Panel {
  title: string;
  targets?: { expr: string }[];
}

/**
 * The Envoy statistics the dashboard may use, by their Prometheus name. Envoy's /stats/prometheus
 * writes `envoy_` + the stat name with dots as underscores, after the default tag extractors
 * (source/common/config/well_known_names.cc) moved the variable parts (cluster name, connection
 * manager prefix, response code class, filter prefixes) into labels.
 */
const ENVOY_STATS: Record<string, { stat: string; source: string }> = {
  envoy_cluster_upstream_rq_time_bucket: {
    stat: "cluster.<name>.upstream_rq_time (histogram)",
    source: "docs/root/configuration/upstream/cluster_manager/cluster_stats.rst (general)",
  },
  envoy_cluster_upstream_rq_xx: {
    stat: "cluster.<name>.upstream_rq_<*xx> (tag envoy_response_code_class)",
    source: "cluster_stats.rst (dynamic HTTP statistics); well_known_names.cc RESPONSE_CODE_CLASS",
  },
  envoy_cluster_upstream_cx_connect_fail: {
    stat: "cluster.<name>.upstream_cx_connect_fail",
    source: "cluster_stats.rst (general)",
  },
  envoy_cluster_upstream_rq_timeout: {
    stat: "cluster.<name>.upstream_rq_timeout",
    source: "cluster_stats.rst (general)",
  },
  envoy_cluster_membership_healthy: {
    stat: "cluster.<name>.membership_healthy",
    source: "cluster_stats.rst (general)",
  },
  envoy_cluster_outlier_detection_ejections_active: {
    stat: "cluster.<name>.outlier_detection.ejections_active",
    source: "cluster_stats.rst (outlier detection statistics)",
  },
  envoy_cluster_circuit_breakers_default_rq_open: {
    stat: "cluster.<name>.circuit_breakers.default.rq_open",
    source: "cluster_stats.rst (circuit breakers statistics, priority default)",
  },
  envoy_cluster_circuit_breakers_default_cx_open: {
    stat: "cluster.<name>.circuit_breakers.default.cx_open",
    source: "cluster_stats.rst (circuit breakers statistics, priority default)",
  },
  envoy_http_downstream_rq_time_bucket: {
    stat: "http.<stat_prefix>.downstream_rq_time (histogram)",
    source: "docs/root/configuration/http/http_conn_man/stats.rst",
  },
  envoy_http_local_rate_limit_rate_limited: {
    stat: "<stat_prefix>.http_local_rate_limit.rate_limited (tag envoy_local_http_ratelimit_prefix)",
    source: "docs/root/configuration/http/http_filters/local_rate_limit_filter.rst (statistics)",
  },
  envoy_http_ext_authz_denied: {
    stat: "http.<stat_prefix>.ext_authz.<filter stat_prefix>.denied (tag envoy_ext_authz_prefix)",
    source:
      "source/extensions/filters/http/ext_authz/ext_authz.h generateStats; names as in ext_authz_filter.rst (ok, error, denied)",
  },
  envoy_http_ext_authz_error: {
    stat: "http.<stat_prefix>.ext_authz.<filter stat_prefix>.error",
    source: "as envoy_http_ext_authz_denied",
  },
  // The ext_proc names are matched by regular expression in the dashboard
  // ({__name__=~"envoy_http_.*ext_proc.*_<stat>"}), for whichever prefix tags Envoy extracts.
  streams_failed: {
    stat: "http.<stat_prefix>.ext_proc.streams_failed",
    source: "docs/root/configuration/http/http_filters/ext_proc_filter.rst (statistics)",
  },
  message_timeouts: { stat: "http.<stat_prefix>.ext_proc.message_timeouts", source: "ext_proc_filter.rst" },
  spurious_msgs_received: {
    stat: "http.<stat_prefix>.ext_proc.spurious_msgs_received",
    source: "ext_proc_filter.rst",
  },
};

/**
 * Labels Envoy's default tag extractors make (source/common/config/well_known_names.cc:
 * CLUSTER_NAME `cluster.$.**`, HTTP_CONN_MANAGER_PREFIX `http.$.**`, RESPONSE_CODE_CLASS
 * `_rq_(\d)xx`, LOCAL_HTTP_RATELIMIT_PREFIX `$.http_local_rate_limit.**`, EXT_AUTHZ_PREFIX).
 */
const ENVOY_TAGS = [
  "envoy_cluster_name",
  "envoy_http_conn_manager_prefix",
  "envoy_response_code_class",
  "envoy_local_http_ratelimit_prefix",
  "envoy_ext_authz_prefix",
];

/** Metric names in a Prometheus text exposition: every `# TYPE` and every sample's name. */
function exposed(text: string): Set<string> {
  const names = new Set<string>();
  for (const line of text.split("\n")) {
    const type = /^# TYPE (\S+) (\S+)/.exec(line);
    if (type) {
      names.add(type[1]!);
      if (type[2] === "histogram") for (const s of ["_bucket", "_sum", "_count"]) names.add(type[1]! + s);
      continue;
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]/.exec(line);
    if (sample) names.add(sample[1]!);
  }
  return names;
}

const dashboard = JSON.parse(
  readFileSync(join(ROOT, "deploy/grafana/dashboards/mcp-gateway.json"), "utf8"),
) as {
  panels: Panel[];
};
const queries = dashboard.panels.flatMap((p) =>
  (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })),
);

let upstream: Awaited<ReturnType<typeof fakeUpstream>>;
let gw: Gateway;
let edgeAdmin: Server;
let front: EnvoyRoleFront;
let scrapes: { edge: Set<string>; envoy: Set<string> };

beforeAll(async () => {
  upstream = await fakeUpstream((req, res) => {
    void readJsonBody(req).then((body) => {
      const id = (body as { id: number }).id;
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ jsonrpc: "2.0", id, result: { content: [] } }));
    });
  });
  gw = await startGateway({
    servers: [{ name: "ops", upstreams: [upstream.url], tools: [{ name: "status" }] }],
    security: { pins: { verifyBeforeCall: false } },
  });
  edgeAdmin = await startAdminServer(gw.metrics, { ready: () => true }, "127.0.0.1", 0);
  front = await startEnvoyRoleFront({
    extService: { engine: gw.engine, logger: createLogger("silent"), metrics: new Metrics() },
  });
  const token = await gw.token("tester");
  for (const base of [gw.edge.url, front.url]) {
    for (const name of ["status", "nope"]) {
      await httpCall(`${base}/mcp/ops`, {
        headers: { ...MCP_HEADERS, authorization: `Bearer ${token}` },
        body: JSON.stringify({
          jsonrpc: "2.0",
          id: 1,
          method: "tools/call",
          params: { name, arguments: {} },
        }),
      });
    }
  }
  const scrape = async (port: number) => {
    const res = await httpCall(`http://127.0.0.1:${port}/metrics`, { method: "GET" });
    expect(res.status).toBe(200);
    return exposed(res.text);
  };
  scrapes = { edge: await scrape(boundPort(edgeAdmin)), envoy: await scrape(front.extService!.adminPort) };
});

afterAll(async () => {
  await front?.close();
  await new Promise<void>((r) => (edgeAdmin ? edgeAdmin.close(() => r()) : r()));
  await gw?.close();
  await upstream?.close();
});

describe("the Grafana dashboard's metrics", () => {
  it("names only mcp_gateway_* metrics that both planes expose (edge rows: the edge)", () => {
    let checked = 0;
    for (const { panel, expr } of queries) {
      for (const [name] of expr.matchAll(/\bmcp_gateway_[a-z_]+/g)) {
        checked++;
        expect(scrapes.edge, `${panel}: ${name} on the local edge's /metrics`).toContain(name);
        if (!panel.endsWith("(local edge)")) {
          expect(scrapes.envoy, `${panel}: ${name} on the ext-service's /metrics`).toContain(name);
        }
      }
    }
    expect(checked).toBeGreaterThanOrEqual(12);
    // The scrape is not vacuous: the calls made series of the new metrics on both planes.
    for (const plane of ["edge", "envoy"] as const) {
      expect(scrapes[plane]).toContain("mcp_gateway_tool_requests_total");
      expect(scrapes[plane]).toContain("mcp_gateway_denial_causes_total");
    }
  });

  it("names only Envoy statistics that Envoy documents", () => {
    let checked = 0;
    for (const { panel, expr } of queries) {
      // Metric names: what is left once grouping clauses and label matchers are taken out.
      const bare = expr.replace(/\b(by|without) \([^)]*\)/g, "").replace(/\{[^}]*\}/g, "");
      for (const [name] of bare.matchAll(/\benvoy_[a-z_]+/g)) {
        checked++;
        expect(ENVOY_STATS, `${panel}: ${name}`).toHaveProperty(name);
      }
      for (const [label] of expr.matchAll(/\benvoy_[a-z_]+(?=\s*(=|!|,|\)))/g)) {
        expect(ENVOY_TAGS, `${panel}: label ${label}`).toContain(label);
      }
      for (const [, stat] of expr.matchAll(/ext_proc\.\*_([a-z_]+)"/g)) {
        checked++;
        expect(ENVOY_STATS, `${panel}: ext_proc ${stat}`).toHaveProperty(stat!);
      }
    }
    expect(checked).toBeGreaterThanOrEqual(15);
  });
});
