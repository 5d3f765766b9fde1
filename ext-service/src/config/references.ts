import { problemAt, suggestion, type ConfigProblem, type ConfigSource } from "./load.js";
import type { GatewayConfig, Registry } from "./schema.js";
import { globToRegExp } from "../policy/rbac.js";

/**
 * Names in gateway.yaml that must exist in the registry: the server of every rule glob and
 * security override, and the tool of every tool glob on a known server. A misspelt name matches
 * nothing, so a deny rule with a typo silently allows what it meant to refuse; each one is a
 * problem located in gateway.yaml, with the closest registered name as a hint.
 */
export function registryReferenceProblems(
  config: GatewayConfig,
  registry: Registry,
  where: ConfigSource,
): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const servers = registry.servers.map((s) => s.name);
  const toolsOf = new Map(registry.servers.map((s) => [s.name, s.tools.map((t) => t.name)]));
  const check = (glob: string, path: readonly PropertyKey[], namesTools: boolean) => {
    const message = unknownReference(glob, servers, namesTools ? toolsOf : undefined);
    if (message !== undefined) problems.push(problemAt(where, path, message));
  };
  for (const [role, { rules }] of Object.entries(config.roles)) {
    rules.forEach((rule, i) => {
      for (const kind of ["tools", "prompts", "resources"] as const) {
        rule[kind]?.forEach((glob, j) => check(glob, ["roles", role, "rules", i, kind, j], kind === "tools"));
      }
    });
  }
  config.security.overrides.forEach((override, i) =>
    override.match.forEach((glob, j) => check(glob, ["security", "overrides", i, "match", j], false)),
  );
  return problems;
}

function unknownReference(
  glob: string,
  servers: readonly string[],
  toolsOf: ReadonlyMap<string, readonly string[]> | undefined,
): string | undefined {
  const slash = glob.indexOf("/");
  if (slash <= 0) return undefined; // not server/name: the RBAC compiler reports it
  const across = glob.indexOf("**");
  if (across >= 0 && across < slash) return undefined; // '**' spans the server part: any server may do
  const server = glob.slice(0, slash);
  if (server.includes("*")) {
    const pattern = globToRegExp(server);
    return servers.some((s) => pattern.test(s))
      ? undefined
      : `'${glob}': '${server}' matches no server in the registry`;
  }
  if (!servers.includes(server)) {
    return `'${glob}': no server '${server}' in the registry${suggestion(server, servers)}`;
  }
  const tools = toolsOf?.get(server);
  if (tools === undefined) return undefined;
  const tool = glob.slice(slash + 1);
  if (!tool.includes("*")) {
    return tools.includes(tool)
      ? undefined
      : `'${glob}': server '${server}' has no tool '${tool}' in the registry${suggestion(tool, tools)}`;
  }
  const pattern = globToRegExp(tool);
  return tools.some((t) => pattern.test(t))
    ? undefined
    : `'${glob}': '${tool}' matches no tool of server '${server}' in the registry`;
}
