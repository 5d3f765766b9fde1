import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import type { ConnectionOptions } from "node:tls";
import { Redis, ReplyError, type RedisOptions } from "ioredis";
import { StoreUnavailable, type ChargeResult, type CounterCharge, type StateStore } from "./store.js";

/**
 * All-or-nothing charge of N counters. KEYS: the counters; ARGV: amount, limit, ttl (ms) per key.
 * Returns {applied (0|1), value per key}. One script, so no other client runs between the
 * check and the increments: replicas sharing Redis never overshoot a limit together.
 */
const CHARGE_ALL = `
local n = #KEYS
local values = {}
local fits = 1
for i = 1, n do
  local v = tonumber(redis.call('GET', KEYS[i]) or '0')
  values[i] = v
  if v + tonumber(ARGV[3 * i - 2]) > tonumber(ARGV[3 * i - 1]) then fits = 0 end
end
if fits == 1 then
  for i = 1, n do
    values[i] = redis.call('INCRBY', KEYS[i], ARGV[3 * i - 2])
    if redis.call('PTTL', KEYS[i]) < 0 then redis.call('PEXPIRE', KEYS[i], ARGV[3 * i]) end
  end
end
table.insert(values, 1, fits)
return values
`;

/**
 * GCRA token bucket on Redis' own clock (TIME), so replicas with skewed clocks agree.
 * KEYS[1]: the bucket; ARGV: interval per token (ms), burst, hits (tokens to take; 0 only asks).
 * Returns 0, or the ms to wait.
 */
const TAKE_TOKEN = `
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local hits = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local nextTat = tat + hits * interval
local allowedAt = nextTat - burst * interval
if allowedAt > now then return math.ceil(allowedAt - now) end
if hits == 0 then return 0 end
redis.call('SET', KEYS[1], string.format('%.3f', nextTat), 'PX', math.max(1, math.ceil(nextTat - now)))
return 0
`;

/** Set only if the value is `expected` (ARGV[1], with ARGV[2] = '1' meaning "absent"). */
const COMPARE_AND_SET = `
local current = redis.call('GET', KEYS[1])
if ARGV[2] == '1' then
  if current then return 0 end
elseif current ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
return 1
`;

interface ScriptCommands {
  chargeAll(numberOfKeys: number, ...args: (string | number)[]): Promise<number[]>;
  takeToken(key: string, interval: number, burst: number, hits: number): Promise<number>;
  compareAndSet(key: string, expected: string, absent: string, value: string, ttlMs: number): Promise<number>;
}

export interface RedisStoreOptions {
  /** redis://[user:password@]host:port[/db] or rediss:// for TLS. */
  url: string;
  username?: string;
  password?: string;
  /** TLS settings (CA, client certificate); `rediss:` URLs use TLS even without them. */
  tls?: ConnectionOptions;
  /** Prepended to every key and channel, so several gateways can share one Redis. */
  keyPrefix: string;
  connectTimeoutMs: number;
  /** A command not answered in this time fails (StoreUnavailable), instead of stalling requests. */
  commandTimeoutMs: number;
}

/** The TLS options of a `tls` config section: files (relative to `baseDir`) read once at start. */
export function tlsOptions(
  tls: {
    caFile?: string;
    certFile?: string;
    keyFile?: string;
    serverName?: string;
  },
  baseDir = process.cwd(),
): ConnectionOptions {
  const read = (file: string) => readFileSync(resolve(baseDir, file));
  return {
    ...(tls.caFile ? { ca: read(tls.caFile) } : {}),
    ...(tls.certFile ? { cert: read(tls.certFile) } : {}),
    ...(tls.keyFile ? { key: read(tls.keyFile) } : {}),
    ...(tls.serverName ? { servername: tls.serverName } : {}),
  };
}

/**
 * The shared store on Redis (ioredis). Commands never queue while Redis is away: they fail at
 * once with StoreUnavailable, and each feature applies its documented behaviour (budgets refuse,
 * the cache is skipped, rate limits fall back to each replica's own bucket). The client
 * reconnects by itself, backing off to one attempt every 2 s; available() follows it.
 */
export class RedisStore implements StateStore {
  readonly kind = "redis";
  private readonly client: Redis;
  private subscriber: Redis | undefined;
  private readonly channels = new Map<string, Set<(message: string) => void>>();
  /** Per subscribed channel: Redis' confirmation of its SUBSCRIBE. */
  private readonly confirmations = new Map<string, Promise<unknown>>();
  /** The `lost` callbacks of confirmed subscriptions (subscribeConfirmed). */
  private readonly confirmed = new Set<() => void>();
  private readonly availability = new Set<(available: boolean) => void>();
  private up = false;
  private closed = false;

  constructor(private readonly options: RedisStoreOptions) {
    this.client = new Redis(this.connection.url, this.clientOptions(options.keyPrefix));
    this.client.defineCommand("chargeAll", { lua: CHARGE_ALL });
    this.client.defineCommand("takeToken", { lua: TAKE_TOKEN, numberOfKeys: 1 });
    this.client.defineCommand("compareAndSet", { lua: COMPARE_AND_SET, numberOfKeys: 1 });
    this.client.on("ready", () => this.setUp(true));
    this.client.on("close", () => this.setUp(false));
    // Connection errors are reported through availability; the client keeps reconnecting.
    this.client.on("error", () => {});
    this.client.connect().catch(() => {});
  }

  /** Resolves once connected, or rejects after `timeoutMs`. */
  waitUntilAvailable(timeoutMs: number): Promise<void> {
    if (this.up) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        stop();
        reject(new StoreUnavailable(`Redis not reachable within ${timeoutMs} ms`));
      }, timeoutMs);
      const stop = this.onAvailability((up) => {
        if (!up) return;
        clearTimeout(timer);
        stop();
        resolve();
      });
    });
  }

  async chargeAll(charges: readonly CounterCharge[]): Promise<ChargeResult> {
    if (charges.length === 0) return { applied: true, values: [] };
    const args: (string | number)[] = charges.map((c) => c.key);
    for (const c of charges) args.push(c.amount, c.limit, Math.max(1, Math.ceil(c.ttlMs)));
    const reply = await this.run(() => this.scripts.chargeAll(charges.length, ...args));
    return { applied: reply[0] === 1, values: reply.slice(1).map(Number) };
  }

  takeToken(key: string, ratePerSecond: number, burst: number, hits = 1): Promise<number> {
    return this.run(() => this.scripts.takeToken(key, 1000 / ratePerSecond, burst, hits));
  }

  async get(key: string): Promise<string | undefined> {
    return (await this.run(() => this.client.get(key))) ?? undefined;
  }

  async set(key: string, value: string, ttlMs: number): Promise<void> {
    await this.run(() => this.client.set(key, value, "PX", Math.max(1, Math.ceil(ttlMs))));
  }

  async compareAndSet(
    key: string,
    expected: string | undefined,
    value: string,
    ttlMs: number,
  ): Promise<boolean> {
    const done = await this.run(() =>
      this.scripts.compareAndSet(
        key,
        expected ?? "",
        expected === undefined ? "1" : "0",
        value,
        Math.max(1, Math.ceil(ttlMs)),
      ),
    );
    return done === 1;
  }

  async delete(key: string): Promise<void> {
    await this.run(() => this.client.del(key));
  }

  publish(channel: string, message: string): Promise<number> {
    return this.run(() => this.client.publish(this.options.keyPrefix + channel, message));
  }

  subscribe(channel: string, listener: (message: string) => void): () => void {
    const name = this.options.keyPrefix + channel;
    let listeners = this.channels.get(name);
    if (!listeners) {
      this.channels.set(name, (listeners = new Set()));
      // The client resubscribes by itself after a reconnect.
      const confirmation = this.feed().subscribe(name);
      confirmation.catch(() => {});
      this.confirmations.set(name, confirmation);
    }
    listeners.add(listener);
    return () => {
      listeners.delete(listener);
      if (listeners.size === 0 && this.channels.get(name) === listeners) {
        this.channels.delete(name);
        this.confirmations.delete(name);
        this.subscriber?.unsubscribe(name).catch(() => {});
      }
    };
  }

  async subscribeConfirmed(
    channel: string,
    listener: (message: string) => void,
    lost: () => void,
  ): Promise<() => void> {
    if (!this.up) throw new StoreUnavailable("Redis is not connected");
    // The subscriber's first use also waits for its connection.
    const boundMs =
      this.options.commandTimeoutMs +
      (this.subscriber?.status === "ready" ? 0 : this.options.connectTimeoutMs);
    const unsubscribe = this.subscribe(channel, listener);
    let ended = false;
    const onLost = () => {
      stop();
      lost();
    };
    const stop = () => {
      if (ended) return;
      ended = true;
      this.confirmed.delete(onLost);
      unsubscribe();
    };
    this.confirmed.add(onLost);
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.confirmations.get(this.options.keyPrefix + channel),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no SUBSCRIBE confirmation in ${boundMs} ms`)), boundMs);
        }),
      ]);
    } catch (err) {
      stop();
      throw new StoreUnavailable(`Redis subscription failed: ${(err as Error).message}`, { cause: err });
    } finally {
      clearTimeout(timer);
    }
    if (ended) throw new StoreUnavailable("Redis subscription lost while it was being confirmed");
    return stop;
  }

  available(): boolean {
    return this.up;
  }

  onAvailability(listener: (available: boolean) => void): () => void {
    this.availability.add(listener);
    return () => this.availability.delete(listener);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.availability.clear();
    const quit = (c: Redis) => (c.status === "ready" ? c.quit().then(() => {}) : c.disconnect());
    await Promise.allSettled([quit(this.client), ...(this.subscriber ? [quit(this.subscriber)] : [])]);
  }

  /**
   * The URL without user info, and the credentials to use: a username or password from the
   * environment wins over the URL's (given both, ioredis would let the URL's win).
   */
  private get connection(): { url: string; username?: string; password?: string } {
    const parsed = new URL(this.options.url);
    const fromUrl = (v: string) => (v === "" ? undefined : decodeURIComponent(v));
    const username = this.options.username ?? fromUrl(parsed.username);
    const password = this.options.password ?? fromUrl(parsed.password);
    parsed.username = "";
    parsed.password = "";
    return {
      url: parsed.toString(),
      ...(username !== undefined ? { username } : {}),
      ...(password !== undefined ? { password } : {}),
    };
  }

  private get scripts(): ScriptCommands {
    return this.client as unknown as ScriptCommands;
  }

  private clientOptions(keyPrefix: string): RedisOptions {
    const { options } = this;
    const { username, password } = this.connection;
    const tls = options.tls ?? (options.url.startsWith("rediss:") ? {} : undefined);
    return {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      connectTimeout: options.connectTimeoutMs,
      commandTimeout: options.commandTimeoutMs,
      retryStrategy: (attempt) => Math.min(50 * 2 ** attempt, 2_000),
      keyPrefix,
      ...(username !== undefined ? { username } : {}),
      ...(password !== undefined ? { password } : {}),
      ...(tls ? { tls } : {}),
    };
  }

  private feed(): Redis {
    if (!this.subscriber) {
      // A subscribed connection can run nothing else, hence a second one; no key prefix, since
      // channel names already carry it.
      const subscriber = new Redis(this.connection.url, {
        ...this.clientOptions(""),
        enableOfflineQueue: true,
      });
      subscriber.on("error", () => {});
      // Messages published while it is away are missed: confirmed subscriptions learn of it.
      subscriber.on("close", () => {
        for (const lost of [...this.confirmed]) lost();
      });
      subscriber.on("message", (channel: string, message: string) => {
        for (const listener of this.channels.get(channel) ?? []) listener(message);
      });
      subscriber.connect().catch(() => {});
      this.subscriber = subscriber;
    }
    return this.subscriber;
  }

  private setUp(up: boolean): void {
    if (this.up === up || this.closed) return;
    this.up = up;
    for (const listener of this.availability) listener(up);
  }

  /** Runs a command; anything but an error Redis itself answered means the store is unavailable. */
  private async run<T>(command: () => Promise<T>): Promise<T> {
    if (!this.up) throw new StoreUnavailable("Redis is not connected");
    try {
      return await command();
    } catch (err) {
      if (err instanceof ReplyError) throw err;
      throw new StoreUnavailable(`Redis command failed: ${(err as Error).message}`, { cause: err });
    }
  }
}
