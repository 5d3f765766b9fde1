import type { ParseArgsConfig } from "node:util";

/**
 * What every CLI command is. Kept apart from cli.ts, which lists the commands, so a command can be
 * imported on its own (tests, another command) without an import cycle through the list.
 */
export interface Command {
  name: string;
  summary: string;
  usage: string;
  options: NonNullable<ParseArgsConfig["options"]>;
  allowPositionals?: boolean;
  run(
    values: Record<string, string | boolean | (string | boolean)[] | undefined>,
    positionals: string[],
  ): Promise<number | void>;
}

/** A usage error: printed with the command's help, exit code 2. */
export class UsageError extends Error {}

/** One `mcp-gateway registry <sub>` subcommand; each lives in its own module. */
export interface RegistrySubcommand {
  name: string;
  summary: string;
  usage: string;
  options: Command["options"];
  allowPositionals?: boolean;
  run: Command["run"];
}
