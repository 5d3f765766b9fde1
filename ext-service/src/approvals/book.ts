import { randomUUID } from "node:crypto";
import type { ApprovalBinding, ApprovalRequirement, ApproverSpec } from "../policy/approvals.js";
import type { StateStore } from "../state/store.js";

/**
 * Pending and decided approvals in the state store: memory for one process, Redis for replicas
 * (a restart or another replica sees the same approvals). Every change is a compare-and-set on
 * the record, so two replicas can never both use a single-use approval, nor both decide one.
 *
 * Keys (under the store's prefix):
 *   approvals:rec:<id>    the record (JSON)
 *   approvals:call:<key>  the id of the latest approval of one binding (policy/approvals.ts)
 *   approvals:index       the ids with status and expiry, for listing and the pending gauge
 */

export type StoredStatus = "pending" | "approved" | "denied" | "used";
export type ApprovalStatus = StoredStatus | "expired";

export interface ApprovalRecord {
  id: string;
  status: StoredStatus;
  rule: string;
  binding: ApprovalBinding;
  /** The binding's key: the call this approval is for. */
  key: string;
  approvers: ApproverSpec[];
  /** The arguments with every DLP finding redacted, for people deciding. */
  arguments: unknown;
  risk: string;
  /** The audit record id of the request that asked. */
  requestId: string;
  requestedAt: number;
  /** Pending: decide by; approved: use by; denied: refused until. Epoch ms. */
  expiresAt: number;
  ttlMs: number;
  usesLeft: number;
  decidedBy?: { agent: string; issuer: string | null };
  decidedAt?: number;
  note?: string;
  lastUsedAt?: number;
}

interface IndexEntry {
  id: string;
  agent: string;
  issuer: string | null;
  status: ApprovalStatus;
  expiresAt: number;
  /** The record's key lives until then. */
  keepUntil: number;
}

/** How long a record stays readable after its expiry, for listing what happened. */
const RETAIN_MS = 3_600_000;
/** Compare-and-set attempts before an operation gives up as contended. */
const CAS_ATTEMPTS = 32;
const INDEX_KEY = "approvals:index";
/** The index is one value; past this many entries new requests are refused (fail closed). */
const MAX_INDEX_ENTRIES = 10_000;

export class ApprovalContended extends Error {}
export class ApprovalLimitReached extends Error {}

const recordKey = (id: string) => `approvals:rec:${id}`;
const callKey = (key: string) => `approvals:call:${key}`;

/** The status as of `now`: pending and approved approvals lapse at their expiry. */
export function currentStatus(
  record: Pick<ApprovalRecord, "status" | "expiresAt">,
  now: number,
): ApprovalStatus {
  if ((record.status === "pending" || record.status === "approved") && now >= record.expiresAt)
    return "expired";
  return record.status;
}

function parseRecord(text: string | undefined): ApprovalRecord | undefined {
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as ApprovalRecord;
  } catch {
    return undefined;
  }
}

function parseIndex(text: string | undefined): IndexEntry[] {
  if (text === undefined) return [];
  try {
    const value = JSON.parse(text) as unknown;
    return Array.isArray(value) ? (value as IndexEntry[]) : [];
  } catch {
    return [];
  }
}

export type Lookup =
  | { kind: "none"; previous: string | undefined }
  | { kind: "usable" | "pending" | "denied"; record: ApprovalRecord; text: string }
  /** Used up or lapsed: a new request replaces it. */
  | { kind: "spent"; previous: string };

export class ApprovalBook {
  constructor(
    readonly store: StateStore,
    private readonly now: () => number = Date.now,
  ) {}

  async get(id: string): Promise<ApprovalRecord | undefined> {
    if (!/^[0-9a-f-]{36}$/.test(id)) return undefined;
    return parseRecord(await this.store.get(recordKey(id)));
  }

  /** The latest approval of the call with this binding key, and what it allows now. */
  async lookup(key: string): Promise<Lookup> {
    const id = await this.store.get(callKey(key));
    if (id === undefined) return { kind: "none", previous: undefined };
    const text = await this.store.get(recordKey(id));
    const record = parseRecord(text);
    if (!record || text === undefined || record.key !== key) return { kind: "none", previous: id };
    const status = currentStatus(record, this.now());
    if (status === "approved" && record.usesLeft > 0) return { kind: "usable", record, text };
    if (status === "pending") return { kind: "pending", record, text };
    if (status === "denied" && this.now() < record.expiresAt) return { kind: "denied", record, text };
    return { kind: "spent", previous: id };
  }

  /**
   * Uses an approved record once. False when another request (on any replica) changed it first:
   * the caller looks it up again.
   */
  async consume(record: ApprovalRecord, text: string): Promise<ApprovalRecord | undefined> {
    const now = this.now();
    const usesLeft = record.usesLeft - 1;
    const next: ApprovalRecord = {
      ...record,
      usesLeft,
      status: usesLeft > 0 ? "approved" : "used",
      lastUsedAt: now,
    };
    const done = await this.store.compareAndSet(
      recordKey(record.id),
      text,
      JSON.stringify(next),
      this.keepFor(next.expiresAt),
    );
    if (!done) return undefined;
    if (next.status === "used") await this.updateIndex((entries) => setStatus(entries, record.id, "used"));
    return next;
  }

  /**
   * Stores a new pending approval for a binding, unless another request stored one first
   * (returns undefined: look up again). `previous` is the id the call key held when looked up.
   */
  async create(
    previous: string | undefined,
    fields: {
      rule: ApprovalRequirement;
      binding: ApprovalBinding;
      key: string;
      arguments: unknown;
      risk: string;
      requestId: string;
    },
  ): Promise<ApprovalRecord | undefined> {
    const now = this.now();
    const { rule } = fields;
    const record: ApprovalRecord = {
      id: randomUUID(),
      status: "pending",
      rule: rule.rule,
      binding: fields.binding,
      key: fields.key,
      approvers: rule.approvers.map((a) => ({ ...a })),
      arguments: fields.arguments,
      risk: fields.risk,
      requestId: fields.requestId,
      requestedAt: now,
      expiresAt: now + rule.pendingMs,
      ttlMs: rule.ttlMs,
      usesLeft: rule.uses,
    };
    const keep = this.keepFor(record.expiresAt + rule.ttlMs);
    // Index first (it refuses past its limit before anything is written), then the record, then
    // the call's pointer to it: a reader that finds the pointer always finds the record.
    await this.updateIndex((entries) => [
      ...entries,
      {
        id: record.id,
        agent: record.binding.agent,
        issuer: record.binding.issuer,
        status: "pending",
        expiresAt: record.expiresAt,
        keepUntil: now + keep,
      },
    ]);
    await this.store.set(recordKey(record.id), JSON.stringify(record), keep);
    if (!(await this.store.compareAndSet(callKey(fields.key), previous, record.id, keep))) {
      await this.store.delete(recordKey(record.id));
      await this.updateIndex((entries) => entries.filter((e) => e.id !== record.id));
      return undefined;
    }
    return record;
  }

  /** Undecided requests of one agent (of one issuer). */
  async pendingOf(agent: string, issuer: string | null): Promise<number> {
    const now = this.now();
    return parseIndex(await this.store.get(INDEX_KEY)).filter(
      (e) => e.agent === agent && e.issuer === issuer && e.status === "pending" && now < e.expiresAt,
    ).length;
  }

  /**
   * Records a decision on a pending approval. Returns the decided record, "gone" when there is
   * no such approval, "not_pending" when it was decided or lapsed already, "contended" when
   * another decision raced this one (the caller reports a conflict).
   */
  async decide(
    id: string,
    decision: "approved" | "denied",
    by: { agent: string; issuer: string | null },
    note: string | undefined,
    check: (record: ApprovalRecord) => string | undefined,
  ): Promise<ApprovalRecord | "gone" | "not_pending" | "contended" | { refused: string }> {
    if (!/^[0-9a-f-]{36}$/.test(id)) return "gone";
    const text = await this.store.get(recordKey(id));
    const record = parseRecord(text);
    if (!record || text === undefined) return "gone";
    const now = this.now();
    if (currentStatus(record, now) !== "pending") return "not_pending";
    const refused = check(record);
    if (refused !== undefined) return { refused };
    const next: ApprovalRecord = {
      ...record,
      status: decision,
      decidedBy: by,
      decidedAt: now,
      ...(note !== undefined ? { note } : {}),
      // An approval is usable for its ttl from the decision; a denial holds until the request
      // would have lapsed, so the same call is not asked again meanwhile.
      expiresAt: decision === "approved" ? now + record.ttlMs : record.expiresAt,
    };
    const keep = this.keepFor(next.expiresAt);
    if (!(await this.store.compareAndSet(recordKey(id), text, JSON.stringify(next), keep)))
      return "contended";
    await this.updateIndex((entries) =>
      entries.map((e) =>
        e.id === id ? { ...e, status: decision, expiresAt: next.expiresAt, keepUntil: now + keep } : e,
      ),
    );
    return next;
  }

  /** Every approval still kept, newest first, with the statuses as of now. */
  async list(): Promise<ApprovalRecord[]> {
    const entries = parseIndex(await this.store.get(INDEX_KEY));
    const records = await Promise.all(entries.map((e) => this.get(e.id)));
    return records
      .filter((r): r is ApprovalRecord => r !== undefined)
      .sort((a, b) => b.requestedAt - a.requestedAt);
  }

  /**
   * Marks lapsed entries of the index as expired and returns how many this call marked (each
   * lapse is counted once across replicas: the compare-and-set that marks it wins once), and the
   * number still pending.
   */
  async sweep(): Promise<{ expired: number; pending: number }> {
    let expired = 0;
    let pending = 0;
    const now = this.now();
    await this.updateIndex((entries) => {
      expired = 0;
      pending = 0;
      return entries.map((e) => {
        if ((e.status === "pending" || e.status === "approved") && now >= e.expiresAt) {
          expired++;
          return { ...e, status: "expired" as const };
        }
        if (e.status === "pending") pending++;
        return e;
      });
    }, true);
    return { expired, pending };
  }

  private keepFor(until: number): number {
    return Math.max(1, until - this.now()) + RETAIN_MS;
  }

  /** Compare-and-set loop on the index; drops entries whose record is gone. */
  private async updateIndex(
    change: (entries: IndexEntry[]) => IndexEntry[],
    onlyIfChanged = false,
  ): Promise<void> {
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const text = await this.store.get(INDEX_KEY);
      const now = this.now();
      const entries = parseIndex(text).filter((e) => e.keepUntil > now);
      const next = change(entries);
      if (next.length > MAX_INDEX_ENTRIES) throw new ApprovalLimitReached("too many approvals kept");
      const nextText = JSON.stringify(next);
      if (onlyIfChanged && nextText === text) return;
      const keep = Math.max(1, ...next.map((e) => e.keepUntil - now));
      if (await this.store.compareAndSet(INDEX_KEY, text, nextText, keep)) return;
    }
    throw new ApprovalContended("the approvals index is contended");
  }
}

function setStatus(entries: IndexEntry[], id: string, status: ApprovalStatus): IndexEntry[] {
  return entries.map((e) => (e.id === id ? { ...e, status } : e));
}
