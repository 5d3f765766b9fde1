import { createCipheriv, createDecipheriv, createHash, createHmac, hkdfSync, randomBytes } from "node:crypto";

/**
 * Gateway-owned session ids. The client never sees an MCP server's own `Mcp-Session-Id`: the
 * gateway seals it (AES-256-GCM) together with whatever routing it needs, and binds the sealed id
 * to the session's owner (issuer, agent, server) as additional authenticated data. Such an id
 * opens only for that owner and only with a key the gateway holds, so
 *   - another agent that learns the id cannot use it (it reads as an unknown session),
 *   - a changed byte reads the same way (the tag fails),
 *   - every replica with the same keys serves it, with no shared store.
 * Keys rotate: the first key seals, every key opens (ids say which key sealed them).
 */

/** Who a session belongs to. A sealed id opens only for exactly this owner. */
export interface SessionOwner {
  /** Undefined for the anonymous principal of `auth.mode: optional`. */
  issuer: string | undefined;
  agent: string;
  /** The server name in the route, or the name of an aggregated view. */
  server: string;
}

/** Length of the key id at the start of a sealed id, in bytes. */
const KEY_ID_BYTES = 4;
const IV_BYTES = 12;
const TAG_BYTES = 16;
/** A sealed id longer than this is not one of ours: refused before any decoding. */
export const MAX_SEALED_LENGTH = 4096;
/** Secrets shorter than this are refused: a session key must not be guessable. */
export const MIN_SECRET_LENGTH = 32;

const PREFIX = "g1.";
const BASE64URL = /^[A-Za-z0-9_-]+$/;

interface SealKey {
  id: Buffer;
  key: Buffer;
  /** Derives the IV from the owner and content (see seal). */
  ivKey: Buffer;
}

function deriveKey(secret: string | Uint8Array): SealKey {
  // HKDF turns any secret of enough entropy (a passphrase, 32 random bytes as base64) into the
  // 256-bit AES key; the key id is a hash of the derived key, so it reveals nothing of the secret.
  const key = Buffer.from(hkdfSync("sha256", secret, "mcp-gateway/session-seal", "aes-256-gcm v1", 32));
  const ivKey = Buffer.from(hkdfSync("sha256", secret, "mcp-gateway/session-seal", "iv v1", 32));
  const id = createHash("sha256").update("mcp-gateway/session-key-id").update(key).digest();
  return { id: id.subarray(0, KEY_ID_BYTES), key, ivKey };
}

function ownerData(owner: SessionOwner): Buffer {
  // JSON of an array: unambiguous whatever the names contain.
  return Buffer.from(
    JSON.stringify(["mcp-gateway session v1", owner.issuer ?? null, owner.agent, owner.server]),
  );
}

/** The per-process key used when no key is configured: sessions then hold only within this process. */
let processSecret: Buffer | undefined;
export function processSessionSecret(): Buffer {
  processSecret ??= randomBytes(32);
  return processSecret;
}

export class SessionSealer {
  private readonly keys: readonly SealKey[];

  /** `secrets[0]` seals; all of them open (the rest are previous keys, kept while ids age out). */
  constructor(secrets: readonly (string | Uint8Array)[]) {
    if (secrets.length === 0) throw new Error("SessionSealer needs at least one secret");
    this.keys = secrets.map(deriveKey);
  }

  /** Seals `content` (e.g. an upstream session id) for `owner`; the result is a valid header value. */
  seal(owner: SessionOwner, content: string): string {
    const { id, key, ivKey } = this.keys[0]!;
    const aad = ownerData(owner);
    // The IV is a MAC of owner and content (the synthetic-IV construction): the same session
    // seals to the same id on every replica and every response, and two different contents
    // never share an IV (which would break GCM).
    const iv = createHmac("sha256", ivKey)
      .update(aad)
      .update("\u0000")
      .update(content)
      .digest()
      .subarray(0, IV_BYTES);
    const cipher = createCipheriv("aes-256-gcm", key, iv);
    cipher.setAAD(aad);
    const body = Buffer.concat([cipher.update(content, "utf8"), cipher.final()]);
    return PREFIX + Buffer.concat([id, iv, body, cipher.getAuthTag()]).toString("base64url");
  }

  /**
   * The content sealed for `owner`, or undefined when `sealed` is not an id this gateway sealed
   * for this owner with a key it still holds (foreign, tampered, another owner's, or malformed).
   */
  open(sealed: string, owner: SessionOwner): string | undefined {
    if (sealed.length > MAX_SEALED_LENGTH || !sealed.startsWith(PREFIX)) return undefined;
    const text = sealed.slice(PREFIX.length);
    if (!BASE64URL.test(text)) return undefined;
    const raw = Buffer.from(text, "base64url");
    // One spelling per id: unused trailing bits or a dangling character would be another string
    // that opens the same session.
    if (raw.length < KEY_ID_BYTES + IV_BYTES + TAG_BYTES || raw.toString("base64url") !== text)
      return undefined;
    const keyId = raw.subarray(0, KEY_ID_BYTES);
    const sealKey = this.keys.find((k) => k.id.equals(keyId));
    if (!sealKey) return undefined;
    const iv = raw.subarray(KEY_ID_BYTES, KEY_ID_BYTES + IV_BYTES);
    const tag = raw.subarray(raw.length - TAG_BYTES);
    const body = raw.subarray(KEY_ID_BYTES + IV_BYTES, raw.length - TAG_BYTES);
    try {
      const decipher = createDecipheriv("aes-256-gcm", sealKey.key, iv, { authTagLength: TAG_BYTES });
      decipher.setAAD(ownerData(owner));
      decipher.setAuthTag(tag);
      return Buffer.concat([decipher.update(body), decipher.final()]).toString("utf8");
    } catch {
      return undefined; // the tag did not verify: another owner's id, or a changed byte
    }
  }
}

/** What a single-server session id carries: the server's own id and the replica that owns it. */
export interface UpstreamSession {
  /** The MCP server's `Mcp-Session-Id`. */
  upstream: string;
  /** Which of the server's upstream URLs created the session (the edge routes the session there). */
  endpoint?: string;
}

export function sealUpstreamSession(
  sealer: SessionSealer,
  owner: SessionOwner,
  session: UpstreamSession,
): string {
  return sealer.seal(
    owner,
    JSON.stringify(
      session.endpoint === undefined ? [session.upstream] : [session.upstream, session.endpoint],
    ),
  );
}

export function openUpstreamSession(
  sealer: SessionSealer,
  sealed: string,
  owner: SessionOwner,
): UpstreamSession | undefined {
  const content = sealer.open(sealed, owner);
  if (content === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(content);
  } catch {
    return undefined;
  }
  if (!Array.isArray(value) || typeof value[0] !== "string") return undefined;
  return typeof value[1] === "string" ? { upstream: value[0], endpoint: value[1] } : { upstream: value[0] };
}
