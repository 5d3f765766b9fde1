/** MCP methods a client may send to a server, across protocol revisions 2025-03-26 .. 2025-11-25. */
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

export const PROTOCOL_VERSIONS = ["2025-03-26", "2025-06-18", "2025-11-25"] as const;

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
