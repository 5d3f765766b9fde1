import { UsageError } from "./command.js";
import {
  diffRegistries,
  formatRegistryDiff,
  isEmptyDiff,
  readRegistryFile,
} from "../config/registry-diff.js";
import type { RegistrySubcommand } from "./command.js";

export const registryDiffCommand: RegistrySubcommand = {
  name: "diff",
  summary: "Show what changed between two registry versions",
  usage: `Usage: mcp-gateway registry diff <old-registry.yaml> <new-registry.yaml> [--json]

Compares two registry files: servers added, removed or changed (description, owner,
upstreams); tools added, removed or changed, with the pinned fields that differ (title,
description, inputSchema, outputSchema, annotations), pin changes and risk changes (escalations
are marked).

Options:
  --json   print the comparison as JSON

Exit code 0 when the registries are equivalent, 1 when they differ (as diff(1) does).`,
  options: { json: { type: "boolean" } },
  allowPositionals: true,
  async run(values, positionals) {
    if (positionals.length !== 2) throw new UsageError("two registry files are required");
    const [a, b] = positionals as [string, string];
    const diff = diffRegistries(readRegistryFile(a), readRegistryFile(b));
    if (values.json) process.stdout.write(JSON.stringify(diff, null, 2) + "\n");
    else process.stdout.write((isEmptyDiff(diff) ? "no differences" : formatRegistryDiff(diff)) + "\n");
    return isEmptyDiff(diff) ? 0 : 1;
  },
};
