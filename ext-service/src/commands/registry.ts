import type { Command, RegistrySubcommand } from "./command.js";
import { UsageError } from "./command.js";
import { registryDiffCommand } from "./registry-diff.js";
import { registryLintCommand } from "./registry-lint.js";
import { registryPinCommand } from "./registry-pin.js";
import { renderEnvoySubcommand } from "./registry-render-envoy.js";
import { registryUsageCommand } from "./registry-usage.js";

const subcommands: RegistrySubcommand[] = [
  registryLintCommand,
  registryPinCommand,
  registryDiffCommand,
  renderEnvoySubcommand,
  registryUsageCommand,
];

export const registryCommand: Command = {
  name: "registry",
  summary: "Registry lifecycle: lint, pin, diff, render-envoy, usage",
  get usage() {
    return [
      "Usage: mcp-gateway registry <subcommand> [options]",
      "",
      ...subcommands.map((s) => `  ${s.name.padEnd(13)} ${s.summary}`),
      "",
      "Run 'mcp-gateway registry <subcommand> --help' for its options.",
    ].join("\n");
  },
  options: {},
  allowPositionals: true,
  async run() {
    throw new UsageError("a subcommand is required");
  },
};

/** Resolves `registry <sub> ...` to the subcommand's own Command, so cli.ts parses its options. */
export function registrySubcommand(name: string | undefined): Command | undefined {
  const sub = subcommands.find((s) => s.name === name);
  return sub && { ...sub, name: `registry ${sub.name}` };
}
