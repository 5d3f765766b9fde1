import { randomBytes } from "node:crypto";

/**
 * Envoy's RING_HASH load balancer as the Envoy-role front uses it for a cluster of several
 * endpoints (envoy.yaml's `mcp_gateway_broker`, hashed on `mcp-session-id` by the broker routes).
 * From Envoy's source: the ring (`source/extensions/load_balancing_policies/ring_hash/
 * ring_hash_lb.cc`, `Ring::Ring`, `Ring::chooseHost`), the request's hash
 * (`source/common/http/hash_policy.cc` `HeaderHashMethod`) and the fallback without one
 * (`source/common/upstream/thread_aware_lb_impl.cc`: a random hash).
 *
 * Modelled: equal weights, XX_HASH, the default `minimum_ring_size` (1024), host keys that are the
 * endpoints' addresses (`use_hostname_for_hashing` off, no `hash_key` metadata), one header value.
 * Not modelled: health (every endpoint is taken as healthy), priorities, localities, retries'
 * `attempt` offset, `hash_balance_factor`.
 */

const MASK = (1n << 64n) - 1n;
const P1 = 0x9e3779b185ebca87n;
const P2 = 0xc2b2ae3d27d4eb4fn;
const P3 = 0x165667b19e3779f9n;
const P4 = 0x85ebca77c2b2ae63n;
const P5 = 0x27d4eb2f165667c5n;

function rotl(x: bigint, r: bigint): bigint {
  return ((x << r) | (x >> (64n - r))) & MASK;
}

function round(acc: bigint, lane: bigint): bigint {
  return (rotl((acc + lane * P2) & MASK, 31n) * P1) & MASK;
}

function merge(acc: bigint, lane: bigint): bigint {
  return ((acc ^ round(0n, lane)) * P1 + P4) & MASK;
}

/** XXH64 with seed 0, as Envoy's `HashUtil::xxHash64` (source/common/common/hash.h). */
export function xxHash64(input: string | Uint8Array): bigint {
  const bytes = typeof input === "string" ? Buffer.from(input, "utf8") : Buffer.from(input);
  const len = bytes.length;
  let p = 0;
  let h: bigint;
  if (len >= 32) {
    let v1 = (P1 + P2) & MASK;
    let v2 = P2;
    let v3 = 0n;
    let v4 = (0n - P1) & MASK;
    for (; p + 32 <= len; p += 32) {
      v1 = round(v1, bytes.readBigUInt64LE(p));
      v2 = round(v2, bytes.readBigUInt64LE(p + 8));
      v3 = round(v3, bytes.readBigUInt64LE(p + 16));
      v4 = round(v4, bytes.readBigUInt64LE(p + 24));
    }
    h = (rotl(v1, 1n) + rotl(v2, 7n) + rotl(v3, 12n) + rotl(v4, 18n)) & MASK;
    for (const v of [v1, v2, v3, v4]) h = merge(h, v);
  } else {
    h = P5;
  }
  h = (h + BigInt(len)) & MASK;
  for (; p + 8 <= len; p += 8) {
    h ^= round(0n, bytes.readBigUInt64LE(p));
    h = (rotl(h, 27n) * P1 + P4) & MASK;
  }
  if (p + 4 <= len) {
    h ^= (BigInt(bytes.readUInt32LE(p)) * P1) & MASK;
    h = (rotl(h, 23n) * P2 + P3) & MASK;
    p += 4;
  }
  for (; p < len; p++) {
    h ^= (BigInt(bytes[p]!) * P5) & MASK;
    h = (rotl(h, 11n) * P1) & MASK;
  }
  h ^= h >> 33n;
  h = (h * P2) & MASK;
  h ^= h >> 29n;
  h = (h * P3) & MASK;
  h ^= h >> 32n;
  return h;
}

/** Envoy's default `minimum_ring_size`. */
const MIN_RING_SIZE = 1024;

/** A ring over `hosts` (each host's key is its address, "ip:port"), equal weights. */
export class RingHash<Host extends string = string> {
  private readonly ring: { hash: bigint; host: Host }[] = [];

  constructor(hosts: readonly Host[]) {
    if (hosts.length === 0) return;
    // scale = ceil(min weight * min ring size) / min weight; with equal weights each host gets
    // ceil(1024 / N) entries, keyed "<address>_<i>".
    const perHost = Math.ceil(MIN_RING_SIZE / hosts.length);
    for (const host of hosts)
      for (let i = 0; i < perHost; i++) this.ring.push({ hash: xxHash64(`${host}_${i}`), host });
    this.ring.sort((a, b) => (a.hash < b.hash ? -1 : a.hash > b.hash ? 1 : 0));
  }

  /** The host for a request hash: the first ring entry at or after it, wrapping to the first. */
  pick(hash: bigint): Host | undefined {
    const ring = this.ring;
    if (ring.length === 0) return undefined;
    let low = 0;
    let high = ring.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (ring[mid]!.hash < hash) low = mid + 1;
      else high = mid;
    }
    return ring[low === ring.length ? 0 : low]!.host;
  }

  /**
   * The host for a request whose hash policy hashes `header`: its value's xxHash64, or a random
   * hash when the request has none (Envoy's fallback: the pick is then random).
   */
  pickFor(headerValue: string | undefined): Host | undefined {
    return this.pick(headerValue === undefined ? randomBytes(8).readBigUInt64LE(0) : xxHash64(headerValue));
  }
}
