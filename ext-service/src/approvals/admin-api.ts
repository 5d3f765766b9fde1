import type { IncomingMessage, ServerResponse } from "node:http";
import type { Principal } from "../policy/identity.js";
import { StoreUnavailable } from "../state/store.js";
import type { Logger } from "../telemetry/logger.js";
import { currentStatus, type ApprovalStatus } from "./book.js";
import type { Approvals } from "./runtime.js";
import type { GatewayEngine } from "../config/compile.js";

/**
 * The approvals admin API on the admin port (docs/APPROVALS.md), JSON only:
 *   GET  /admin/approvals[?status=pending|approved|denied|used|expired|all]
 *   GET  /admin/approvals/<id>
 *   POST /admin/approvals/<id>/approve   {"note": "..."} optional
 *   POST /admin/approvals/<id>/deny      {"note": "..."} optional
 *
 * Authentication is a bearer token of a configured issuer carrying an admin role, or naming an
 * approver: reaching the port (loopback included) proves nothing. Cross-site requests cannot use
 * it: there are no cookies (a browser never adds the Authorization header by itself), a request
 * with an Origin other than the gateway's own or allowedOrigins is refused, and a POST must be
 * `application/json` (which a cross-site form cannot send without a CORS preflight this API
 * never answers).
 */

const PREFIX = "/admin/approvals";
const STATUSES: ReadonlySet<string> = new Set(["pending", "approved", "denied", "used", "expired", "all"]);
const MAX_BODY_BYTES = 16_384;

export function send(
  res: ServerResponse,
  status: number,
  body: unknown,
  extra: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res
    .writeHead(status, {
      "content-type": "application/json",
      "cache-control": "no-store",
      "x-content-type-options": "nosniff",
      "content-length": String(Buffer.byteLength(text)),
      ...extra,
    })
    .end(text);
}

export function fail(
  res: ServerResponse,
  status: number,
  code: string,
  message: string,
  extra: Record<string, string> = {},
) {
  send(res, status, { error: { code, message } }, extra);
}

export async function readJson(req: IncomingMessage): Promise<{ ok: true; value: unknown } | { ok: false }> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) return { ok: false };
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString("utf8");
  if (text.trim() === "") return { ok: true, value: {} };
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch {
    return { ok: false };
  }
}

function firstHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/**
 * Origins whose pages may call the API: the gateway's own (publicUrl, approveUrl, the admin port
 * itself, where the console is served) and allowedOrigins.
 */
function originAllowed(engine: GatewayEngine, adminUrl: string | undefined, origin: string): boolean {
  const own = [engine.config.publicUrl, engine.config.approvals.approveUrl, adminUrl]
    .filter((u): u is string => u !== undefined)
    .map((u) => new URL(u).origin);
  return own.includes(origin) || engine.config.allowedOrigins.includes(origin);
}

export type AdminCaller =
  | { ok: true; principal: Principal; access: "admin" | "approver" }
  | { ok: false; status: number; code: string; message: string; headers?: Record<string, string> };

/**
 * Who is calling an admin endpoint (this API, the console's): refuses cross-site requests, then
 * wants a bearer token of a configured issuer holding an admin role or an approver entry. No
 * token is never the anonymous principal here, whatever auth.mode says.
 */
export async function authorizeAdminCaller(
  engine: GatewayEngine,
  adminUrl: string | undefined,
  req: IncomingMessage,
): Promise<AdminCaller> {
  const origin = firstHeader(req.headers.origin);
  if (
    (origin !== undefined && !originAllowed(engine, adminUrl, origin)) ||
    firstHeader(req.headers["sec-fetch-site"]) === "cross-site"
  ) {
    return {
      ok: false,
      status: 403,
      code: "origin_forbidden",
      message: "Cross-site requests are not accepted",
    };
  }
  const authorization = firstHeader(req.headers.authorization);
  if (authorization === undefined || !/^bearer\s/i.test(authorization)) {
    return {
      ok: false,
      status: 401,
      code: "unauthorized",
      message: "A bearer token is required",
      headers: { "www-authenticate": "Bearer" },
    };
  }
  const auth = await engine.authenticator.authenticate(authorization);
  if (!auth.ok) {
    return {
      ok: false,
      status: 401,
      code: "unauthorized",
      message: "The token is not valid here",
      headers: { "www-authenticate": 'Bearer error="invalid_token"' },
    };
  }
  const access = engine.approvals.adminAccess(auth.principal);
  if (!access) {
    return {
      ok: false,
      status: 403,
      code: "forbidden",
      message: "This token holds neither an admin role nor an approver entry",
    };
  }
  return { ok: true, principal: auth.principal, access };
}

/**
 * The handler for the admin server: answers requests under /admin/approvals and returns true,
 * or returns false for any other path. `engine()` is the policy in force (it changes on reload).
 */
export function approvalsAdminApi(
  engine: () => GatewayEngine,
  approvals: Approvals,
  logger: Logger,
): (req: IncomingMessage, res: ServerResponse) => boolean {
  return (req, res) => {
    const url = req.url ?? "/";
    const path = url.split("?")[0]!;
    if (path !== PREFIX && !path.startsWith(`${PREFIX}/`)) return false;
    serve(engine(), approvals, req, res, path, new URLSearchParams(url.split("?")[1] ?? "")).catch(
      (err: unknown) => {
        if (err instanceof StoreUnavailable) {
          if (!res.headersSent)
            fail(res, 503, "store_unavailable", "The state store cannot be reached; try again");
          return;
        }
        logger.error({ err }, "approvals admin API failed");
        if (!res.headersSent) fail(res, 500, "internal_error", "Internal error");
      },
    );
    return true;
  };
}

async function serve(
  engine: GatewayEngine,
  approvals: Approvals,
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
  query: URLSearchParams,
): Promise<void> {
  const caller = await authorizeAdminCaller(engine, approvals.adminUrl, req);
  if (!caller.ok) return fail(res, caller.status, caller.code, caller.message, caller.headers);
  const { principal, access } = caller;

  const rest = path.slice(PREFIX.length).split("/").filter(Boolean);
  if (rest.length === 0) {
    if (req.method !== "GET") return fail(res, 405, "method_not_allowed", "Use GET", { allow: "GET" });
    const wanted = query.get("status") ?? "all";
    if (!STATUSES.has(wanted))
      return fail(res, 400, "bad_request", `status must be one of ${[...STATUSES].join(", ")}`);
    const now = Date.now();
    const records = (await approvals.book.list()).filter(
      (r) =>
        (wanted === "all" || currentStatus(r, now) === (wanted as ApprovalStatus)) &&
        visible(engine, principal, access, r),
    );
    return send(res, 200, { approvals: records.map((r) => approvals.view(engine, r)) });
  }
  const id = rest[0]!;
  if (rest.length === 1) {
    if (req.method !== "GET") return fail(res, 405, "method_not_allowed", "Use GET", { allow: "GET" });
    const record = await approvals.book.get(id);
    if (!record || !visible(engine, principal, access, record))
      return fail(res, 404, "not_found", "No such approval");
    return send(res, 200, approvals.view(engine, record));
  }
  const action = rest[1];
  if (rest.length !== 2 || (action !== "approve" && action !== "deny")) {
    return fail(res, 404, "not_found", "No such endpoint");
  }
  if (req.method !== "POST") return fail(res, 405, "method_not_allowed", "Use POST", { allow: "POST" });
  const type = (firstHeader(req.headers["content-type"]) ?? "").split(";")[0]!.trim().toLowerCase();
  if (type !== "application/json") {
    return fail(res, 415, "unsupported_media_type", "Send the decision as application/json");
  }
  const body = await readJson(req);
  if (!body.ok || typeof body.value !== "object" || body.value === null || Array.isArray(body.value)) {
    return fail(res, 400, "bad_request", 'The body must be a JSON object, e.g. {"note": "why"}');
  }
  const note = (body.value as { note?: unknown }).note;
  if (note !== undefined && typeof note !== "string")
    return fail(res, 400, "bad_request", "note must be a string");
  const outcome = await approvals.decide(
    engine,
    id,
    action === "approve" ? "approved" : "denied",
    principal,
    note,
  );
  if (!outcome.ok) return fail(res, outcome.status, outcome.code, outcome.message);
  return send(res, 200, outcome.view);
}

/** Admins see every approval; an approver sees those it may decide (and not its own calls). */
function visible(
  engine: GatewayEngine,
  principal: Principal,
  access: "admin" | "approver",
  record: Parameters<GatewayEngine["approvals"]["mayDecide"]>[1],
): boolean {
  return access === "admin" || engine.approvals.mayDecide(principal, record).ok;
}
