import { createHash } from "node:crypto";
import { Approvals } from "../approvals/runtime.js";
import type { AnswerRelay } from "../broker/answers.js";
import type { SessionRevocations } from "../broker/session.js";
import type { GatewayConfig } from "../config/schema.js";
import { CacheSchema, durationMs } from "../config/schema.js";
import { HINT_INVALIDATING_NOTIFICATIONS, cacheHintsOf } from "../mcp/cache-hints.js";
import { isInputRequiredResult } from "../mcp/eras.js";
import type { CacheableRead, HttpReply, RequestVerdict, ToolCall } from "../policy/engine.js";
import { countOn, idKey, type Exchange } from "../policy/exchange.js";
import { Reasons } from "../policy/reasons.js";
import type { ResponseTransformer } from "../policy/response.js";
import type { Logger } from "../telemetry/logger.js";
import type { Metrics } from "../telemetry/metrics.js";
import { ResultCache, cacheKey, hintedKey } from "../state/cache.js";
import { stateMetrics, type StateMetrics } from "../state/metrics.js";
import { AgentRateLimit } from "../state/ratelimit.js";
import { StoreUnavailable, type StateStore } from "../state/store.js";
import { ToolUsage } from "../state/usage.js";
import type { GatewayEngine } from "../config/compile.js";

const NO_TOOLS: readonly string[] = [];

type CacheMiss =
  | { kind: "tool"; key: string; ttl: number | string }
  | { kind: "hinted"; server: string; agentKey: string; publicKey: string };

/** A kept list or read result and when it stops being fresh (ms since the epoch). */
interface HintedEntry {
  storedAt: number;
  expiresAt: number;
  result: Record<string, unknown>;
}

/**
 * The adapters' side of shared state: store I/O for the features the core decides (budgets),
 * the store's health for /readyz and metrics. Both data planes call `forwardStep` between the
 * core's body verdict and forwarding.
 */
export class GatewayState {
  readonly metrics: StateMetrics;
  readonly cache: ResultCache;
  /** Pending and decided approvals (approvals/), checked before budgets. */
  readonly approvals: Approvals;
  private readonly stopWatching: () => void;
  /** Cacheable requests that missed: their answer is stored if every check passes it unchanged. */
  private readonly misses = new WeakMap<Exchange, CacheMiss>();
  /** Hinted results (lists, reads) stored before this time (ms), per server, are stale. */
  private readonly invalidated = new Map<string, number>();
  private readonly hints: { enabled: boolean; maxTtlMs: number };
  /** Per-tool and per-server usage for the registry sweep (state/usage.ts). */
  readonly usage: ToolUsage;
  private readonly listChanges = new Set<(server: string, method: string) => void>();

  constructor(
    readonly store: StateStore,
    metrics: Metrics,
    private readonly logger: Logger,
    cacheConfig: GatewayConfig["cache"] = CacheSchema.parse({}),
  ) {
    this.metrics = stateMetrics(metrics);
    this.approvals = new Approvals(store, metrics, logger);
    this.usage = new ToolUsage(store, () => this.metrics.storeErrors.inc({ feature: "usage" }));
    this.hints = { enabled: cacheConfig.hints.enabled, maxTtlMs: durationMs(cacheConfig.hints.maxTtl) };
    this.cache = new ResultCache(cacheConfig, store, metrics, () =>
      this.metrics.storeErrors.inc({ feature: "cache" }),
    );
    const up = this.metrics.storeUp.labels({ store: store.kind });
    up.set(store.available() ? 1 : 0);
    this.stopWatching = store.onAvailability((available) => {
      up.set(available ? 1 : 0);
      if (available) logger.info({ store: store.kind }, "state store available");
      else logger.error({ store: store.kind }, "state store unavailable");
    });
  }

  /**
   * Calls `listener` with every `notifications/*\/list_changed` a server sends through the
   * per-server path, to any client (the aggregated endpoint drops its kept lists of that server).
   * Returns the function that stops it.
   */
  onListChanged(listener: (server: string, method: string) => void): () => void {
    this.listChanges.add(listener);
    return () => this.listChanges.delete(listener);
  }

  /**
   * The aggregated endpoint's ended sessions, when replicas share the store (Redis): a DELETE on
   * one replica makes the sealed id unknown on every replica until it would have expired. Keys
   * are `broker:ended:<SHA-256 of the id>` (the id itself is not stored). Undefined with the
   * memory store: the broker's own memory of its DELETEs is all there is then.
   */
  sessionRevocations(): SessionRevocations | undefined {
    if (this.store.kind !== "redis") return undefined;
    const key = (id: string) => `broker:ended:${createHash("sha256").update(id).digest("base64url")}`;
    const counted = (err: unknown): never => {
      if (err instanceof StoreUnavailable) this.metrics.storeErrors.inc({ feature: "sessions" });
      throw err;
    };
    return {
      revoke: (id, untilMs) => this.store.set(key(id), "1", Math.max(1, untilMs - Date.now())).catch(counted),
      revoked: (id) => this.store.get(key(id)).then((value) => value !== undefined, counted),
    };
  }

  /**
   * The aggregated endpoint's answers to relayed requests across replicas (broker/answers.ts),
   * when replicas share the store (Redis): on channel `broker:answer:<SHA-256 of the session id
   * and the request id>` (neither is sent to Redis as it is; the answer is relayed, not stored).
   * Undefined with the memory store: an answer is taken only where its request waits.
   */
  answerRelay(): AnswerRelay | undefined {
    if (this.store.kind !== "redis") return undefined;
    const channel = (sessionId: string, requestId: string) =>
      `broker:answer:${createHash("sha256").update(`${sessionId}\n${requestId}`).digest("base64url")}`;
    const counted = (err: unknown): never => {
      if (err instanceof StoreUnavailable) this.metrics.storeErrors.inc({ feature: "answers" });
      throw err;
    };
    return {
      expect: (sessionId, requestId, onAnswer, onLost) =>
        this.store.subscribeConfirmed(channel(sessionId, requestId), onAnswer, onLost).catch(counted),
      handOver: (sessionId, requestId, answer) =>
        this.store.publish(channel(sessionId, requestId), answer).then((taken) => taken > 0, counted),
    };
  }

  /** The edge's per-agent rate limit: shared by every replica when the store is Redis. */
  agentRateLimit(ratePerSecond: number, burst: number): AgentRateLimit {
    return new AgentRateLimit(this.store, this.metrics, ratePerSecond, burst);
  }

  /** False while the store cannot be reached: /readyz answers 503 then. */
  ready(): boolean {
    return this.store.available();
  }

  /**
   * Runs after the core let a body through and before it is forwarded: the reply that ends the
   * exchange instead (a spent budget, a held approval, a cache hit), or undefined to forward.
   * When nothing has to ask the store (no approval, no active budget, no cache) the answer comes
   * back at once rather than as a promise, so the request path takes no promise chain for it.
   */
  forwardStep(
    engine: GatewayEngine,
    exchange: Exchange,
    verdict: RequestVerdict & { action: "forward" },
  ): HttpReply | undefined | Promise<HttpReply | undefined> {
    const decided = this.decideForward(engine, exchange, verdict);
    if (decided === undefined) {
      this.recordUse(engine, exchange, verdict);
      return undefined;
    }
    return decided.then((reply) => {
      this.recordUse(engine, exchange, verdict);
      return reply;
    });
  }

  /** Used: forwarded, or answered from the cache; not when a budget or an approval held it. */
  private recordUse(
    engine: GatewayEngine,
    exchange: Exchange,
    verdict: RequestVerdict & { action: "forward" },
  ): void {
    if (exchange.decision !== "allow" || exchange.server === undefined) return;
    const names = verdict.toolCalls?.map((c) => c.name) ?? NO_TOOLS;
    this.usage.record(exchange.server, names, engine.now());
  }

  /** Undefined when forwarding needs nothing from the store; otherwise the store's answer. */
  private decideForward(
    engine: GatewayEngine,
    exchange: Exchange,
    verdict: RequestVerdict & { action: "forward" },
  ): Promise<HttpReply | undefined> | undefined {
    const calls = verdict.toolCalls;
    if (!calls) {
      const read = verdict.cacheableRead;
      if (!read || !this.hints.enabled || !exchange.principal || !exchange.server) return undefined;
      return this.fromHintedCache(engine, exchange, read);
    }
    const call = calls[0]!;
    const cached = !verdict.batch && !!call.tool.cache && exchange.principal !== undefined;
    if (!engine.budgets.active && !cached && !calls.some((c) => c.approval !== undefined)) return undefined;
    return this.decideForwardCalls(engine, exchange, verdict, calls);
  }

  private async decideForwardCalls(
    engine: GatewayEngine,
    exchange: Exchange,
    verdict: RequestVerdict & { action: "forward" },
    calls: ToolCall[],
  ): Promise<HttpReply | undefined> {
    // Approval first: a call held for a human is not charged to any budget.
    const held = await this.approvals.beforeForward(engine, exchange, calls, verdict.batch === true);
    if (held && "forwardBody" in held) verdict.forwardBody = held.forwardBody;
    else if (held) return held;
    if (engine.budgets.active) {
      const refused = await this.chargeBudgets(engine, exchange, calls, verdict.batch === true);
      if (refused) return refused;
    }
    const call = calls[0]!;
    if (verdict.batch || !call.tool.cache || !exchange.principal) return undefined;
    return this.fromCache(engine, exchange, call);
  }

  /**
   * Lets `transformer` store the answer to a call that missed the cache: only a success that
   * every check passed unchanged (never an error, `isError`, `input_required`, or anything a
   * policy refused, redacted or annotated).
   */
  watchResponse(exchange: Exchange, transformer: ResponseTransformer): void {
    const server = exchange.server;
    if (server !== undefined) {
      transformer.onNotification = (method) => {
        const listChanged = method.endsWith("/list_changed");
        // A list change is recorded with hints off too: the broker's kept lists on other replicas.
        if (listChanged || (this.hints.enabled && HINT_INVALIDATING_NOTIFICATIONS.has(method)))
          this.invalidate(server);
        if (listChanged) for (const listener of this.listChanges) listener(server, method);
      };
    }
    const miss = this.misses.get(exchange);
    if (!miss) return;
    this.misses.delete(exchange);
    if (miss.kind === "hinted") {
      transformer.onPassed = (message) => this.storeHinted(exchange, miss, message);
      return;
    }
    transformer.onPassed = (message) => {
      const result = message.result as Record<string, unknown> | undefined;
      if (message.error !== undefined || typeof result !== "object" || result === null) return;
      if (result.isError === true || isInputRequiredResult(result) || exchange.decision !== "allow") return;
      void this.cache.set(miss.key, JSON.stringify(result), miss.ttl).catch((err: unknown) => {
        this.logger.warn({ err, request_id: exchange.requestId }, "cache: storing a result failed");
      });
    };
  }

  /**
   * A hit is answered here, through the response policy exactly as if the server had just sent
   * it (DLP, injection, pins all apply); the audit record counts `cache:hit`.
   */
  private async fromCache(
    engine: GatewayEngine,
    exchange: Exchange,
    call: ToolCall,
  ): Promise<HttpReply | undefined> {
    const key = cacheKey(call, exchange.principal!);
    const cached = await this.cache.get(key);
    if (cached === undefined) {
      countOn(exchange, "cache:miss");
      this.misses.set(exchange, { kind: "tool", key, ttl: call.tool.cache!.ttl });
      return undefined;
    }
    countOn(exchange, "cache:hit");
    const body = `{"jsonrpc":"2.0","id":${JSON.stringify(call.id)},"result":${cached}}`;
    const transformer = engine.responseTransformer(exchange, "application/json", 200);
    const out = transformer.transformJson(Buffer.from(body, "utf8"));
    const refusal = transformer.refusal;
    return {
      status: refusal ? Reasons[refusal].status : 200,
      headers: { "content-type": "application/json" },
      body: out === undefined ? body : Buffer.from(out).toString("utf8"),
    };
  }

  /**
   * A list or `resources/read` whose earlier result said it stays fresh (ttlMs) is answered here,
   * through the response policy as if the server had just sent it: security checks, and the
   * agent's own view of a list (so a public entry never shows another agent's tools). `ttlMs` is
   * what is left of the server's. The agent's own (private) entry is looked up before the public
   * one.
   */
  private async fromHintedCache(
    engine: GatewayEngine,
    exchange: Exchange,
    read: CacheableRead,
  ): Promise<HttpReply | undefined> {
    const server = exchange.server!;
    const agentKey = hintedKey(server, read, exchange.protocolVersion, exchange.principal!);
    const publicKey = hintedKey(server, read, exchange.protocolVersion, "public");
    const now = Date.now();
    const staleBefore = await this.invalidatedAt(server);
    let entry: HintedEntry | undefined;
    for (const key of [agentKey, publicKey]) {
      const text = await this.cache.get(key, false);
      if (text === undefined) continue;
      const found = JSON.parse(text) as HintedEntry;
      if (found.storedAt > staleBefore && found.expiresAt > now) {
        entry = found;
        break;
      }
    }
    this.cache.metrics.lookups.inc({ result: entry ? "hit" : "miss" });
    if (!entry) {
      countOn(exchange, "cache:miss");
      this.misses.set(exchange, { kind: "hinted", server, agentKey, publicKey });
      return undefined;
    }
    countOn(exchange, "cache:hit");
    const result = { ...entry.result, ttlMs: entry.expiresAt - now };
    const body = JSON.stringify({ jsonrpc: "2.0", id: read.id, result });
    const transformer = engine.responseTransformer(exchange, "application/json", 200);
    const out = transformer.transformJson(Buffer.from(body, "utf8"));
    const refusal = transformer.refusal;
    return {
      status: refusal ? Reasons[refusal].status : 200,
      headers: { "content-type": "application/json" },
      body: out === undefined ? body : Buffer.from(out).toString("utf8"),
    };
  }

  /**
   * Keeps a list or read result for as long as its ttlMs (at most hints.maxTtl): public ones
   * for every agent, the rest for this agent only. Never an error, an `input_required` result,
   * one without a positive ttlMs, or one a security check changed.
   */
  private storeHinted(
    exchange: Exchange,
    miss: Extract<CacheMiss, { kind: "hinted" }>,
    message: { result?: unknown; error?: unknown },
  ): void {
    if (message.error !== undefined || exchange.decision !== "allow") return;
    const hints = cacheHintsOf(message.result);
    if (!hints || hints.ttlMs === 0) return;
    const ttl = Math.min(hints.ttlMs, this.hints.maxTtlMs);
    const storedAt = Date.now();
    const entry: HintedEntry = {
      storedAt,
      expiresAt: storedAt + ttl,
      result: message.result as Record<string, unknown>,
    };
    const key = hints.scope === "public" ? miss.publicKey : miss.agentKey;
    void this.cache.set(key, JSON.stringify(entry), `${ttl}ms`).catch((err: unknown) => {
      this.logger.warn({ err, request_id: exchange.requestId }, "cache: storing a result failed");
    });
  }

  /**
   * A server said its lists or resources changed: what the hints let the gateway keep of it is
   * stale from now on, in this process and, with a shared cache, in every replica.
   */
  private invalidate(server: string): void {
    const now = Date.now();
    this.invalidated.set(server, now);
    if (!this.cache.sharedByReplicas) return;
    this.store.set(`cache:stale:${server}`, String(now), this.hints.maxTtlMs).catch((err: unknown) => {
      if (!(err instanceof StoreUnavailable)) this.logger.warn({ err }, "cache: recording a change failed");
      else this.metrics.storeErrors.inc({ feature: "cache" });
    });
  }

  /**
   * When (ms) a replica last saw this server announce a change of its lists or resources: with
   * a shared cache, across every replica (the aggregated endpoint's kept lists from before are
   * stale); otherwise in this process. Store trouble answers with what this process saw.
   */
  listsChangedAt(server: string): Promise<number> {
    return this.invalidatedAt(server);
  }

  private async invalidatedAt(server: string): Promise<number> {
    const local = this.invalidated.get(server) ?? 0;
    if (!this.cache.sharedByReplicas) return local;
    try {
      return Math.max(local, Number((await this.store.get(`cache:stale:${server}`)) ?? 0));
    } catch (err) {
      if (!(err instanceof StoreUnavailable)) throw err;
      this.metrics.storeErrors.inc({ feature: "cache" });
      return local;
    }
  }

  private async chargeBudgets(
    engine: GatewayEngine,
    exchange: Exchange,
    calls: NonNullable<(RequestVerdict & { action: "forward" })["toolCalls"]>,
    batch: boolean,
  ): Promise<HttpReply | undefined> {
    const principal = exchange.principal;
    if (!principal) return undefined;
    const policy = engine.budgets;
    const charges = policy.charges(
      principal,
      calls.map((c) => ({ server: c.server, tool: c.name, cost: c.tool.cost })),
      engine.now(),
    );
    if (charges.length === 0) return undefined;
    const callsOf = (budgets: readonly string[]) =>
      new Set(
        calls.filter((c) => budgets.some((b) => policy.counts(b, c.server, c.name))).map((c) => idKey(c.id)),
      );
    let result;
    try {
      result = await this.store.chargeAll(charges);
    } catch (err) {
      if (!(err instanceof StoreUnavailable)) throw err;
      this.metrics.storeErrors.inc({ feature: "budgets" });
      for (const c of charges) countOn(exchange, `budget_unchecked:${c.budget}`);
      if (policy.whenStoreDown === "allow") {
        for (const c of charges) this.metrics.budgetUnchecked.inc({ budget: c.budget });
        return undefined;
      }
      this.logger.warn({ request_id: exchange.requestId }, "budgets: store unavailable, call refused");
      return engine.refuseForwarded(
        exchange,
        batch,
        callsOf(charges.map((c) => c.budget)),
        "budget_unavailable",
      );
    }
    const decision = policy.decide(charges, result);
    if (decision.allowed) {
      for (const c of charges) this.metrics.budgetCharged.inc({ budget: c.budget }, c.amount);
      for (const w of decision.warnings) {
        countOn(exchange, `budget_warning:${w.budget}`);
        this.metrics.budgetWarnings.inc({ budget: w.budget });
      }
      return undefined;
    }
    const names = decision.exhausted.map((c) => c.budget);
    for (const name of names) {
      countOn(exchange, `budget_exhausted:${name}`);
      this.metrics.budgetExhausted.inc({ budget: name });
    }
    const resetsAt = new Date(decision.resetsAt).toISOString();
    return engine.refuseForwarded(
      exchange,
      batch,
      callsOf(names),
      "budget_exhausted",
      `it resets at ${resetsAt}`,
      {
        resets_at: resetsAt,
      },
    );
  }

  async close(): Promise<void> {
    this.stopWatching();
    await this.approvals.close();
    await this.store.close();
  }
}
