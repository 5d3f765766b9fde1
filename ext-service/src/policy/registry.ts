import type { Registry, RegistryServer, RegistryTool } from "./settings.js";

/** The registry compiled for lookups on the request path: the allowlist of servers and tools. */
export interface CompiledServer {
  readonly name: string;
  readonly config: RegistryServer;
  readonly tools: ReadonlyMap<string, RegistryTool>;
}

export class ToolRegistry {
  readonly version: string;
  private readonly servers: ReadonlyMap<string, CompiledServer>;

  constructor(registry: Registry) {
    this.version = registry.version;
    this.servers = new Map(
      registry.servers.map((s) => [
        s.name,
        Object.freeze({ name: s.name, config: s, tools: new Map(s.tools.map((t) => [t.name, t])) }),
      ]),
    );
  }

  server(name: string): CompiledServer | undefined {
    return this.servers.get(name);
  }

  serverNames(): string[] {
    return [...this.servers.keys()];
  }

  /** Every registered tool as `server/tool`. */
  toolNames(): string[] {
    return [...this.servers.values()].flatMap((s) => [...s.tools.keys()].map((t) => `${s.name}/${t}`));
  }

  /** A registered tool that is still offered on `today` (YYYY-MM-DD); deprecated tools are gone from their date. */
  tool(
    server: string,
    name: string,
    today: string,
  ): { tool: RegistryTool } | { missing: "unregistered" | "deprecated" } {
    const tool = this.servers.get(server)?.tools.get(name);
    if (!tool) return { missing: "unregistered" };
    if (tool.deprecated !== undefined && tool.deprecated <= today) return { missing: "deprecated" };
    return { tool };
  }
}
