import { createCipheriv, createDecipheriv, createHash, createHmac, hkdfSync, randomBytes } from "node:crypto";

/**
 * The one authenticated-encryption primitive behind every value the gateway hands a client and
 * later takes back: session ids (policy/session-seal.ts), SSE event ids (policy/resumption.ts)
 * and the broker's hop tokens. AES-256-GCM with a synthetic IV, under keys derived from the
 * `sessions.keys` secrets, so any replica with the same secrets opens what another sealed and
 * nothing needs storing.
 *
 * - Each use has its own purpose: its keys are derived separately (HKDF info), so a value sealed
 *   for one purpose never opens as another, whatever the associated data.
 * - The associated data binds a value to its owner (issuer, agent, server, session): it opens
 *   only for exactly that owner, and a changed byte fails the tag.
 * - The IV is an HMAC of associated data and content: equal inputs seal to equal values on every
 *   replica (a session keeps one id), and two different contents never share an IV.
 * - Keys rotate: the first secret seals, every secret opens; a value names its key by a short id.
 */

const KEY_ID_BYTES = 4;
const IV_BYTES = 12;
const TAG_BYTES = 16;
/** Secrets shorter than this are refused: a sealing key must not be guessable. */
export const MIN_SECRET_LENGTH = 32;

/** Every sealed value starts with this (an agent's JWT starts with "eyJ"). */
export const SEALED_PREFIX = "g1.";
const BASE64URL = /^[A-Za-z0-9_-]+$/;

interface PurposeKey {
  id: Buffer;
  key: Buffer;
  ivKey: Buffer;
}

function deriveKey(secret: string | Uint8Array, purpose: string): PurposeKey {
  // HKDF turns any secret of enough entropy (a passphrase, 32 random bytes as base64) into the
  // 256-bit keys; the key id is a hash of the derived key, so it reveals nothing of the secret.
  const derive = (what: string) =>
    Buffer.from(hkdfSync("sha256", secret, "mcp-gateway/seal v1", `${purpose} ${what}`, 32));
  const key = derive("aes-256-gcm");
  const id = createHash("sha256").update("mcp-gateway/seal key id").update(key).digest();
  return { id: id.subarray(0, KEY_ID_BYTES), key, ivKey: derive("synthetic iv") };
}

/** The key used when none is configured: values then open only within this process. */
let processSecret: Buffer | undefined;
export function processSealSecret(): Buffer {
  processSecret ??= randomBytes(32);
  return processSecret;
}

export class Sealer {
  private readonly keys: readonly PurposeKey[];

  /**
   * `secrets[0]` seals; all of them open (the rest are previous keys, kept while values age out).
   * `maxLength` bounds what `open` decodes at all.
   */
  constructor(
    secrets: readonly (string | Uint8Array)[],
    purpose: string,
    private readonly maxLength: number,
  ) {
    if (secrets.length === 0) throw new Error("a sealer needs at least one secret");
    this.keys = secrets.map((s) => deriveKey(s, purpose));
  }

  /** Seals `content` bound to `aad`; the result is a valid header value. */
  seal(aad: Uint8Array, content: string): string {
    const { id, key, ivKey } = this.keys[0]!;
    const iv = createHmac("sha256", ivKey)
      .update(aad)
      .update("\u0000")
      .update(content)
      .digest()
      .subarray(0, IV_BYTES);
    const cipher = createCipheriv("aes-256-gcm", key, iv);
    cipher.setAAD(aad);
    const body = Buffer.concat([cipher.update(content, "utf8"), cipher.final()]);
    return SEALED_PREFIX + Buffer.concat([id, iv, body, cipher.getAuthTag()]).toString("base64url");
  }

  /**
   * The content sealed with `aad`, or undefined when `sealed` is not a value sealed here for it
   * with a key still held (foreign, tampered, another owner's or purpose's, malformed).
   */
  open(sealed: string, aad: Uint8Array): string | undefined {
    if (sealed.length > this.maxLength || !sealed.startsWith(SEALED_PREFIX)) return undefined;
    const text = sealed.slice(SEALED_PREFIX.length);
    if (!BASE64URL.test(text)) return undefined;
    const raw = Buffer.from(text, "base64url");
    // One spelling per value: unused trailing bits or a dangling character would be another
    // string that opens the same one.
    if (raw.length < KEY_ID_BYTES + IV_BYTES + TAG_BYTES || raw.toString("base64url") !== text)
      return undefined;
    const keyId = raw.subarray(0, KEY_ID_BYTES);
    const purposeKey = this.keys.find((k) => k.id.equals(keyId));
    if (!purposeKey) return undefined;
    const iv = raw.subarray(KEY_ID_BYTES, KEY_ID_BYTES + IV_BYTES);
    const tag = raw.subarray(raw.length - TAG_BYTES);
    const body = raw.subarray(KEY_ID_BYTES + IV_BYTES, raw.length - TAG_BYTES);
    try {
      const decipher = createDecipheriv("aes-256-gcm", purposeKey.key, iv, { authTagLength: TAG_BYTES });
      decipher.setAAD(aad);
      decipher.setAuthTag(tag);
      return Buffer.concat([decipher.update(body), decipher.final()]).toString("utf8");
    } catch {
      return undefined; // the tag did not verify: another owner's value, or a changed byte
    }
  }
}
