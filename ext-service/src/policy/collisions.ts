import { foldText } from "./normalize.js";

/**
 * Tool-name collisions and shadowing across servers. Agents that see tools from several servers
 * pick by name and description, so two tools that look alike, or a description that instructs
 * the model about another server's tools, can steer calls to the wrong place.
 */

/** Case, separators (_ - . and spaces), compatibility forms and lookalike letters folded away. */
export function foldName(name: string): string {
  return foldText(name)
    .toLowerCase()
    .replace(/[\s_.-]+/g, "");
}

export interface NamedTool {
  server: string;
  name: string;
  description?: string | undefined;
}

export type CollisionKind = "duplicate_name" | "lookalike_name" | "cross_reference";

export interface CollisionFinding {
  kind: CollisionKind;
  /** The tools involved, as server/name. */
  tools: string[];
  message: string;
}

/** Same name on two servers, or names equal once case, separators and lookalikes are folded. */
export function nameCollisions(tools: readonly NamedTool[]): CollisionFinding[] {
  const groups = new Map<string, NamedTool[]>();
  for (const t of tools) {
    const key = foldName(t.name);
    let g = groups.get(key);
    if (!g) groups.set(key, (g = []));
    g.push(t);
  }
  const out: CollisionFinding[] = [];
  for (const group of groups.values()) {
    if (group.length < 2) continue;
    const byName = new Map<string, NamedTool[]>();
    for (const t of group) {
      let g = byName.get(t.name);
      if (!g) byName.set(t.name, (g = []));
      g.push(t);
    }
    for (const [name, same] of byName) {
      const servers = new Set(same.map((t) => t.server));
      if (servers.size > 1) {
        out.push({
          kind: "duplicate_name",
          tools: same.map((t) => `${t.server}/${t.name}`),
          message: `tool '${name}' is offered by ${[...servers].map((s) => `'${s}'`).join(" and ")}`,
        });
      }
    }
    if (byName.size > 1) {
      const names = [...byName.keys()];
      out.push({
        kind: "lookalike_name",
        tools: group.map((t) => `${t.server}/${t.name}`),
        message: `tool names ${names.map((n) => `'${n}'`).join(", ")} differ only by case, separators or lookalike characters`,
      });
    }
  }
  return out;
}

const IMPERATIVE =
  /\b(?:always|never|must|should|instead|before|after|when(?:ever)?|do\s+not|don't|ignore|replace|redirect|prefer|only|bcc|cc|first|also)\b/i;

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** An identifier-like name (snake, kebab, dotted or camel case) that prose would not use by accident. */
function identifierLike(name: string): boolean {
  return /[_.-]/.test(name) || /[a-z][A-Z]/.test(name);
}

/**
 * Descriptions that name another server's tool, or another server, in a sentence that gives an
 * instruction: shadowing. Plain-word names (`search`) only count when quoted or backticked.
 */
export function crossReferences(
  tool: NamedTool,
  others: readonly NamedTool[],
  servers: readonly string[],
): CollisionFinding[] {
  const text = tool.description ?? "";
  if (text.length === 0) return [];
  const sentences = text.split(/(?<=[.!?])\s+|\n+/);
  const out: CollisionFinding[] = [];
  const seen = new Set<string>();
  for (const other of others) {
    if (other.server === tool.server || seen.has(other.name)) continue;
    const quoted = new RegExp(`[\`'"\u2018\u201c]${escapeRegExp(other.name)}[\`'"\u2019\u201d]`);
    const bare = new RegExp(`(?<![\\w.-])${escapeRegExp(other.name)}(?![\\w-])`);
    for (const s of sentences) {
      const named = quoted.test(s) || (identifierLike(other.name) && bare.test(s));
      if (named && IMPERATIVE.test(s)) {
        seen.add(other.name);
        out.push({
          kind: "cross_reference",
          tools: [`${tool.server}/${tool.name}`, `${other.server}/${other.name}`],
          message: `the description of '${tool.server}/${tool.name}' gives instructions about '${other.server}/${other.name}'`,
        });
        break;
      }
    }
  }
  for (const server of servers) {
    if (server === tool.server) continue;
    const re = new RegExp(
      `(?:[\`'"]${escapeRegExp(server)}[\`'"]|\\b${escapeRegExp(server)}\\s+(?:mcp\\s+)?server\\b|\\bserver\\s+[\`'"]?${escapeRegExp(server)}\\b)`,
      "i",
    );
    for (const s of sentences) {
      if (re.test(s) && IMPERATIVE.test(s)) {
        out.push({
          kind: "cross_reference",
          tools: [`${tool.server}/${tool.name}`],
          message: `the description of '${tool.server}/${tool.name}' gives instructions about server '${server}'`,
        });
        break;
      }
    }
  }
  return out;
}
