import { AsyncLocalStorage } from "node:async_hooks";
import type { ServerEvent, ServerEventBus } from "@modelcontextprotocol/server";
import type { ViewNames } from "./names.js";

/**
 * What one `subscriptions/listen` request of the aggregate watches (2026-07-28): the broker's own
 * listens on the servers of the agent's view, opened for that agent before the SDK acknowledges
 * the subscription, and delivering only to it.
 */
export interface ListenWatch {
  /** The subscription's stream is open: its events go to `deliver` (those before it, first). */
  attach(deliver: (event: ServerEvent) => void): void;
  readonly attached: boolean;
  /** The subscription ended (or never started): the listens on the servers close. */
  close(): void;
}

/**
 * The aggregate's `subscriptions/listen` bus. The SDK's listen router subscribes once per open
 * subscription, inside the request that opened it; `current` holds that request's watch, so each
 * subscription is fed by its own watch, and an event reaches only the subscriber whose view holds
 * the server it came from. Nothing is broadcast: `publish` has nobody to reach.
 */
export class BrokerListenBus implements ServerEventBus {
  readonly current = new AsyncLocalStorage<ListenWatch>();

  publish(_event: ServerEvent): void {}

  subscribe(listener: (event: ServerEvent) => void): () => void {
    const watch = this.current.getStore();
    if (!watch || watch.attached) return () => {};
    watch.attach(listener);
    return () => watch.close();
  }
}

/** The listen event of a server's list_changed notification. */
export const LIST_CHANGED_EVENTS: Readonly<Record<string, ServerEvent>> = {
  "notifications/tools/list_changed": { kind: "tools_list_changed" },
  "notifications/prompts/list_changed": { kind: "prompts_list_changed" },
  "notifications/resources/list_changed": { kind: "resources_list_changed" },
};

/** What a client's `subscriptions/listen` asks of the aggregate, as far as the broker reads it. */
export interface ListenFilter {
  /** The resources it subscribes to, under the aggregate's URIs. */
  resourceSubscriptions: string[];
}

/** The filter of a `subscriptions/listen` body (the SDK validates the rest before it answers). */
export function listenFilter(body: unknown): ListenFilter {
  const notifications = (body as { params?: { notifications?: { resourceSubscriptions?: unknown } } } | null)
    ?.params?.notifications;
  const uris = notifications?.resourceSubscriptions;
  return {
    resourceSubscriptions: Array.isArray(uris) ? uris.filter((u): u is string => typeof u === "string") : [],
  };
}

/**
 * The resources subscribed to, per server of the view: each server's own URI (what it announces
 * an update under) to the aggregate's URI the client gave (what the client knows it by). A URI
 * that routes to no server of the view is left out: nothing can update it.
 */
export function subscriptionsByServer(
  names: ViewNames,
  servers: readonly string[],
  uris: readonly string[],
): Map<string, Map<string, string>> {
  const byServer = new Map<string, Map<string, string>>();
  for (const uri of uris) {
    const target = names.splitUri(uri);
    if (!target || !servers.includes(target.server)) continue;
    let resources = byServer.get(target.server);
    if (!resources) byServer.set(target.server, (resources = new Map()));
    resources.set(target.name, uri);
  }
  return byServer;
}
