import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MemoryStore } from "../../ext-service/src/state/memory.js";
import { RedisStore } from "../../ext-service/src/state/redis.js";
import { StoreUnavailable, type StateStore } from "../../ext-service/src/state/store.js";
import { describeWithRedis, startRedis, type TestRedis } from "./redis-server.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(predicate: () => boolean, limitMs = 8_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await sleep(20);
  }
}

/** The same contract for both stores; `key` keeps tests apart in one store. */
function contract(name: string, open: () => StateStore, key: (k: string) => string) {
  describe(`${name}: the store contract`, () => {
    let store: StateStore;
    beforeAll(() => {
      store = open();
    });
    afterAll(() => store.close());

    it("charges all counters or none", async () => {
      const a = key("charge-a");
      const b = key("charge-b");
      const charge = (amountB: number) =>
        store.chargeAll([
          { key: a, amount: 2, limit: 5, ttlMs: 60_000 },
          { key: b, amount: amountB, limit: 3, ttlMs: 60_000 },
        ]);
      expect(await charge(1)).toEqual({ applied: true, values: [2, 1] });
      expect(await charge(2)).toEqual({ applied: true, values: [4, 3] });
      // b would pass its limit: a is not charged either.
      expect(await charge(1)).toEqual({ applied: false, values: [4, 3] });
      expect(await charge(0)).toEqual({ applied: false, values: [4, 3] }); // a: 6 > 5
      expect(await store.chargeAll([{ key: a, amount: 1, limit: 5, ttlMs: 60_000 }])).toEqual({
        applied: true,
        values: [5],
      });
    });

    it("lets counters expire with the ttl of their first charge", async () => {
      const k = key("expiring");
      await store.chargeAll([{ key: k, amount: 1, limit: 1, ttlMs: 150 }]);
      expect((await store.chargeAll([{ key: k, amount: 1, limit: 1, ttlMs: 150 }])).applied).toBe(false);
      await sleep(250);
      expect(await store.chargeAll([{ key: k, amount: 1, limit: 1, ttlMs: 150 }])).toEqual({
        applied: true,
        values: [1],
      });
    });

    it("hands out a burst of tokens, then says how long to wait", async () => {
      const k = key("bucket");
      const taken = [];
      for (let i = 0; i < 4; i++) taken.push(await store.takeToken(k, 2, 3));
      expect(taken.slice(0, 3)).toEqual([0, 0, 0]);
      expect(taken[3]).toBeGreaterThan(300);
      expect(taken[3]).toBeLessThanOrEqual(500);
      await sleep(taken[3]! + 20);
      expect(await store.takeToken(k, 2, 3)).toBe(0);
    });

    it("takes several tokens at once, and asks without taking when hits is 0", async () => {
      const k = key("hits");
      expect(await store.takeToken(k, 1, 5, 3)).toBe(0);
      // 2 of 5 left: 3 more would need one more second's worth of tokens than the bucket holds.
      expect(await store.takeToken(k, 1, 5, 3)).toBeGreaterThan(500);
      expect(await store.takeToken(k, 1, 5, 0)).toBe(0);
      expect(await store.takeToken(k, 1, 5, 2)).toBe(0);
      expect(await store.takeToken(k, 1, 5, 0)).toBe(0);
      expect(await store.takeToken(k, 1, 5, 1)).toBeGreaterThan(500);
    });

    it("gets and sets values with a ttl", async () => {
      const k = key("value");
      expect(await store.get(k)).toBeUndefined();
      await store.set(k, "v1", 150);
      expect(await store.get(k)).toBe("v1");
      await sleep(250);
      expect(await store.get(k)).toBeUndefined();
      await store.set(k, "v2", 60_000);
      await store.delete(k);
      expect(await store.get(k)).toBeUndefined();
    });

    it("compares and sets", async () => {
      const k = key("cas");
      expect(await store.compareAndSet(k, undefined, "one", 60_000)).toBe(true);
      expect(await store.compareAndSet(k, undefined, "two", 60_000)).toBe(false);
      expect(await store.compareAndSet(k, "zero", "two", 60_000)).toBe(false);
      expect(await store.compareAndSet(k, "one", "two", 60_000)).toBe(true);
      expect(await store.get(k)).toBe("two");
    });

    it("delivers published messages to subscribers until they leave", async () => {
      const got: string[] = [];
      const channel = key("feed");
      const stop = store.subscribe(channel, (m) => got.push(m));
      // A Redis subscription takes a round trip to be in place.
      await until(() => {
        void store.publish(channel, "ping");
        return got.length > 0;
      });
      got.length = 0;
      await store.publish(channel, "hello");
      await until(() => got.includes("hello"));
      stop();
      await sleep(50);
      await store.publish(channel, "after");
      await sleep(100);
      expect(got).not.toContain("after");
    });

    it("confirms a subscription before the first message, and publish counts who received it", async () => {
      const got: string[] = [];
      const channel = key("confirmed");
      expect(await store.publish(channel, "nobody")).toBe(0);
      const stop = await store.subscribeConfirmed(
        channel,
        (m) => got.push(m),
        () => undefined,
      );
      // No retry loop: once confirmed, the very next message arrives.
      expect(await store.publish(channel, "first")).toBe(1);
      await until(() => got.includes("first"));
      stop();
      await sleep(50);
      expect(await store.publish(channel, "after")).toBe(0);
      expect(got).toEqual(["first"]);
    });
  });
}

let n = 0;
contract(
  "memory",
  () => new MemoryStore(),
  (k) => `${k}-${n++}`,
);

describe("memory store", () => {
  it("sweeps expired entries as it grows", async () => {
    let now = 0;
    const store = new MemoryStore(() => now, 10);
    for (let i = 0; i < 9; i++) await store.set(`k${i}`, "v", 100);
    now = 200;
    await store.set("k9", "v", 100);
    expect(store.size).toBe(1);
  });
});

describeWithRedis("redis store", () => {
  let redis: TestRedis;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(() => redis?.close());

  const open = () => {
    const store = new RedisStore({
      url: redis.url,
      keyPrefix: "test:",
      connectTimeoutMs: 1_000,
      commandTimeoutMs: 500,
    });
    return store;
  };

  describe("contract", () => {
    let store: RedisStore;
    beforeAll(async () => {
      store = open();
      await store.waitUntilAvailable(5_000);
    });
    afterAll(() => store.close());
    contract(
      "redis",
      () => store,
      (k) => `${k}-${n++}`,
    );
  });

  it("fails fast while Redis is down, reports it, and recovers when it returns", async () => {
    const store = open();
    const changes: boolean[] = [];
    store.onAvailability((up) => changes.push(up));
    await store.waitUntilAvailable(5_000);
    expect(store.available()).toBe(true);
    await store.set("survives", "no", 60_000);

    await redis.stop();
    await until(() => !store.available());
    const started = Date.now();
    await expect(store.chargeAll([{ key: "c", amount: 1, limit: 1, ttlMs: 1000 }])).rejects.toBeInstanceOf(
      StoreUnavailable,
    );
    await expect(store.get("survives")).rejects.toBeInstanceOf(StoreUnavailable);
    expect(Date.now() - started).toBeLessThan(200);

    await redis.start();
    await store.waitUntilAvailable(8_000);
    expect(store.available()).toBe(true);
    // Nothing is persisted in the test server: the counter starts over.
    expect(await store.chargeAll([{ key: "c", amount: 1, limit: 1, ttlMs: 1000 }])).toEqual({
      applied: true,
      values: [1],
    });
    expect(changes).toEqual([true, false, true]);
    await store.close();
  });

  it("reports a confirmed subscription lost when Redis goes away, and refuses a new one while it is", async () => {
    const store = open();
    await store.waitUntilAvailable(5_000);
    const lost: string[] = [];
    await store.subscribeConfirmed(
      "lost-a",
      () => undefined,
      () => lost.push("a"),
    );
    await store.subscribeConfirmed(
      "lost-b",
      () => undefined,
      () => lost.push("b"),
    );
    await redis.stop();
    await until(() => lost.length === 2);
    expect(lost.sort()).toEqual(["a", "b"]);
    await until(() => !store.available());
    const started = Date.now();
    await expect(
      store.subscribeConfirmed(
        "lost-c",
        () => undefined,
        () => undefined,
      ),
    ).rejects.toBeInstanceOf(StoreUnavailable);
    expect(Date.now() - started).toBeLessThan(200);
    await redis.start();
    await store.waitUntilAvailable(8_000);
    // Each was reported once, not again on the reconnect.
    await sleep(200);
    expect(lost).toHaveLength(2);
    await store.close();
  });

  it("prefixes its keys, so gateways can share one Redis", async () => {
    const a = new RedisStore({
      url: redis.url,
      keyPrefix: "a:",
      connectTimeoutMs: 1_000,
      commandTimeoutMs: 500,
    });
    const b = new RedisStore({
      url: redis.url,
      keyPrefix: "b:",
      connectTimeoutMs: 1_000,
      commandTimeoutMs: 500,
    });
    await Promise.all([a.waitUntilAvailable(5_000), b.waitUntilAvailable(5_000)]);
    await a.chargeAll([{ key: "shared-name", amount: 1, limit: 1, ttlMs: 60_000 }]);
    expect((await b.chargeAll([{ key: "shared-name", amount: 1, limit: 1, ttlMs: 60_000 }])).applied).toBe(
      true,
    );
    await a.set("v", "from-a", 60_000);
    expect(await b.get("v")).toBeUndefined();
    await Promise.all([a.close(), b.close()]);
  });

  it("authenticates with a password", async () => {
    const secured = await startRedis(["--requirepass", "s3cret-test"]);
    try {
      const wrong = new RedisStore({
        url: secured.url,
        password: "wrong",
        keyPrefix: "",
        connectTimeoutMs: 500,
        commandTimeoutMs: 500,
      });
      await expect(wrong.waitUntilAvailable(1_000)).rejects.toBeInstanceOf(StoreUnavailable);
      await wrong.close();
      const right = new RedisStore({
        url: secured.url,
        password: "s3cret-test",
        keyPrefix: "",
        connectTimeoutMs: 500,
        commandTimeoutMs: 500,
      });
      await right.waitUntilAvailable(5_000);
      await right.set("k", "v", 1_000);
      expect(await right.get("k")).toBe("v");
      await right.close();
    } finally {
      await secured.close();
    }
  });
});
