/**
 * The caching hints of revision 2026-07-28 (server/utilities/caching): results of the list
 * methods and `resources/read` carry `ttlMs` (how long the result may be reused, in ms; absent
 * or 0 means stale at once) and `cacheScope` ("public": the same for every caller, any cache may
 * share it; "private": only within the authorization context that asked). Interim
 * `input_required` results and results of retried requests (`inputResponses`, `requestState`)
 * are never cacheable.
 */

/** The methods whose results carry caching hints and that the gateway forwards (server/discover aside). */
export const HINTED_METHODS: ReadonlySet<string> = new Set([
  "tools/list",
  "prompts/list",
  "resources/list",
  "resources/templates/list",
  "resources/read",
]);

/** Notifications after which a cached list or read of that server is stale, whatever its ttlMs. */
export const HINT_INVALIDATING_NOTIFICATIONS: ReadonlySet<string> = new Set([
  "notifications/tools/list_changed",
  "notifications/prompts/list_changed",
  "notifications/resources/list_changed",
  "notifications/resources/updated",
]);

export type CacheScope = "public" | "private";

export interface CacheHints {
  /** Milliseconds the result stays fresh; 0 when absent or invalid. */
  ttlMs: number;
  /** Absent or unknown counts as private: sharing is only ever what a server said. */
  scope: CacheScope;
}

/** The hints a result carries; undefined for a result that may not be cached at all. */
export function cacheHintsOf(result: unknown): CacheHints | undefined {
  if (typeof result !== "object" || result === null || Array.isArray(result)) return undefined;
  const r = result as Record<string, unknown>;
  if (r.resultType !== undefined && r.resultType !== "complete") return undefined;
  const ttl = r.ttlMs;
  return {
    ttlMs: typeof ttl === "number" && Number.isSafeInteger(ttl) && ttl > 0 ? ttl : 0,
    scope: r.cacheScope === "public" ? "public" : "private",
  };
}

/** A request retried with answers (multi round-trip) depends on inputs outside the cache key. */
export function isRetriedRequest(params: unknown): boolean {
  if (typeof params !== "object" || params === null) return false;
  const p = params as Record<string, unknown>;
  return p.inputResponses !== undefined || p.requestState !== undefined;
}

const CLIENT_CAPABILITIES_META = "io.modelcontextprotocol/clientCapabilities";

/**
 * The params that identify a result: all but `_meta` (progress token, client info, trace
 * context), except the client's capabilities, which a server may answer differently for.
 */
export function resultIdentifyingParams(params: unknown): unknown {
  if (typeof params !== "object" || params === null || Array.isArray(params)) return params ?? {};
  const { _meta: meta, ...rest } = params as Record<string, unknown>;
  const capabilities = (meta as Record<string, unknown> | undefined)?.[CLIENT_CAPABILITIES_META];
  return capabilities === undefined ? rest : { ...rest, [CLIENT_CAPABILITIES_META]: capabilities };
}
