import { isPlainObject } from "../mcp/jsonrpc.js";

/** The list kinds whose `notifications/<kind>/list_changed` the aggregate sends. */
export type ListChangedKind = "tools" | "prompts" | "resources";

const KINDS: readonly ListChangedKind[] = ["tools", "prompts", "resources"];

/**
 * Someone whose view may change when a server drops out or comes back: a 2025 session's client
 * GET stream, a 2026-07-28 `subscriptions/listen` (Broker.listen, Broker.watch).
 */
export interface PresenceWatcher {
  /** The servers of the watcher's view, as the agent may reach them now. */
  servers(): readonly string[];
  /** `server` dropped out of (`present` false) or came back into the view: its lists of `kinds` changed. */
  changed(server: string, kinds: readonly ListChangedKind[], present: boolean): void;
  /** Asks `server` once, as this watcher's agent (a hop), whether it answers again. */
  probe(server: string): Promise<void>;
}

/**
 * What the broker knows, in this process, of each server behind its views: the capabilities a
 * hop's `initialize` or `server/discover` answered (what the aggregate may advertise, where
 * completion/complete and logging/setLevel may go), and which servers are left out of every view
 * because a hop found them down. A change of the latter is told to the watchers whose view holds
 * the server, once per change (no repeats while it stays so); while a server is left out and some
 * watcher's view holds it, one hop per `probeMs` asks it again, as one such watcher's agent.
 */
export class ServerPresence {
  private readonly capabilities = new Map<string, Record<string, unknown>>();
  /** Servers left out of the views: a hop found them down and none answered since. */
  private readonly absent = new Set<string>();
  private readonly probing = new Set<string>();
  /** How many times each server was left out: what was opened to it before may be dead. */
  private readonly downs = new Map<string, number>();
  private readonly watchers = new Set<PresenceWatcher>();
  private timer: NodeJS.Timeout | undefined;
  private owner: unknown;

  constructor(
    /** How long between two probes of a left-out server (broker.probeInterval); 0: never. */
    private readonly probeMs: () => number,
    private readonly onChange: (server: string, present: boolean, watchers: number) => void,
  ) {}

  /**
   * The capabilities known for `server` under `owner` (the policy in force: a reload may point a
   * server elsewhere, so what was learned before it is forgotten).
   */
  capabilitiesOf(owner: unknown, server: string): Record<string, unknown> | undefined {
    this.follow(owner);
    return this.capabilities.get(server);
  }

  /** A hop's initialize or server/discover answered `capabilities` for `server`. */
  learned(owner: unknown, server: string, capabilities: unknown): void {
    this.follow(owner);
    if (isPlainObject(capabilities)) this.capabilities.set(server, capabilities);
  }

  /** Whether `server` is left out now (a hop found it down; none answered since). */
  isAbsent(server: string): boolean {
    return this.absent.has(server);
  }

  /** A hop found `server` down (upstream_*, breaker_open): it drops out of every view. */
  down(server: string): void {
    if (this.absent.has(server)) return;
    this.absent.add(server);
    this.downs.set(server, this.generation(server) + 1);
    this.tell(server, false);
    this.schedule();
  }

  /** A hop to `server` was answered: back in the views if it was left out. */
  up(server: string): void {
    if (!this.absent.delete(server)) return;
    this.tell(server, true);
    if (this.absent.size === 0) this.stop();
  }

  /** How many times `server` was left out so far (a stream opened at an older count may be dead). */
  generation(server: string): number {
    return this.downs.get(server) ?? 0;
  }

  /** `watcher` hears of changes from now on; the function returned stops it. */
  watch(watcher: PresenceWatcher): () => void {
    this.watchers.add(watcher);
    this.schedule();
    return () => {
      this.watchers.delete(watcher);
      if (this.watchers.size === 0) this.stop();
    };
  }

  clear(): void {
    this.stop();
    this.watchers.clear();
    this.absent.clear();
    this.downs.clear();
    this.capabilities.clear();
  }

  private follow(owner: unknown): void {
    if (owner === this.owner) return;
    this.owner = owner;
    this.capabilities.clear();
  }

  /** The kinds a server's change concerns: those it offers, or all when it is not known. */
  private kindsOf(server: string): ListChangedKind[] {
    const offered = this.capabilities.get(server);
    return offered === undefined ? [...KINDS] : KINDS.filter((k) => offered[k] !== undefined);
  }

  private tell(server: string, present: boolean): void {
    const kinds = this.kindsOf(server);
    let told = 0;
    for (const watcher of [...this.watchers]) {
      if (!watcher.servers().includes(server)) continue;
      told++;
      watcher.changed(server, kinds, present);
    }
    this.onChange(server, present, told);
  }

  private schedule(): void {
    if (this.timer !== undefined || this.absent.size === 0 || this.watchers.size === 0) return;
    const every = this.probeMs();
    if (every <= 0) return;
    this.timer = setInterval(() => this.probeAll(), every);
    this.timer.unref();
  }

  private stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /**
   * One probe per left-out server that some watcher's view holds and that is not being probed
   * already: the cost is bounded by the left-out servers, not by the watchers.
   */
  private probeAll(): void {
    if (this.absent.size === 0 || this.watchers.size === 0) return this.stop();
    for (const server of this.absent) {
      if (this.probing.has(server)) continue;
      const watcher = [...this.watchers].find((w) => w.servers().includes(server));
      if (watcher === undefined) continue;
      this.probing.add(server);
      void watcher
        .probe(server)
        .catch(() => undefined)
        .finally(() => this.probing.delete(server));
    }
  }
}
