import { createHash, randomBytes } from "node:crypto";
import { ProtocolError, type Result, type ServerContext } from "@modelcontextprotocol/server";
import { JsonRpcCode } from "../policy/reasons.js";
import type { PooledHop } from "./hop-pool.js";
import { refusedInBand } from "./refusals.js";
import type { Scope } from "./scope.js";

// A 2026-07-28 client's call to a server that speaks only 2025, whose requests to the client
// (elicitation, sampling, roots) come on the call's stream: the broker answers the client's call
// with `input_required` carrying them, holds the hop's call in this process, and answers the
// server's requests with what the client's retry carries (docs/design/broker.md).

/** Marks a `requestState` the broker issued (never a server's: those pass through untouched). */
export const BRIDGE_STATE_PREFIX = "mcp-gateway.input.";
/** How long a held call waits for the client's retry before the server's requests fail. */
export const BRIDGE_WAIT_MS = 60_000;
/** Calls held for one agent at most, and in the process: the next server request fails at once. */
const MAX_HELD_PER_AGENT = 16;
const MAX_HELD = 10_000;
/** After a server's first request, how long more sent with it are gathered into the same round. */
const GATHER_MS = 10;

/**
 * A hop in use by a request (BrokerHops.withHop): `rebind` moves it to another request of the
 * same call (the client's retry), or to none while the call is held, so that its logs and its
 * cancellation follow the request the client is waiting on.
 */
export interface HopUse {
  readonly hop: PooledHop;
  rebind(ctx: ServerContext | undefined): void;
}

/** Who may answer a held call: the same agent, view, server, method, name and arguments. */
export interface BridgeSubject {
  /** The agent (issuer, name, anonymous): what the per-agent bound counts. */
  agent: string;
  owner: string;
  server: string;
}

export function bridgeSubject(
  scope: Scope,
  server: string,
  method: string,
  name: string,
  args: unknown,
): BridgeSubject {
  const p = scope.principal;
  const agent = JSON.stringify([p.issuer ?? null, p.agent, p.anonymous]);
  const digest = createHash("sha256")
    .update(JSON.stringify(args ?? null))
    .digest("base64url");
  return { agent, server, owner: JSON.stringify([agent, scope.view ?? null, server, method, name, digest]) };
}

/** Whether `state` is one the broker issued (a retry of a held call), not a server's own. */
export function isBridgeState(state: unknown): state is string {
  return typeof state === "string" && state.startsWith(BRIDGE_STATE_PREFIX);
}

/** A server's request waiting for the client's answer. */
interface Ask {
  key: string;
  method: string;
  params: unknown;
  answer(result: Result): void;
  fail(err: Error): void;
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

/** One client call relayed to a 2025 server that may ask the client for input. */
class BridgedCall {
  /** Received from the server, not yet given to the client. */
  readonly asks: Ask[] = [];
  /** Given to the client in the last round, waiting for its retry. */
  readonly sent = new Map<string, Ask>();
  use: HopUse | undefined;
  settled: Outcome | undefined;
  /** Wakes the round waiting for the server (an ask arrived, or the call ended). */
  wake: (() => void) | undefined;
  token: string | undefined;
  timer: NodeJS.Timeout | undefined;
  /** Expired or refused: the server's further requests fail at once. */
  closed = false;
  private keys = 0;
  private known: BridgeSubject | undefined;

  /** `subjectOf` is computed once the call is held (a digest of the arguments: not for every call). */
  constructor(private readonly subjectOf: () => BridgeSubject) {}

  get subject(): BridgeSubject {
    return (this.known ??= this.subjectOf());
  }

  ask(method: string, params: unknown): Promise<Result> {
    if (this.closed || this.settled !== undefined)
      return Promise.reject(
        new ProtocolError(JsonRpcCode.InternalError, `${method}: the client's call is over`),
      );
    return new Promise<Result>((answer, fail) => {
      const kind = method === "elicitation/create" ? "elicit" : method === "roots/list" ? "roots" : "sample";
      this.asks.push({ key: `${kind}-${++this.keys}`, method, params, answer, fail });
      this.wake?.();
    });
  }

  failAll(message: string): void {
    for (const ask of [...this.sent.values(), ...this.asks.splice(0)])
      ask.fail(new ProtocolError(JsonRpcCode.InternalError, message));
    this.sent.clear();
  }
}

function outcome(o: Outcome): unknown {
  if (o.ok) return o.value;
  throw o.error;
}

/**
 * The calls held for their client's retry, in this process, by their `requestState`: 32 random
 * bytes, bound to the agent, view, server, method, name and arguments of the call (a retry that
 * differs in any is refused as not pending, like an unknown state), each used once (every round
 * issues a new one), held at most BRIDGE_WAIT_MS, and bounded per agent and in all.
 */
export class InputBridge {
  private readonly held = new Map<string, BridgedCall>();
  private readonly perAgent = new Map<string, number>();

  /**
   * The first round of a call: `start` runs it on a hop (BrokerHops.withHop), handing over the
   * hop it uses so that the server's requests reach this call. Answers the call's result, or an
   * `input_required` result when the server asks for input first.
   */
  async run<T>(
    subject: () => BridgeSubject,
    start: (bind: (use: HopUse) => void) => Promise<T>,
  ): Promise<T | Result> {
    const call = new BridgedCall(subject);
    const work = start((use) => {
      call.use = use;
      use.hop.asker = (method, params) => call.ask(method, params);
    });
    void work.then(
      (value) => this.settle(call, { ok: true, value }),
      (error: unknown) => this.settle(call, { ok: false, error }),
    );
    return (await this.next(call)) as T | Result;
  }

  /**
   * A retry carrying the client's answers (`inputResponses`) and a state the broker issued: the
   * held call's server requests are answered and the call goes on. Refused (input_not_pending)
   * when this process holds no such call for this agent and request: it expired, was answered
   * already, or is held by another replica (a 2026-07-28 request has no session to route by).
   */
  async resume(
    ctx: ServerContext,
    subject: BridgeSubject,
    state: string,
    responses: Record<string, unknown> | undefined,
  ): Promise<Result> {
    const call = this.held.get(state);
    if (call === undefined || call.subject.owner !== subject.owner)
      throw refusedInBand(ctx, {
        reason: "input_not_pending",
        id: ctx.mcpReq.id,
        server: subject.server,
        detail: "call the tool again without requestState",
      });
    this.release(call);
    call.use?.rebind(ctx);
    for (const [key, ask] of call.sent) {
      const response = responses?.[key];
      if (response === undefined || response === null || typeof response !== "object")
        ask.fail(new ProtocolError(JsonRpcCode.InvalidParams, `the client sent no answer to ${key}`));
      else ask.answer(response as Result);
    }
    call.sent.clear();
    return (await this.next(call)) as Result;
  }

  /** Calls held now (for tests and diagnostics). */
  get size(): number {
    return this.held.size;
  }

  /** Ends every held call: their server requests fail (the broker is closing). */
  clear(): void {
    for (const call of [...this.held.values()]) this.expire(call, "the gateway is closing");
  }

  private settle(call: BridgedCall, o: Outcome): void {
    call.settled = o;
    call.wake?.();
  }

  /** Waits for the call's result or the server's next requests, and answers the client's request. */
  private async next(call: BridgedCall): Promise<unknown> {
    for (;;) {
      if (call.settled !== undefined) return outcome(call.settled);
      if (call.asks.length === 0)
        await new Promise<void>((resolve) => {
          call.wake = resolve;
        });
      call.wake = undefined;
      if (call.settled !== undefined) return outcome(call.settled);
      // Requests the server sends together go to the client in one round.
      await new Promise((resolve) => setTimeout(resolve, GATHER_MS));
      if (call.settled !== undefined) return outcome(call.settled);
      const asks = call.asks.splice(0);
      if (!this.hold(call)) {
        for (const ask of asks)
          ask.fail(
            new ProtocolError(
              JsonRpcCode.InternalError,
              `${ask.method}: too many calls wait for this agent's input on the gateway`,
            ),
          );
        continue;
      }
      for (const ask of asks) call.sent.set(ask.key, ask);
      // Held: no request of the client's is attached to the hop until the retry.
      call.use?.rebind(undefined);
      return {
        resultType: "input_required",
        inputRequests: Object.fromEntries(
          asks.map((ask) => [
            ask.key,
            { method: ask.method, ...(ask.params === undefined ? {} : { params: ask.params }) },
          ]),
        ),
        requestState: call.token,
      };
    }
  }

  /** Holds the call under a new state until the client's retry, or refuses when over the bounds. */
  private hold(call: BridgedCall): boolean {
    const agent = call.subject.agent;
    const count = this.perAgent.get(agent) ?? 0;
    if (count >= MAX_HELD_PER_AGENT || this.held.size >= MAX_HELD) return false;
    const token = `${BRIDGE_STATE_PREFIX}${randomBytes(32).toString("base64url")}`;
    call.token = token;
    this.held.set(token, call);
    this.perAgent.set(agent, count + 1);
    call.timer = setTimeout(
      () => this.expire(call, `the client did not answer within ${BRIDGE_WAIT_MS / 1000} s`),
      BRIDGE_WAIT_MS,
    );
    call.timer.unref();
    return true;
  }

  private release(call: BridgedCall): void {
    clearTimeout(call.timer);
    if (call.token === undefined || !this.held.delete(call.token)) return;
    call.token = undefined;
    const count = (this.perAgent.get(call.subject.agent) ?? 1) - 1;
    if (count > 0) this.perAgent.set(call.subject.agent, count);
    else this.perAgent.delete(call.subject.agent);
  }

  /** The client did not retry in time: the server's requests fail, and the call ends as it decides. */
  private expire(call: BridgedCall, message: string): void {
    this.release(call);
    call.closed = true;
    call.use?.rebind(undefined);
    call.failAll(message);
  }
}
