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
