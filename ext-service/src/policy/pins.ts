import { isDeepStrictEqual } from "node:util";
import type { Registry, RegistryTool } from "./settings.js";
import { changedFields, toolPin, type PinnedField } from "./canonical.js";

/**
 * Pinned tool definitions (the rug-pull defence). Every registered tool has an expected pin: the
 * one recorded in the registry, or, when none is recorded, the hash of the registry's own
 * definition. A live definition whose hash differs has drifted.
 */

export interface ExpectedPin {
  pin: string;
  /** True when the registry records the pin explicitly. */
  recorded: boolean;
  tool: RegistryTool;
}

/** Bounds of PinBook's verdict cache: per tool, characters of source text in all, one source. */
const VERDICTS_PER_TOOL = 4;
const MAX_VERDICT_CHARS = 8 * 1024 * 1024;
const MAX_CACHED_SOURCE = 256 * 1024;

/** A registry entry whose recorded pin does not match its own definition (a review mistake). */
export interface PinInconsistency {
  server: string;
  serverIndex: number;
  tool: string;
  toolIndex: number;
  recorded: string;
  computed: string;
}

/** Shared between calls when cached: read only. */
export type PinCheck =
  | { readonly ok: true; readonly pin: string }
  | {
      readonly ok: false;
      readonly livePin: string;
      readonly expected: string;
      readonly fields: PinnedField[];
    };

export class PinBook {
  private readonly byServer = new Map<string, Map<string, ExpectedPin>>();
  readonly inconsistencies: readonly PinInconsistency[];

  constructor(registry: Registry) {
    const problems: PinInconsistency[] = [];
    registry.servers.forEach((server, serverIndex) => {
      const tools = new Map<string, ExpectedPin>();
      server.tools.forEach((tool, toolIndex) => {
        const computed = toolPin(tool);
        if (tool.pin !== undefined && tool.pin !== computed) {
          problems.push({
            server: server.name,
            serverIndex,
            tool: tool.name,
            toolIndex,
            recorded: tool.pin,
            computed,
          });
        }
        tools.set(tool.name, { pin: tool.pin ?? computed, recorded: tool.pin !== undefined, tool });
      });
      this.byServer.set(server.name, tools);
    });
    this.inconsistencies = problems;
  }

  expected(server: string, tool: string): ExpectedPin | undefined {
    return this.byServer.get(server)?.get(tool);
  }

  /** Names of the tools registered on `server`. */
  registered(server: string): string[] {
    return [...(this.byServer.get(server)?.keys() ?? [])];
  }

  /**
   * The last few verdicts of each registered tool, by the exact JSON text its live definition
   * was parsed from: a server lists the same definitions again and again, and canonicalising and
   * hashing each one was most of a tools/list's cost. Equal text parses to an equal value, so the
   * verdict is the same; any change to a definition changes its text and is checked afresh.
   * Kept per (server, tool) entry of the registry, so no verdict can answer for another server
   * or tool; compared by string equality, which costs less than hashing the text for a Map.
   */
  private readonly recent = new Map<ExpectedPin, { source: string; verdict: PinCheck }[]>();
  private recentChars = 0;

  /**
   * Compares a tool as the server lists it with its pin. `source`, when given, must be the JSON
   * text `live` was parsed from (see mcp/json-source.ts); the verdict is then cached by it.
   */
  check(server: string, live: Readonly<Record<string, unknown>>, source?: string): PinCheck | undefined {
    const name = live.name;
    if (typeof name !== "string") return undefined;
    const expected = this.expected(server, name);
    if (!expected) return undefined;
    if (source === undefined || source.length > MAX_CACHED_SOURCE) return this.compare(expected, live);
    let seen = this.recent.get(expected);
    if (seen) for (const entry of seen) if (entry.source === source) return entry.verdict;
    const verdict = this.compare(expected, live);
    // A copy: a slice would keep the whole response it was cut from alive. Text from decoded
    // UTF-8 survives the round trip; anything else (a lone surrogate) is not cached.
    const copy = Buffer.from(source, "utf8").toString("utf8");
    if (copy !== source) return verdict;
    if (this.recentChars + copy.length > MAX_VERDICT_CHARS) {
      this.recent.clear();
      this.recentChars = 0;
      seen = undefined;
    }
    if (!seen) this.recent.set(expected, (seen = []));
    if (!verdict.ok) Object.freeze(verdict.fields);
    seen.unshift({ source: copy, verdict: Object.freeze(verdict) });
    this.recentChars += copy.length;
    if (seen.length > VERDICTS_PER_TOOL) this.recentChars -= seen.pop()!.source.length;
    return verdict;
  }

  private compare(expected: ExpectedPin, live: Readonly<Record<string, unknown>>): PinCheck {
    let livePin: string;
    try {
      livePin = toolPin(live);
    } catch {
      // A definition that cannot be canonicalised (absurdly deep) cannot match: treat as drift.
      return { ok: false, livePin: "sha256:invalid", expected: expected.pin, fields: [] };
    }
    if (livePin === expected.pin) return { ok: true, pin: livePin };
    return { ok: false, livePin, expected: expected.pin, fields: changedFields(expected.tool, live) };
  }
}

export interface DriftRecord {
  livePin: string;
  expected: string;
  fields: PinnedField[];
  /** When the drift was last seen (ms since epoch). */
  seenAt: number;
}

/** Whether a tool's live definition has been checked against its pin recently enough. */
export type PinVerification =
  | { state: "verified" }
  /** Not checked (or too long ago): the adapter should fetch the server's tools/list first. */
  | { state: "unchecked" }
  /** Checking failed or the server does not list the tool: calls are refused for now. */
  | { state: "unverifiable"; cause: string };

/** After a failed fetch, calls are refused without fetching again for this long. */
const FAILED_LIST_RETRY_MS = 5_000;

/**
 * What the gateway has learned at runtime about live definitions: which tools drifted (calls to
 * them are refused until a tools/list shows them matching again), when each tool's definition was
 * last compared with its pin, and which servers announced `notifications/tools/list_changed`
 * since. The one piece of mutable state the engine owns; small and bounded by the registry.
 */
export class ToolDriftState {
  private readonly drifted = new Map<string, Map<string, DriftRecord>>();
  private readonly stale = new Set<string>();
  /** By server, then tool: when its live definition was last compared with its pin. */
  private readonly checkedAt = new Map<string, Map<string, number>>();
  /** By server, then tool: absent from the server's last full tools/list, as of then. */
  private readonly unlistedAt = new Map<string, Map<string, number>>();
  /** By server: the last failed attempt to fetch its tools/list. */
  private readonly listFailures = new Map<string, { at: number; cause: string }>();
  /** By server: bumped whenever the set of drifted tools, or a drifted tool's live pin, changes. */
  private readonly revisions = new Map<string, number>();

  /**
   * Changes when what the gateway drops from this server's tools/list changes (a tool drifts,
   * drifts differently, or matches its pin again): a list kept from before is no longer the one
   * the gateway would send.
   */
  revision(server: string): number {
    return this.revisions.get(server) ?? 0;
  }

  private revised(server: string): void {
    this.revisions.set(server, this.revision(server) + 1);
  }

  drift(server: string, tool: string): DriftRecord | undefined {
    return this.drifted.get(server)?.get(tool);
  }

  recordDrift(server: string, tool: string, record: DriftRecord): void {
    let tools = this.drifted.get(server);
    if (!tools) this.drifted.set(server, (tools = new Map()));
    if (tools.get(tool)?.livePin !== record.livePin) this.revised(server);
    tools.set(tool, record);
    this.checked(server, tool, record.seenAt);
  }

  recordMatch(server: string, tool: string, at: number = Date.now()): void {
    const tools = this.drifted.get(server);
    if (tools?.delete(tool)) {
      this.revised(server);
      if (tools.size === 0) this.drifted.delete(server);
    }
    this.checked(server, tool, at);
  }

  private checked(server: string, tool: string, at: number): void {
    let tools = this.checkedAt.get(server);
    if (!tools) this.checkedAt.set(server, (tools = new Map()));
    tools.set(tool, at);
    this.unlistedAt.get(server)?.delete(tool);
  }

  /** A complete tools/list (every page) did not offer these registered tools. */
  recordUnlisted(server: string, tools: readonly string[], at: number): void {
    let unlisted = this.unlistedAt.get(server);
    if (!unlisted) this.unlistedAt.set(server, (unlisted = new Map()));
    for (const tool of tools) {
      unlisted.set(tool, at);
      this.checkedAt.get(server)?.delete(tool);
    }
    this.listFailures.delete(server);
  }

  /** The server's tools/list could not be fetched: `cause` says why (shown in refusals). */
  recordListFailure(server: string, cause: string, at: number): void {
    this.listFailures.set(server, { at, cause });
  }

  /**
   * Whether a call to `tool` may rely on its pin: its definition was compared within
   * `verifiedForMs` and no `notifications/tools/list_changed` came since. Otherwise the adapter
   * is asked to fetch the list (`unchecked`), unless a fetch just failed or the last list did not
   * offer the tool (`unverifiable`, refused without fetching again until the time is up).
   */
  verification(server: string, tool: string, now: number, verifiedForMs: number): PinVerification {
    const stale = this.stale.has(server);
    const at = this.checkedAt.get(server)?.get(tool);
    if (!stale && at !== undefined && now - at < verifiedForMs) return { state: "verified" };
    const failure = this.listFailures.get(server);
    if (failure && now - failure.at < FAILED_LIST_RETRY_MS) {
      return {
        state: "unverifiable",
        cause: `the server's tools/list could not be fetched: ${failure.cause}`,
      };
    }
    if (stale) return { state: "unchecked" };
    const unlisted = this.unlistedAt.get(server)?.get(tool);
    if (unlisted !== undefined && now - unlisted < Math.min(verifiedForMs, FAILED_LIST_RETRY_MS)) {
      return { state: "unverifiable", cause: "the server's tools/list does not offer it" };
    }
    return { state: "unchecked" };
  }

  /** `notifications/tools/list_changed` seen: definitions must be checked again. */
  markStale(server: string): void {
    this.stale.add(server);
  }

  isStale(server: string): boolean {
    return this.stale.has(server);
  }

  /** A tools/list from the server was checked. */
  listChecked(server: string): void {
    this.stale.delete(server);
    this.listFailures.delete(server);
  }

  /**
   * Saves what is recorded about `server` and returns the function that puts it back. For
   * what-if questions (`explain` against the running gateway's engine): the live state must come
   * out exactly as it went in, or asking about a call would clear a drift or vouch for a pin.
   */
  checkpoint(server: string): () => void {
    const copy = <V>(map: Map<string, Map<string, V>>) => {
      const saved = map.get(server);
      return saved === undefined ? undefined : new Map(saved);
    };
    const drifted = copy(this.drifted);
    const checkedAt = copy(this.checkedAt);
    const unlistedAt = copy(this.unlistedAt);
    const stale = this.stale.has(server);
    const listFailure = this.listFailures.get(server);
    const put = <V>(map: Map<string, Map<string, V>>, saved: Map<string, V> | undefined) => {
      if (saved === undefined) map.delete(server);
      else map.set(server, saved);
    };
    return () => {
      // The drifted set may differ from the one lists were kept under: a new revision.
      if (!isDeepStrictEqual(this.drifted.get(server), drifted)) this.revised(server);
      put(this.drifted, drifted);
      put(this.checkedAt, checkedAt);
      put(this.unlistedAt, unlistedAt);
      if (stale) this.stale.add(server);
      else this.stale.delete(server);
      if (listFailure === undefined) this.listFailures.delete(server);
      else this.listFailures.set(server, listFailure);
    };
  }

  /** Drifted tools by server, for the admin endpoint and tests. */
  snapshot(): Record<string, Record<string, DriftRecord>> {
    const out: Record<string, Record<string, DriftRecord>> = {};
    for (const [server, tools] of this.drifted) out[server] = Object.fromEntries(tools);
    return out;
  }
}

export interface ToolChange {
  name: string;
  fields: PinnedField[];
  before: string;
  after: string;
}

export interface ToolDiff {
  added: Record<string, unknown>[];
  removed: RegistryTool[];
  changed: (ToolChange & { live: Record<string, unknown> })[];
  /** Registered tools that match the live definition but have no recorded pin yet. */
  unpinned: { name: string; pin: string }[];
  unchanged: string[];
}

/** Registry tools of one server against the live tools/list of that server. */
export function diffTools(
  registered: readonly RegistryTool[],
  live: readonly Record<string, unknown>[],
): ToolDiff {
  const diff: ToolDiff = { added: [], removed: [], changed: [], unpinned: [], unchanged: [] };
  const liveByName = new Map<string, Record<string, unknown>>();
  for (const t of live) if (typeof t.name === "string") liveByName.set(t.name, t);
  for (const tool of registered) {
    const l = liveByName.get(tool.name);
    if (!l) {
      diff.removed.push(tool);
      continue;
    }
    const before = tool.pin ?? toolPin(tool);
    const after = toolPin(l);
    if (before !== after) {
      diff.changed.push({ name: tool.name, fields: changedFields(tool, l), before, after, live: l });
    } else if (tool.pin === undefined) diff.unpinned.push({ name: tool.name, pin: after });
    else diff.unchanged.push(tool.name);
  }
  const known = new Set(registered.map((t) => t.name));
  for (const [name, t] of liveByName) if (!known.has(name)) diff.added.push(t);
  return diff;
}
