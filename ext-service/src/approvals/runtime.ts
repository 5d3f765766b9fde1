import { randomUUID } from "node:crypto";
import { Counter, Gauge } from "prom-client";
import {
  approvalElicitation,
  inBandAnswer,
  IN_BAND_KEY,
  isApprovalState,
  openApprovalState,
  sealApprovalState,
  withoutApprovalRound,
  type ApprovalRequirement,
} from "../policy/approvals.js";
import { jsonReply, type HttpReply, type ToolCall } from "../policy/engine.js";
import { countOn, denyExchange, idKey, type Exchange } from "../policy/exchange.js";
import type { Principal } from "../policy/identity.js";
import type { Reason } from "../policy/reasons.js";
import { StoreUnavailable, type StateStore } from "../state/store.js";
import type { Logger } from "../telemetry/logger.js";
import type { Metrics } from "../telemetry/metrics.js";
import {
  ApprovalBook,
  ApprovalContended,
  ApprovalLimitReached,
  currentStatus,
  type ApprovalRecord,
  type ApprovalStatus,
} from "./book.js";
import { sendWebhook } from "./notify.js";
import type { GatewayEngine } from "../config/compile.js";

/**
 * The adapters' side of approvals (policy/approvals.ts decides what needs one): before a call
 * that needs approval is forwarded, find an approval of exactly this call and use it once, or
 * store a pending request, notify the webhook and answer `approval_required`. Decisions come
 * through the admin API (admin-api.ts). Both data planes run this through GatewayState.
 */

export type ApprovalEvent = "requested" | "approved" | "denied" | "used" | "expired";

interface ApprovalMetrics {
  events: Counter<"event">;
  pending: Gauge;
  /** The books the pending gauge reads when scraped (one per state store on this registry). */
  books: Set<{ book: ApprovalBook; count: (event: ApprovalEvent, n: number) => void }>;
}

const byRegistry = new WeakMap<Metrics, ApprovalMetrics>();

function approvalMetrics(metrics: Metrics): ApprovalMetrics {
  let found = byRegistry.get(metrics);
  if (found) return found;
  const registers = [metrics.registry];
  const books: ApprovalMetrics["books"] = new Set();
  found = {
    books,
    events: new Counter({
      name: "mcp_gateway_approvals_total",
      help: "Approval events: requested, approved, denied, used, expired (lapsed undecided or unused)",
      labelNames: ["event"],
      registers,
    }),
    pending: new Gauge({
      name: "mcp_gateway_approvals_pending",
      help: "Requests for approval waiting for a decision (read from the state store when scraped)",
      registers,
      async collect() {
        let pending = 0;
        for (const { book, count } of books) {
          try {
            const swept = await book.sweep();
            pending += swept.pending;
            if (swept.expired > 0) count("expired", swept.expired);
          } catch {
            // The store is down: the gauge keeps its last value; /readyz and the store gauge say why.
          }
        }
        this.set(pending);
      },
    }),
  };
  byRegistry.set(metrics, found);
  return found;
}

/** What the admin API shows of an approval: JSON, no secrets (arguments are DLP-redacted). */
export interface ApprovalView {
  id: string;
  status: ApprovalStatus;
  rule: string;
  server: string;
  tool: string;
  agent: string;
  issuer: string | null;
  arguments: unknown;
  arguments_digest: string;
  pin: string;
  risk: string;
  request_id: string;
  requested_at: string;
  expires_at: string;
  uses_left: number;
  decided_by: { agent: string; issuer: string | null } | null;
  decided_at: string | null;
  note: string | null;
  approve_url: string;
}

export type DecideOutcome =
  { ok: true; view: ApprovalView } | { ok: false; status: 403 | 404 | 409; code: string; message: string };

const MAX_TEXT_ARGUMENTS = 1_000;

export class Approvals {
  readonly book: ApprovalBook;
  private readonly metrics: ApprovalMetrics;
  /** The admin API's base URL once it listens (default `approveUrl`). */
  adminUrl: string | undefined;
  /** Webhook deliveries in flight (tests and shutdown wait for them). */
  readonly deliveries = new Set<Promise<boolean>>();

  constructor(
    store: StateStore,
    metrics: Metrics,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
    private readonly sleep?: (ms: number) => Promise<void>,
  ) {
    this.book = new ApprovalBook(store, now);
    this.metrics = approvalMetrics(metrics);
    this.gaugeSource = { book: this.book, count: (event, n) => this.count(event, n) };
    this.metrics.books.add(this.gaugeSource);
  }

  private readonly gaugeSource: { book: ApprovalBook; count: (event: ApprovalEvent, n: number) => void };

  /** Waits for webhook deliveries in flight and stops feeding the pending gauge (the store closes next). */
  async close(): Promise<void> {
    this.metrics.books.delete(this.gaugeSource);
    await this.settled();
  }

  /**
   * Runs before a body the core let through is forwarded. Returns the reply that ends the
   * exchange instead, or undefined to forward (no call needs approval, or its approval was used).
   */
  async beforeForward(
    engine: GatewayEngine,
    exchange: Exchange,
    calls: readonly ToolCall[],
    batch: boolean,
  ): Promise<HttpReply | { forwardBody: Uint8Array } | undefined> {
    const needing = calls.filter((c) => c.approval !== undefined);
    if (needing.length === 0) return undefined;
    const refuse = (reason: Reason, detail?: string, data: Record<string, unknown> = {}) =>
      engine.refuseForwarded(exchange, batch, new Set(needing.map((c) => idKey(c.id))), reason, detail, data);
    if (batch)
      return refuse("approval_unavailable", "send calls that need approval one at a time, not in a batch");
    const call = needing[0]!;
    const requirement = call.approval!;
    const principal = exchange.principal;
    if (!principal) return refuse("approval_unavailable");
    if (requirement.inBand && exchange.era === "2026") {
      try {
        return await this.inBand(engine, exchange, call, requirement, principal, refuse);
      } catch (err) {
        if (!(err instanceof StoreUnavailable)) throw err;
        return refuse("approval_unavailable");
      }
    }
    if (requirement.approvers.length === 0) {
      return refuse(
        "approval_unavailable",
        "only your own user may approve this call, from a client that speaks MCP 2026-07-28",
      );
    }
    const policy = engine.approvals;
    const binding = policy.binding(principal, call);
    const key = policy.bindingKey(binding);
    try {
      for (let attempt = 0; attempt < 8; attempt++) {
        const found = await this.book.lookup(key);
        if (found.kind === "usable") {
          const used = await this.book.consume(found.record, found.text);
          if (!used) continue; // another request (or replica) changed it first: look again
          countOn(exchange, "approval:used");
          this.count("used");
          this.audit("used", used, exchange.requestId);
          return undefined;
        }
        if (found.kind === "pending") {
          countOn(exchange, "approval:pending");
          return this.requiredReply(engine, exchange, call, found.record);
        }
        if (found.kind === "denied") {
          countOn(exchange, "approval:denied");
          return refuse("approval_denied", `approval ${found.record.id}`, {
            approval_id: found.record.id,
            status: "denied",
            expires_at: new Date(found.record.expiresAt).toISOString(),
          });
        }
        if ((await this.book.pendingOf(binding.agent, binding.issuer)) >= policy.config.maxPendingPerAgent) {
          return refuse("approval_unavailable", "too many of your calls are waiting for approval already");
        }
        if (found.kind !== "none" && found.kind !== "spent") continue;
        const record = await this.book.create(found.previous, {
          rule: requirement,
          binding,
          key,
          arguments: redactValue(call.arguments, (text) => engine.security.auditText(text)),
          risk: call.tool.risk,
          requestId: exchange.requestId,
        });
        if (!record) continue;
        countOn(exchange, "approval:requested");
        this.count("requested");
        this.audit("requested", record, exchange.requestId);
        this.notify(engine, record);
        return this.requiredReply(engine, exchange, call, record);
      }
      return refuse("approval_unavailable", "the approval store is busy; retry");
    } catch (err) {
      if (
        !(err instanceof StoreUnavailable) &&
        !(err instanceof ApprovalContended) &&
        !(err instanceof ApprovalLimitReached)
      )
        throw err;
      this.logger.warn(
        { request_id: exchange.requestId, problem: (err as Error).message },
        "approvals: cannot check or store the approval; call refused",
      );
      return refuse("approval_unavailable");
    }
  }

  /**
   * In-band approval for a 2026-07-28 client, when the rule lets the caller's own user decide:
   * the first call is answered `input_required` with an elicitation describing it and a
   * gateway-sealed requestState bound to the call (issuer, agent, server, tool, pin, arguments)
   * with an expiry; the retry carrying the user's answer and that state is checked, used once
   * (its nonce is recorded in the store) and forwarded without the gateway's round.
   */
  private async inBand(
    engine: GatewayEngine,
    exchange: Exchange,
    call: ToolCall,
    requirement: ApprovalRequirement,
    principal: Principal,
    refuse: (reason: Reason, detail?: string, data?: Record<string, unknown>) => HttpReply,
  ): Promise<HttpReply | { forwardBody: Uint8Array }> {
    const policy = engine.approvals;
    const binding = policy.binding(principal, call);
    const params = call.params ?? {};
    const now = this.now();
    const event = (name: ApprovalEvent, nonce: string) =>
      this.logger.info(
        {
          approval_audit: true,
          event,
          in_band: true,
          approval_id: nonce,
          request_id: exchange.requestId,
          rule: requirement.rule,
          agent: binding.agent,
          issuer: binding.issuer,
          server: binding.server,
          tool: binding.tool,
          arguments_digest: `sha256:${binding.arguments}`,
        },
        "approval",
      );
    if (isApprovalState(params.requestState)) {
      const opened = openApprovalState(engine.approvalStates, params.requestState, binding, now);
      if (opened === undefined)
        return refuse("approval_invalid", "the requestState was not issued for this call");
      if (opened === "expired")
        return refuse("approval_invalid", "the approval round has expired; call again");
      if (inBandAnswer(params) !== "approved") {
        countOn(exchange, "approval:denied");
        this.count("denied");
        event("denied", opened.nonce);
        return refuse("approval_denied", "the user did not approve it");
      }
      const first = await this.book.store.compareAndSet(
        `approvals:inband:${opened.nonce}`,
        undefined,
        "used",
        opened.expiresAt - now + 60_000,
      );
      if (!first) return refuse("approval_invalid", "this approval was used already; call again");
      countOn(exchange, "approval:used");
      this.count("used");
      event("used", opened.nonce);
      const message = {
        jsonrpc: "2.0",
        id: call.id,
        method: "tools/call",
        params: withoutApprovalRound(params),
      };
      return { forwardBody: Buffer.from(JSON.stringify(message), "utf8") };
    }
    const nonce = randomUUID();
    const requestState = sealApprovalState(engine.approvalStates, binding, now + requirement.ttlMs, nonce);
    const args = redactValue(call.arguments, (text) => engine.security.auditText(text));
    countOn(exchange, "approval:requested");
    this.count("requested");
    event("requested", nonce);
    denyExchange(exchange, "approval_required");
    exchange.pending.clear();
    return jsonReply(200, {
      jsonrpc: "2.0",
      id: call.id,
      result: {
        resultType: "input_required",
        inputRequests: { [IN_BAND_KEY]: approvalElicitation(call, binding.agent, args) },
        requestState,
      },
    });
  }

  /** Approve or deny a pending approval, as `principal` (the admin API's caller). */
  async decide(
    engine: GatewayEngine,
    id: string,
    decision: "approved" | "denied",
    principal: Principal,
    note: string | undefined,
  ): Promise<DecideOutcome> {
    const access = engine.approvals.adminAccess(principal);
    const by = { agent: principal.agent, issuer: principal.issuer ?? null };
    const cleanNote = note === undefined ? undefined : engine.security.auditText(note.slice(0, 1_000));
    const outcome = await this.book.decide(id, decision, by, cleanNote, (record) => {
      const may = engine.approvals.mayDecide(principal, record);
      if (may.ok) return undefined;
      // An admin may deny what it may not approve (stop a call nobody should run), never its own.
      if (decision === "denied" && access === "admin" && may.refusal !== "self") return undefined;
      return may.refusal;
    });
    if (outcome === "gone") return { ok: false, status: 404, code: "not_found", message: "No such approval" };
    if (outcome === "not_pending")
      return {
        ok: false,
        status: 409,
        code: "not_pending",
        message: "The approval was decided or has expired",
      };
    if (outcome === "contended")
      return { ok: false, status: 409, code: "conflict", message: "Another decision was recorded first" };
    if ("refused" in outcome) {
      const self = outcome.refused === "self";
      this.logger.info(
        {
          approval_audit: true,
          event: "decision_refused",
          approval_id: id,
          by_agent: by.agent,
          by_issuer: by.issuer,
          why: outcome.refused,
        },
        "approval",
      );
      return {
        ok: false,
        status: 403,
        code: self ? "self_approval" : "not_approver",
        message: self
          ? "Nobody may decide their own call"
          : "You are not an approver of this call (role, name, issuer or tool scope)",
      };
    }
    this.count(decision);
    this.audit(decision, outcome, undefined, by);
    return { ok: true, view: this.view(engine, outcome) };
  }

  /** The admin API's view of a record. */
  view(engine: GatewayEngine, record: ApprovalRecord): ApprovalView {
    return {
      id: record.id,
      status: currentStatus(record, this.now()),
      rule: record.rule,
      server: record.binding.server,
      tool: record.binding.tool,
      agent: record.binding.agent,
      issuer: record.binding.issuer,
      arguments: record.arguments,
      arguments_digest: `sha256:${record.binding.arguments}`,
      pin: record.binding.pin,
      risk: record.risk,
      request_id: record.requestId,
      requested_at: new Date(record.requestedAt).toISOString(),
      expires_at: new Date(record.expiresAt).toISOString(),
      uses_left: record.usesLeft,
      decided_by: record.decidedBy ?? null,
      decided_at: record.decidedAt === undefined ? null : new Date(record.decidedAt).toISOString(),
      note: record.note ?? null,
      approve_url: this.approveUrl(engine, record.id),
    };
  }

  approveUrl(engine: GatewayEngine, id: string): string {
    const configured = engine.config.approvals.approveUrl;
    if (configured !== undefined) return `${configured.replace(/\/+$/, "")}/${id}`;
    const admin = engine.config.listen.admin;
    const base =
      this.adminUrl ?? `http://${admin.host.includes(":") ? `[${admin.host}]` : admin.host}:${admin.port}`;
    return `${base}/admin/approvals/${id}`;
  }

  /** Waits for the webhook deliveries in flight (tests; shutdown). */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.deliveries]);
  }

  private requiredReply(
    engine: GatewayEngine,
    exchange: Exchange,
    call: ToolCall,
    record: ApprovalRecord,
  ): HttpReply {
    const url = this.approveUrl(engine, record.id);
    const until = new Date(record.expiresAt).toISOString();
    return engine.refuseForwarded(
      exchange,
      false,
      new Set([idKey(call.id)]),
      "approval_required",
      `approval ${record.id} is pending until ${until}; an approver runs 'mcp-gateway approvals approve ${record.id}' or decides at ${url}`,
      { approval_id: record.id, status: "pending", expires_at: until, approve_url: url },
    );
  }

  private notify(engine: GatewayEngine, record: ApprovalRecord): void {
    const webhook = engine.config.approvals.webhook;
    if (!webhook) return;
    const view = this.view(engine, record);
    let args = JSON.stringify(view.arguments ?? {});
    if (args.length > MAX_TEXT_ARGUMENTS)
      args = `${args.slice(0, MAX_TEXT_ARGUMENTS)}… (${args.length} characters)`;
    const who = view.issuer === null ? view.agent : `${view.agent} (${view.issuer})`;
    const text =
      `Approval needed: ${who} wants to call ${view.server}/${view.tool} (risk ${view.risk}, rule ${view.rule}) ` +
      `with ${args}. Approve: mcp-gateway approvals approve ${view.id} (or deny), or ${view.approve_url}. ` +
      `The request lapses at ${view.expires_at}.`;
    const delivery = sendWebhook(webhook, { text, approval: { ...view } }, this.logger, this.sleep);
    this.deliveries.add(delivery);
    void delivery.finally(() => this.deliveries.delete(delivery));
  }

  private count(event: ApprovalEvent, n = 1): void {
    this.metrics.events.inc({ event }, n);
  }

  /** One audit record per request for approval, decision and use (who, when, which call, why). */
  private audit(
    event: ApprovalEvent,
    record: ApprovalRecord,
    requestId: string | undefined,
    by?: { agent: string; issuer: string | null },
  ): void {
    this.logger.info(
      {
        approval_audit: true,
        event,
        approval_id: record.id,
        request_id: requestId ?? record.requestId,
        rule: record.rule,
        agent: record.binding.agent,
        issuer: record.binding.issuer,
        server: record.binding.server,
        tool: record.binding.tool,
        arguments_digest: `sha256:${record.binding.arguments}`,
        uses_left: record.usesLeft,
        expires_at: new Date(record.expiresAt).toISOString(),
        ...(by ? { by_agent: by.agent, by_issuer: by.issuer, note: record.note ?? null } : {}),
      },
      "approval",
    );
  }
}

/** A JSON value with `redact` applied to every string (keys too), depth-bounded like parsing. */
export function redactValue(value: unknown, redact: (text: string) => string, depth = 0): unknown {
  if (depth > 64) return "[nested too deeply]";
  if (typeof value === "string") return redact(value);
  if (Array.isArray(value)) return value.map((v) => redactValue(v, redact, depth + 1));
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [redact(k), redactValue(v, redact, depth + 1)]),
    );
  }
  return value;
}
