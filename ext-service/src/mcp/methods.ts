/** MCP methods a client may send to a server in the 2025 revisions (2025-03-26 .. 2025-11-25). */
export const CLIENT_REQUEST_METHODS: ReadonlySet<string> = new Set([
  "initialize",
  "ping",
  "tools/list",
  "tools/call",
  "prompts/list",
  "prompts/get",
  "resources/list",
  "resources/templates/list",
  "resources/read",
  "resources/subscribe",
  "resources/unsubscribe",
  "logging/setLevel",
  "completion/complete",
  "tasks/get",
  "tasks/list",
  "tasks/result",
  "tasks/cancel",
]);

/** MCP notifications a client may send to a server. */
export const CLIENT_NOTIFICATION_METHODS: ReadonlySet<string> = new Set([
  "notifications/initialized",
  "notifications/cancelled",
  "notifications/progress",
  "notifications/roots/list_changed",
  "notifications/tasks/status",
]);

/**
 * MCP methods a client may send in revision 2026-07-28: no initialize, ping, logging/setLevel or
 * resources/(un)subscribe (the per-request envelope, `subscriptions/listen` and its
 * `resourceSubscriptions` replace them); `server/discover` is new.
 */
export const CLIENT_REQUEST_METHODS_2026: ReadonlySet<string> = new Set([
  "server/discover",
  "subscriptions/listen",
  "tools/list",
  "tools/call",
  "prompts/list",
  "prompts/get",
  "resources/list",
  "resources/templates/list",
  "resources/read",
  "completion/complete",
]);

/** Which kind of named thing a method acts on, for RBAC. */
export type SubjectKind = "tools" | "prompts" | "resources";

/** The name a request targets, if the method targets one (tool name, prompt name, resource URI). */
export function requestTarget(
  method: string,
  params: Record<string, unknown> | undefined,
): { kind: SubjectKind; name: string | undefined } | undefined {
  switch (method) {
    case "tools/call":
      return { kind: "tools", name: typeof params?.name === "string" ? params.name : undefined };
    case "prompts/get":
      return { kind: "prompts", name: typeof params?.name === "string" ? params.name : undefined };
    case "resources/read":
    case "resources/subscribe":
    case "resources/unsubscribe":
      return { kind: "resources", name: typeof params?.uri === "string" ? params.uri : undefined };
    default:
      return undefined;
  }
}

/**
 * What a `completion/complete` request asks completions for: a prompt (`ref/prompt`, by name) or
 * a resource template (`ref/resource`, by URI template). `name` is undefined when the reference
 * is missing or malformed; the whole result is undefined for any other method.
 */
export function completionTarget(
  method: string,
  params: Record<string, unknown> | undefined,
): { kind: "prompts" | "resources"; name: string | undefined } | undefined {
  if (method !== "completion/complete") return undefined;
  const ref = params?.ref;
  if (typeof ref !== "object" || ref === null) return { kind: "prompts", name: undefined };
  const r = ref as Record<string, unknown>;
  if (r.type === "ref/resource")
    return { kind: "resources", name: typeof r.uri === "string" ? r.uri : undefined };
  return {
    kind: "prompts",
    name: r.type === "ref/prompt" && typeof r.name === "string" ? r.name : undefined,
  };
}

/**
 * What is wrong with a request that must name a tool, prompt, resource or completion reference
 * and does not (`tools/call` without a string `name`, `resources/read` without a `uri`, ...),
 * as the detail of its `invalid_params` refusal; undefined when it names one or needs none.
 */
export function missingTargetProblem(
  method: string,
  params: Record<string, unknown> | undefined,
): string | undefined {
  const completion = completionTarget(method, params);
  if (completion)
    return completion.name === undefined
      ? "'ref' must be a ref/prompt with a 'name' or a ref/resource with a 'uri'"
      : undefined;
  const target = requestTarget(method, params);
  if (!target || target.name !== undefined) return undefined;
  return target.kind === "resources" ? "'uri' is required" : "'name' is required";
}

/**
 * The resource URIs a `subscriptions/listen` request asks updates for
 * (`params.notifications.resourceSubscriptions`); undefined when the shape is not a list of strings.
 */
export function listenResourceSubscriptions(
  params: Record<string, unknown> | undefined,
): string[] | undefined {
  const filter = params?.notifications;
  if (typeof filter !== "object" || filter === null || Array.isArray(filter)) return [];
  const uris = (filter as Record<string, unknown>).resourceSubscriptions;
  if (uris === undefined) return [];
  if (!Array.isArray(uris) || !uris.every((u) => typeof u === "string")) return undefined;
  return uris as string[];
}
