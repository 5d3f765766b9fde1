import type { Command } from "./command.js";
import { UsageError } from "./command.js";
import { loadEngine } from "../config/compile.js";
import { ConfigError } from "../config/load.js";

export const validateCommand: Command = {
  name: "validate",
  summary: "Check gateway.yaml and the registry it names; print every problem",
  usage: `Usage: mcp-gateway validate --config <gateway.yaml>

Validates the gateway config and its registry: schema, cross-references (roles, CEL
conditions, JWKS sources, servers and tools named by rules and overrides). Every problem is printed as file:line:column: path: message.
Exit code 0 when valid, 1 when not.`,
  options: { config: { type: "string", short: "c" } },
  async run(values) {
    const file = values.config;
    if (typeof file !== "string") throw new UsageError("--config is required");
    const { loaded, engine, references } = loadEngine(file);
    if (references.length > 0) throw new ConfigError(references);
    const tools = loaded.registry.servers.reduce((n, s) => n + s.tools.length, 0);
    process.stdout.write(
      `${file}: valid (registry ${loaded.registry.version}: ${loaded.registry.servers.length} servers, ${tools} tools; ` +
        `${Object.keys(loaded.config.roles).length} roles, ${Object.keys(loaded.config.agents).length} agents; ` +
        `auth ${engine.config.auth.mode})\n`,
    );
  },
};
