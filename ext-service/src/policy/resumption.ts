import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from "node:crypto";
import type { Exchange, PendingRequest } from "./exchange.js";

/**
 * SSE stream resumption (MCP 2025-11-25, SEP-1699) without reopening security review F4.
 *
 * A client whose POST stream closed mid-call resumes it with a GET carrying `Last-Event-ID`; the
 * answers to the POST's requests then arrive on the GET, an exchange that sent none of them. The
 * gateway only inspects a response under the settings of the request it answers, so every event id
 * it forwards is replaced by a sealed one (AES-256-GCM under the gateway's key) that carries the
 * upstream's id and the requests still waiting at that point, bound to the agent, the server and
 * the session. A resuming GET opens it, sends the upstream its own id, and waits for those requests
 * again. Any replica with the same key can open it, so nothing is kept between requests.
 */

/** Environment variable with the 32-byte key (base64 or 64 hex digits) shared by every replica. */
export const RESUMPTION_KEY_ENV = "MCP_GATEWAY_RESUMPTION_KEY";

const PREFIX = "g1.";
const IV_BYTES = 12;
const TAG_BYTES = 16;
/** A sealed id longer than this was not minted here (a batch is bounded well below it). */
const MAX_SEALED_CHARS = 16_384;

interface SealedState {
  /** The upstream's event id. */
  e: string;
  /** The requests still waiting: [idKey, method, target]. */
  p: [string, string, string | null][];
}

export interface OpenedResumption {
  upstreamEventId: string;
  pending: [string, PendingRequest][];
}

/** Without a configured key, one per process: it outlives config reloads, not restarts. */
let processKey: Buffer | undefined;

/** Reads the key from `value` (base64 or hex, 32 bytes); this process's own key when unset. */
export function resumptionKey(value: string | undefined): Buffer {
  if (value === undefined || value.trim() === "") return (processKey ??= randomBytes(32));
  const text = value.trim();
  const key = /^[0-9a-fA-F]{64}$/.test(text) ? Buffer.from(text, "hex") : Buffer.from(text, "base64");
  if (key.byteLength !== 32)
    throw new Error(`${RESUMPTION_KEY_ENV} must hold 32 bytes (base64 or 64 hex digits)`);
  return key;
}

/** Who may resume: the same agent of the same issuer, on the same server and session. */
function binding(exchange: Exchange): Buffer {
  const p = exchange.principal;
  return Buffer.from(
    JSON.stringify([
      p?.issuer ?? null,
      p?.agent ?? null,
      exchange.server ?? null,
      exchange.sessionId ?? null,
    ]),
  );
}

export class StreamResumption {
  private readonly key: Buffer;
  private readonly ivKey: Buffer;

  constructor(secret: Buffer) {
    if (secret.byteLength !== 32) throw new Error("the resumption key must be 32 bytes");
    const derive = (info: string) => Buffer.from(hkdfSync("sha256", secret, "", info, 32));
    this.key = derive("mcp-gateway resumption aes-256-gcm");
    this.ivKey = derive("mcp-gateway resumption iv");
  }

  /** The event id the client sees for the upstream's `upstreamEventId` at this point of `exchange`. */
  seal(exchange: Exchange, upstreamEventId: string): string {
    const state: SealedState = {
      e: upstreamEventId,
      p: [...exchange.pending].map(([key, r]) => [key, r.method, r.target ?? null]),
    };
    const plain = JSON.stringify(state);
    const aad = binding(exchange);
    // A synthetic IV (HMAC of what is sealed): never reused for two different ids, and the same
    // stream gives the same ids however its bytes were chunked.
    const iv = createHmac("sha256", this.ivKey)
      .update(aad)
      .update("\0")
      .update(plain)
      .digest()
      .subarray(0, IV_BYTES);
    const cipher = createCipheriv("aes-256-gcm", this.key, iv);
    cipher.setAAD(aad);
    const body = Buffer.concat([cipher.update(plain, "utf8"), cipher.final()]);
    return PREFIX + Buffer.concat([iv, body, cipher.getAuthTag()]).toString("base64url");
  }

  /** Opens a `Last-Event-ID`; undefined when it was not sealed here for this agent, server and session. */
  open(exchange: Exchange, sealed: string): OpenedResumption | undefined {
    if (!sealed.startsWith(PREFIX) || sealed.length > MAX_SEALED_CHARS) return undefined;
    const raw = Buffer.from(sealed.slice(PREFIX.length), "base64url");
    if (raw.byteLength < IV_BYTES + TAG_BYTES + 2) return undefined;
    let text: string;
    try {
      const decipher = createDecipheriv("aes-256-gcm", this.key, raw.subarray(0, IV_BYTES));
      decipher.setAAD(binding(exchange));
      decipher.setAuthTag(raw.subarray(raw.byteLength - TAG_BYTES));
      text = Buffer.concat([
        decipher.update(raw.subarray(IV_BYTES, raw.byteLength - TAG_BYTES)),
        decipher.final(),
      ]).toString("utf8");
    } catch {
      return undefined; // tampered, another key, or another agent/server/session
    }
    const state = JSON.parse(text) as SealedState;
    return {
      upstreamEventId: state.e,
      pending: state.p.map(([key, method, target]) => [key, { method, target: target ?? undefined }]),
    };
  }
}
