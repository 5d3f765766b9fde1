import type { IncomingMessage, ServerResponse } from "node:http";
import { authorizeAdminCaller, fail, readJson, send } from "../approvals/admin-api.js";
import type { Approvals } from "../approvals/runtime.js";
import type { UpstreamStatus } from "../edge/upstream.js";
import type { StateStore } from "../state/store.js";
import type { AuditRecord, AuditTrail } from "../telemetry/audit.js";
import type { Logger } from "../telemetry/logger.js";
import type { Metrics } from "../telemetry/metrics.js";
import { accessPage, explainQuestion, sendsJson } from "./access.js";
import { budgetsPage } from "./budgets.js";
import type { GatewayEngine } from "../config/compile.js";
import { ClusterTraffic, overviewPage, TrafficRates } from "./overview.js";
import { registryPage } from "./registry.js";
import { checkPinsNow, serversToCheck } from "./pin-check.js";
import { PinVerifier } from "../upstream/pin-verifier.js";

/**
 * The admin console's JSON endpoints (docs/CONSOLE.md), under /console/api/:
 *   GET  session              who the token is: agent and access (admin or approver)
 *   GET  overview             per server: health, breakers, rates, drift, pending approvals
 *   GET  registry             servers and tools: pins, drift, usage; the diff to the file on disk
 *   POST registry/check       {"servers"?: [...]}: each server's tools/list fetched now and compared with the pins
 *   GET  audit?agent=&server=&tool=&decision=&reason=&limit=   recent audit records, newest first
 *   GET  access[?by=role]     the permission matrix: agents (or roles) by registered tools
 *   POST explain              {"agent","server","tool","arguments"?,...}: `mcp-gateway explain`'s answer
 *   GET  budgets              each budget's counters in the current period, from the state store
 *
 * Authenticated and Origin-checked exactly as the approvals admin API (authorizeAdminCaller),
 * and (but for session) for admins only: an approver's token decides approvals, it does not read
 * the audit trail. A POST must say its body is application/json, as the approvals admin API's
 * approve and deny do: a cross-site form cannot send that without a CORS preflight, which fails.
 */

const PREFIX = "/console/api/";
const MAX_LIMIT = 1000;
const DEFAULT_LIMIT = 200;

export interface ConsoleSources {
  /** The policy in force (it changes on reload). */
  engine(): GatewayEngine;
  approvals: Approvals;
  audit: AuditTrail;
  /** The state store: approvals, usage and budgets live in it. */
  store: StateStore;
  /** The process's metrics: the Overview's rates come from its request counter. */
  metrics: Metrics;
  /** The edge's upstream endpoints and breakers; absent behind Envoy (its clusters hold them). */
  upstreams?: () => UpstreamStatus[];
  /** Fetches servers' tools/list for "check pins now"; one of the console's own by default. */
  pinVerifier?: PinVerifier;
  logger: Logger;
}

/** The asker chooses these names (up to the body limit); the log keeps a bounded prefix. */
function bounded(text: string, max = 128): string {
  return text.length <= max ? text : `${text.slice(0, max)}…(${text.length} chars)`;
}

const AUDIT_FILTERS = ["agent", "server", "tool", "decision", "reason"] as const;

function auditMatches(record: AuditRecord, wanted: Partial<Record<(typeof AUDIT_FILTERS)[number], string>>) {
  return (
    (wanted.agent === undefined || record.agent === wanted.agent) &&
    (wanted.server === undefined || record.server === wanted.server) &&
    (wanted.tool === undefined || record.tools.includes(wanted.tool)) &&
    (wanted.decision === undefined || record.decision === wanted.decision) &&
    (wanted.reason === undefined || record.reasons.includes(wanted.reason))
  );
}

function auditPage(audit: AuditTrail, query: URLSearchParams, traceUrl: string | undefined): unknown {
  const wanted: Partial<Record<(typeof AUDIT_FILTERS)[number], string>> = {};
  for (const key of AUDIT_FILTERS) {
    const value = query.get(key)?.trim();
    if (value) wanted[key] = value;
  }
  const limit = Math.min(
    MAX_LIMIT,
    Math.max(1, Number.parseInt(query.get("limit") ?? "", 10) || DEFAULT_LIMIT),
  );
  const all = audit.recent.newestFirst();
  const records = all.filter((r) => auditMatches(r, wanted)).slice(0, limit);
  return {
    // A trace id is 32 hex digits (traceIdOf in policy/exchange.ts), safe in a URL as it is.
    records: traceUrl
      ? records.map((r) =>
          r.trace_id === null ? r : { ...r, trace_url: traceUrl.replaceAll("{trace_id}", r.trace_id) },
        )
      : records,
    kept: all.length,
    capacity: audit.recent.capacity,
  };
}

/** The route for the admin server: answers /console/api/...; other paths are left to the next route. */
export function consoleApi(sources: ConsoleSources): (req: IncomingMessage, res: ServerResponse) => boolean {
  const rates = new TrafficRates(sources.metrics);
  const verifier = sources.pinVerifier ?? new PinVerifier(sources.logger);
  const cluster = new ClusterTraffic(sources.store);
  return (req, res) => {
    const url = req.url ?? "/";
    const path = url.split("?")[0]!;
    if (!path.startsWith(PREFIX)) return false;
    const query = new URLSearchParams(url.split("?")[1] ?? "");
    serve(sources, { rates, cluster, verifier }, req, res, path.slice(PREFIX.length), query).catch(
      (err: unknown) => {
        sources.logger.error({ err }, "console API failed");
        if (!res.headersSent) fail(res, 500, "internal_error", "Internal error");
      },
    );
    return true;
  };
}

async function serve(
  sources: ConsoleSources,
  { rates, cluster, verifier }: { rates: TrafficRates; cluster: ClusterTraffic; verifier: PinVerifier },
  req: IncomingMessage,
  res: ServerResponse,
  page: string,
  query: URLSearchParams,
): Promise<void> {
  const caller = await authorizeAdminCaller(sources.engine(), sources.approvals.adminUrl, req);
  if (!caller.ok) return fail(res, caller.status, caller.code, caller.message, caller.headers);
  if (page === "session") {
    if (req.method !== "GET") return fail(res, 405, "method_not_allowed", "Use GET", { allow: "GET" });
    return send(res, 200, { agent: caller.principal.agent, access: caller.access });
  }
  if (caller.access !== "admin") {
    return fail(
      res,
      403,
      "forbidden",
      "This page is for admins (approvals.admin.roles); approvers see Approvals",
    );
  }
  const engine = sources.engine();
  if (page === "explain") {
    if (req.method !== "POST") return fail(res, 405, "method_not_allowed", "Use POST", { allow: "POST" });
    if (!sendsJson(req))
      return fail(res, 415, "unsupported_media_type", "Send the question as application/json");
    const body = await readJson(req);
    if (!body.ok) return fail(res, 400, "bad_request", "The body must be JSON (at most 16 KiB)");
    const answer = explainQuestion(engine, body.value);
    if (!answer.ok) return fail(res, 400, "bad_request", answer.message);
    const e = answer.explanation;
    // Who asked about what, never the arguments (they may hold anything a caller would send).
    sources.logger.info(
      {
        admin: caller.principal.agent,
        agent: bounded(e.agent),
        server: bounded(e.server),
        tool: bounded(e.tool),
        decision: e.decision,
      },
      "console explain",
    );
    return send(res, 200, e);
  }
  if (page === "registry/check") {
    if (req.method !== "POST") return fail(res, 405, "method_not_allowed", "Use POST", { allow: "POST" });
    if (!sendsJson(req)) return fail(res, 415, "unsupported_media_type", "Send application/json, e.g. {}");
    const body = await readJson(req);
    const value = body.ok ? body.value : undefined;
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      return fail(res, 400, "bad_request", 'The body must be a JSON object: {} or {"servers": ["kb"]}');
    }
    const { servers, ...rest } = value as { servers?: unknown };
    if (Object.keys(rest).length > 0)
      return fail(res, 400, "bad_request", `Unknown field: ${Object.keys(rest).join(", ")}`);
    if (servers !== undefined && (!Array.isArray(servers) || servers.some((s) => typeof s !== "string"))) {
      return fail(res, 400, "bad_request", "servers must be a list of server names");
    }
    const wanted = serversToCheck(engine, servers as string[] | undefined);
    if (!wanted.ok) return fail(res, 400, "bad_request", wanted.message);
    const report = await checkPinsNow(engine, verifier, wanted.servers);
    sources.logger.info(
      {
        admin: caller.principal.agent,
        servers: report.servers.map((s) => ({ server: s.server, result: s.result })),
      },
      "console pin check",
    );
    return send(res, 200, report);
  }
  if (req.method !== "GET") return fail(res, 405, "method_not_allowed", "Use GET", { allow: "GET" });
  if (page === "audit")
    return send(res, 200, auditPage(sources.audit, query, engine.config.tracing.traceUrl));
  if (page === "access") return send(res, 200, accessPage(engine, query));
  if (page === "budgets") {
    return send(res, 200, await budgetsPage(engine, sources.store, sources.audit.recent.newestFirst()));
  }
  if (page === "overview") {
    const overview = await overviewPage({
      engine,
      approvals: sources.approvals,
      store: sources.store,
      rates,
      cluster,
      upstreams: sources.upstreams,
    });
    return send(res, 200, overview);
  }
  if (page === "registry") return send(res, 200, await registryPage(engine, sources.store));
  return fail(res, 404, "not_found", "No such endpoint");
}
