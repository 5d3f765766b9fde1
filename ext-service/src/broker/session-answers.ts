import type { ServerResponse } from "node:http";
import { ProtocolError, isJSONRPCResponse, type JSONRPCMessage } from "@modelcontextprotocol/server";
import { Reasons } from "../policy/reasons.js";
import type { Logger } from "../telemetry/logger.js";
import { answerKey, type AnswerRelay } from "./answers.js";
import { HOP_TIMEOUT_MS } from "./hops.js";
import type { LiveSession } from "./live-session.js";
import type { BrokerRefusal } from "./refusals.js";

/**
 * How long a request sent to the client may wait for its answer from another replica at most: the
 * SDK's own timeout (HOP_TIMEOUT_MS) or a cancellation normally ends it first.
 */
const AWAIT_ANSWER_MS = HOP_TIMEOUT_MS + 5_000;

/**
 * The answers a 2025 session's client gives to the requests relayed to it (elicitation, sampling,
 * roots), wherever they arrive: taken by the session here, or handed over to and from other
 * replicas through the answer relay (answers.ts).
 */
export class SessionAnswers {
  constructor(
    private readonly logger: Logger,
    /** The broker's own prefix of wire ids (Broker.wireIdPrefix). */
    private readonly wireIdPrefix: string,
  ) {}

  /**
   * With an answer relay: every request the session's server sends the client of `live` goes out
   * under an id of this process and waits for its answer (expectAnswer).
   */
  wire(live: LiveSession, relay: AnswerRelay): void {
    const transport = live.transport;
    // Every request the session's server sends the client goes out under an id of this process
    // (wireIdPrefix) and waits for its answer here and, through the store, from any replica the
    // client POSTs it to; until answered or cancelled. The answer gets the server's id back.
    const wireId = (serverId: unknown) => `${this.wireIdPrefix}${String(serverId)}`;
    const send = transport.send.bind(transport);
    // Shape checks only (no schema parse): every result the session sends passes through here.
    transport.send = async (message, options) => {
      if ("method" in message) {
        if ("id" in message) {
          const id = wireId(message.id);
          await this.expectAnswer(live, relay, id, message.id);
          return send({ ...message, id }, options);
        }
        if (message.method === "notifications/cancelled" && message.params?.requestId !== undefined) {
          const id = wireId(message.params.requestId);
          this.answered(live, answerKey(id));
          return send({ ...message, params: { ...message.params, requestId: id } }, options);
        }
      }
      return send(message, options);
    };
    const receive = transport.onmessage;
    transport.onmessage = (message, extra) => {
      if (!("method" in message) && "id" in message) {
        const key = answerKey(message.id);
        const waiting = live.awaiting.get(key);
        if (waiting !== undefined) {
          this.answered(live, key);
          return receive?.({ ...message, id: waiting.serverId }, extra);
        }
      }
      receive?.(message, extra);
    };
  }

  /**
   * Answers the client POSTed here to requests this process does not wait for (`elsewhere`; the
   * session's requests did not stick to one replica): each is handed over to the replica that
   * waits for it (answers.ts), the rest taken here. 202 once every answer was taken, as the
   * transport spec asks; 409 answer_not_pending when no replica waits for one (it timed out or was
   * cancelled); 503 answer_relay_unavailable when the store cannot be reached (the waiting replica
   * fails its request then: answerLost).
   */
  async handOver(
    res: ServerResponse,
    relay: AnswerRelay,
    sessionId: string,
    held: LiveSession | undefined,
    { elsewhere, answers }: { elsewhere: JSONRPCMessage[]; answers: JSONRPCMessage[] },
  ): Promise<BrokerRefusal | undefined> {
    const handed = await Promise.allSettled(
      elsewhere.map((answer) =>
        relay.handOver(sessionId, answerKey((answer as { id: unknown }).id), JSON.stringify(answer)),
      ),
    );
    if (held)
      for (const answer of answers)
        if (!elsewhere.includes(answer) && isJSONRPCResponse(answer)) held.transport.onmessage?.(answer);
    const failed = handed.find((r) => r.status === "rejected");
    if (failed) {
      this.logger.error(
        { error: (failed.reason as { message?: string } | null)?.message },
        "aggregated endpoint: cannot hand an answer to a relayed request over to its replica",
      );
      return { reason: "answer_relay_unavailable", id: null };
    }
    if (handed.some((r) => r.status === "fulfilled" && !r.value)) return this.notPending(held !== undefined);
    res.writeHead(202);
    res.end();
    return undefined;
  }

  /**
   * The request the session's server numbered `serverId`, about to go to the client of `live` as
   * `wireId`, waits for its answer: taken here (the transport's onmessage) or handed over by
   * another replica (handOverAnswers there). Throws, so the request is not sent and fails at once,
   * when the store cannot take a hand-over.
   */
  private async expectAnswer(
    live: LiveSession,
    relay: AnswerRelay,
    wireId: string,
    serverId: string | number,
  ): Promise<void> {
    const key = answerKey(wireId);
    let stopTaking: () => void;
    try {
      stopTaking = await relay.expect(
        live.scope.sessionId ?? "",
        key,
        (answer) => this.answerHandedOver(live, key, answer),
        () => this.answerLost(live, wireId),
      );
    } catch (err) {
      this.logger.error(
        { error: (err as { message?: string } | null)?.message },
        "aggregated endpoint: cannot await an answer from other replicas; the relayed request fails",
      );
      const info = Reasons.answer_relay_unavailable;
      throw new ProtocolError(info.code, info.message, { reason: "answer_relay_unavailable" });
    }
    const expiry = setTimeout(() => this.answered(live, key), AWAIT_ANSWER_MS);
    expiry.unref();
    live.awaiting.set(key, {
      serverId,
      stop: () => {
        clearTimeout(expiry);
        stopTaking();
      },
    });
  }

  /** Request `key` of `live` waits no more (answered, cancelled, or given up). */
  private answered(live: LiveSession, key: string): void {
    const waiting = live.awaiting.get(key);
    if (waiting === undefined) return;
    live.awaiting.delete(key);
    waiting.stop();
  }

  /** An answer another replica handed over: given to the session's server as if POSTed here. */
  private answerHandedOver(live: LiveSession, key: string, answer: string): void {
    let message: unknown;
    try {
      message = JSON.parse(answer);
    } catch {
      return;
    }
    if (!live.awaiting.has(key) || !isJSONRPCResponse(message) || answerKey(message.id) !== key) return;
    live.transport.onmessage?.(message);
  }

  /**
   * The store's subscription for request `wireId` dropped: an answer handed over meanwhile is
   * lost, so the request fails now (answer_relay_unavailable, to the server that asked) rather
   * than waiting out its timeout.
   */
  private answerLost(live: LiveSession, wireId: string): void {
    if (!live.awaiting.has(answerKey(wireId))) return;
    this.logger.warn(
      {},
      "aggregated endpoint: lost the state store while a relayed request awaited its answer; it fails",
    );
    const info = Reasons.answer_relay_unavailable;
    live.transport.onmessage?.({
      jsonrpc: "2.0",
      id: wireId,
      error: { code: info.code, message: info.message, data: { reason: "answer_relay_unavailable" } },
    });
  }

  notPending(sessionHeld: boolean): BrokerRefusal {
    this.logger.warn(
      { sessionHeld },
      "aggregated endpoint: an answer to a relayed request reached a replica where none is pending",
    );
    return { reason: "answer_not_pending", id: null };
  }
}
