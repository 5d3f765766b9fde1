#!/usr/bin/env node
import { realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { ConfigError } from "./config/load.js";
import { UsageError } from "./commands/command.js";
import { commands } from "./commands/index.js";
import { registrySubcommand } from "./commands/registry.js";

export { UsageError, type Command } from "./commands/command.js";

function mainHelp(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return [
    "mcp-gateway: one policy point between AI agents and their MCP servers",
    "",
    "Usage: mcp-gateway <command> [options]",
    "",
    "Commands:",
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    "",
    "Run 'mcp-gateway <command> --help' for a command's options.",
  ].join("\n");
}

export async function main(argv: string[]): Promise<number> {
  let [name, ...rest] = argv;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(mainHelp() + "\n");
    return name ? 0 : 2;
  }
  let command = commands.find((c) => c.name === name);
  const sub = name === "registry" ? registrySubcommand(rest[0]) : undefined;
  if (sub) {
    command = sub;
    name = sub.name;
    rest = rest.slice(1);
  }
  if (!command) {
    process.stderr.write(`mcp-gateway: unknown command '${name}'\n\n${mainHelp()}\n`);
    return 2;
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    process.stdout.write(`${command.usage}\n`);
    return 0;
  }
  try {
    const { values, positionals } = parseArgs({
      args: rest,
      options: command.options,
      allowPositionals: command.allowPositionals ?? false,
      strict: true,
    });
    return (await command.run(values, positionals)) ?? 0;
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n${err.problems.length} problem(s) found.\n`);
      return 1;
    }
    if (err instanceof UsageError || (err as NodeJS.ErrnoException).code?.startsWith("ERR_PARSE_ARGS")) {
      process.stderr.write(`mcp-gateway ${name}: ${(err as Error).message}\n\n${command.usage}\n`);
      return 2;
    }
    process.stderr.write(`mcp-gateway ${name}: ${(err as Error).message}\n`);
    return 1;
  }
}

/**
 * True when Node was started on this file. npx, a global install and node_modules/.bin start it
 * through a symlink, so both sides are compared after resolving links.
 */
function startedAsProgram(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (startedAsProgram()) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`mcp-gateway: ${(err as Error).stack ?? String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
