/**
 * The client's answers to relayed requests (elicitation, sampling, roots) across replicas. A
 * request the broker relays to the agent's client in a 2025 session waits for its answer in the
 * replica that sent it; the client POSTs the answer wherever its balancer sends it. With a shared
 * store (Redis), the replica that gets an answer it is not waiting for hands it over on a channel
 * named after the session and the request id, and the waiting replica takes it from there.
 *
 * Only the session's own agent can hand an answer over: the receiving replica opens the sealed
 * session id for the agent that POSTs it (Broker.handle) before it hands anything over, and the
 * channel is a digest of that id and the request id, so an answer reaches only a request of the
 * same session (docs/design/broker.md).
 */
export interface AnswerRelay {
  /**
   * The waiting side: `onAnswer` gets the answers to request `requestId` (its JSON-RPC id as
   * JSON) of session `sessionId` that other replicas receive. Resolves, to the function that
   * stops it, once the store confirmed the subscription (so the request may go out); rejects when
   * the store cannot be reached. `onLost` is called (once, the subscription ended) when an answer
   * may have been missed since: the store's connection dropped.
   */
  expect(
    sessionId: string,
    requestId: string,
    onAnswer: (answer: string) => void,
    onLost: () => void,
  ): Promise<() => void>;
  /**
   * The receiving side: hands `answer` (a JSON-RPC response, as JSON) to the replica waiting for
   * request `requestId` of session `sessionId`. Resolves to whether one took it (none: no replica
   * waits for it); rejects when the store cannot be reached.
   */
  handOver(sessionId: string, requestId: string, answer: string): Promise<boolean>;
}

/** A JSON-RPC id as the relay names it: `1` and `"1"` are different requests. */
export function answerKey(id: unknown): string {
  return JSON.stringify(id);
}
