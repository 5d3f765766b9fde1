import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApprovalBook } from "../../ext-service/src/approvals/book.js";
import type { ApprovalRequirement } from "../../ext-service/src/policy/approvals.js";
import { MemoryStore } from "../../ext-service/src/state/memory.js";
import { RedisStore } from "../../ext-service/src/state/redis.js";
import type { StateStore } from "../../ext-service/src/state/store.js";
import { describeWithRedis, startRedis, type TestRedis } from "./redis-server.js";

/**
 * The approval book on both stores: one approval, many replicas. Each replica has its own book
 * (and for Redis its own connection); single use must hold however the uses race.
 */

const REQUIREMENT: ApprovalRequirement = {
  rule: "production-deploys",
  approvers: [{ roles: ["approver"], tools: ["**"] }],
  ttlMs: 60_000,
  pendingMs: 60_000,
  uses: 1,
  inBand: false,
};

const BINDING = {
  issuer: "https://idp.example",
  agent: "release-bot",
  server: "deploy",
  tool: "deploy_service",
  pin: `sha256:${"0".repeat(64)}`,
  arguments: "a".repeat(64),
};

const ALICE = { agent: "alice", issuer: "https://idp.example" };

function contract(name: string, open: () => StateStore[]) {
  describe(`${name}: approvals shared by replicas`, () => {
    let stores: StateStore[];
    let books: ApprovalBook[];
    beforeAll(() => {
      stores = open();
      books = stores.map((s) => new ApprovalBook(s));
    });
    afterAll(async () => {
      await Promise.all([...new Set(stores)].map((s) => s.close()));
    });

    async function approved(key: string, uses = 1) {
      const [a, b] = books;
      const created = await a!.create(undefined, {
        rule: { ...REQUIREMENT, uses },
        binding: BINDING,
        key,
        arguments: {},
        risk: "critical",
        requestId: "r1",
      });
      expect(created?.status).toBe("pending");
      // The other replica sees it, and decides it.
      const seen = await b!.lookup(key);
      expect(seen.kind).toBe("pending");
      const decided = await b!.decide(created!.id, "approved", ALICE, undefined, () => undefined);
      expect(decided).toMatchObject({ status: "approved", usesLeft: uses });
      return created!.id;
    }

    /** Every replica looks up and uses the approval at once, `rounds` times each. */
    async function race(key: string, rounds: number): Promise<number> {
      let used = 0;
      const attempt = async (book: ApprovalBook) => {
        for (let i = 0; i < 8; i++) {
          const found = await book.lookup(key);
          if (found.kind !== "usable") return;
          if (await book.consume(found.record, found.text)) {
            used++;
            return;
          }
        }
      };
      await Promise.all(books.flatMap((book) => Array.from({ length: rounds }, () => attempt(book))));
      return used;
    }

    it("a single-use approval is used exactly once, however many replicas race for it", async () => {
      const key = `single-${name}`;
      const id = await approved(key);
      expect(await race(key, 8)).toBe(1);
      expect((await books[0]!.get(id))?.status).toBe("used");
      expect((await books[1]!.lookup(key)).kind).toBe("spent");
    });

    it("an approval with three uses lets exactly three through", async () => {
      const key = `triple-${name}`;
      await approved(key, 3);
      expect(await race(key, 8)).toBe(3);
    });

    it("two decisions racing: one wins, the other sees it decided", async () => {
      const key = `decide-${name}`;
      const created = await books[0]!.create(undefined, {
        rule: REQUIREMENT,
        binding: BINDING,
        key,
        arguments: {},
        risk: "critical",
        requestId: "r2",
      });
      const outcomes = await Promise.all([
        books[0]!.decide(created!.id, "approved", ALICE, undefined, () => undefined),
        books[1]!.decide(created!.id, "denied", { agent: "bob", issuer: null }, undefined, () => undefined),
      ]);
      const won = outcomes.filter((o) => typeof o === "object" && "status" in o);
      expect(won).toHaveLength(1);
      expect(outcomes.filter((o) => o === "contended" || o === "not_pending")).toHaveLength(1);
    });

    it("two replicas asking for the same call at once store one request", async () => {
      const key = `create-${name}`;
      const fields = {
        rule: REQUIREMENT,
        binding: BINDING,
        key,
        arguments: {},
        risk: "critical",
        requestId: "r3",
      };
      const made = await Promise.all(books.map((b) => b.create(undefined, fields)));
      expect(made.filter((m) => m !== undefined)).toHaveLength(1);
      const listed = await books[1]!.list();
      expect(listed.filter((r) => r.key === key)).toHaveLength(1);
    });
  });
}

const memory = new MemoryStore();
contract("memory", () => [memory, memory]);

describeWithRedis("redis", () => {
  let redis: TestRedis;
  const opened: RedisStore[] = [];
  beforeAll(async () => {
    redis = await startRedis();
    for (let i = 0; i < 2; i++) {
      const store = new RedisStore({
        url: redis.url,
        keyPrefix: "t:",
        connectTimeoutMs: 2_000,
        commandTimeoutMs: 2_000,
      });
      await store.waitUntilAvailable(5_000);
      opened.push(store);
    }
  });
  afterAll(async () => {
    await redis?.close();
  });
  contract("redis", () => opened);
});
