import type { IncomingMessage, ServerResponse } from "node:http";
import { authorizeAdminCaller, fail, send } from "../approvals/admin-api.js";
import type { Approvals } from "../approvals/runtime.js";
import type { PolicyEngine } from "../policy/engine.js";
import type { AuditRecord, AuditTrail } from "../telemetry/audit.js";
import type { Logger } from "../telemetry/logger.js";

/**
 * The admin console's JSON endpoints (docs/CONSOLE.md), GET only, under /console/api/:
 *   audit?agent=&server=&tool=&decision=&reason=&limit=   recent audit records, newest first
 *
 * Authenticated and Origin-checked exactly as the approvals admin API (authorizeAdminCaller),
 * and for admins only: an approver's token decides approvals, it does not read the audit trail.
 */

const PREFIX = "/console/api/";
const MAX_LIMIT = 1000;
const DEFAULT_LIMIT = 200;

export interface ConsoleSources {
  /** The policy in force (it changes on reload). */
  engine(): PolicyEngine;
  approvals: Approvals;
  audit: AuditTrail;
  logger: Logger;
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

function auditPage(audit: AuditTrail, query: URLSearchParams): unknown {
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
  return { records, kept: all.length, capacity: audit.recent.capacity };
}

/** The route for the admin server: answers /console/api/...; other paths are left to the next route. */
export function consoleApi(sources: ConsoleSources): (req: IncomingMessage, res: ServerResponse) => boolean {
  return (req, res) => {
    const url = req.url ?? "/";
    const path = url.split("?")[0]!;
    if (!path.startsWith(PREFIX)) return false;
    serve(sources, req, res, path.slice(PREFIX.length), new URLSearchParams(url.split("?")[1] ?? "")).catch(
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
  req: IncomingMessage,
  res: ServerResponse,
  page: string,
  query: URLSearchParams,
): Promise<void> {
  const caller = await authorizeAdminCaller(sources.engine(), sources.approvals.adminUrl, req);
  if (!caller.ok) return fail(res, caller.status, caller.code, caller.message, caller.headers);
  if (caller.access !== "admin") {
    return fail(
      res,
      403,
      "forbidden",
      "This page is for admins (approvals.admin.roles); approvers see Approvals",
    );
  }
  if (req.method !== "GET") return fail(res, 405, "method_not_allowed", "Use GET", { allow: "GET" });
  if (page === "audit") return send(res, 200, auditPage(sources.audit, query));
  return fail(res, 404, "not_found", "No such endpoint");
}
