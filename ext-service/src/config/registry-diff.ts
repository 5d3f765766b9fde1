import { readFileSync } from "node:fs";
import { ConfigError, parseRegistry } from "./load.js";
import type { Registry, RegistryServer, RegistryTool } from "./schema.js";
import { changedFields, toolPin } from "../policy/canonical.js";

/*
 * What changed between two registry versions: `mcp-gateway registry diff` prints it, and the
 * admin console's Registry page shows it between the running registry and the file on disk.
 */

const RISK_ORDER = { low: 0, medium: 1, high: 2, critical: 3 } as const;

export interface ToolChangeSummary {
  name: string;
  fields: string[];
  pin?: { before: string; after: string };
  risk?: { before: string; after: string; escalated: boolean };
}

export interface ServerChangeSummary {
  name: string;
  fields: string[];
  addedTools: { name: string; risk: string; pin: string }[];
  removedTools: string[];
  changedTools: ToolChangeSummary[];
}

export interface RegistryDiff {
  version: { before: string; after: string } | undefined;
  addedServers: { name: string; tools: number }[];
  removedServers: string[];
  changedServers: ServerChangeSummary[];
}

const SERVER_FIELDS = ["description", "owner", "upstreams"] as const;
const TOOL_META_FIELDS = ["owner", "deprecated"] as const;

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function diffTool(before: RegistryTool, after: RegistryTool): ToolChangeSummary | undefined {
  const fields: string[] = [...changedFields(before, after)];
  for (const f of TOOL_META_FIELDS) if (!same(before[f], after[f])) fields.push(f);
  const pinBefore = before.pin ?? toolPin(before);
  const pinAfter = after.pin ?? toolPin(after);
  const change: ToolChangeSummary = { name: after.name, fields };
  if (pinBefore !== pinAfter) change.pin = { before: pinBefore, after: pinAfter };
  else if (before.pin !== after.pin) fields.push(after.pin ? "pin recorded" : "pin removed");
  if (before.risk !== after.risk) {
    change.risk = {
      before: before.risk,
      after: after.risk,
      escalated: RISK_ORDER[after.risk] > RISK_ORDER[before.risk],
    };
  }
  return fields.length || change.pin || change.risk ? change : undefined;
}

function diffServer(before: RegistryServer, after: RegistryServer): ServerChangeSummary | undefined {
  const fields = SERVER_FIELDS.filter((f) => !same(before[f], after[f])).map(String);
  const oldTools = new Map(before.tools.map((t) => [t.name, t]));
  const newTools = new Map(after.tools.map((t) => [t.name, t]));
  const summary: ServerChangeSummary = {
    name: after.name,
    fields,
    addedTools: after.tools
      .filter((t) => !oldTools.has(t.name))
      .map((t) => ({ name: t.name, risk: t.risk, pin: t.pin ?? toolPin(t) })),
    removedTools: before.tools.filter((t) => !newTools.has(t.name)).map((t) => t.name),
    changedTools: [],
  };
  for (const t of after.tools) {
    const old = oldTools.get(t.name);
    const c = old && diffTool(old, t);
    if (c) summary.changedTools.push(c);
  }
  const changed =
    fields.length || summary.addedTools.length || summary.removedTools.length || summary.changedTools.length;
  return changed ? summary : undefined;
}

/** What changed between two registry versions: servers, tools, pinned fields, pins and risk. */
export function diffRegistries(before: Registry, after: Registry): RegistryDiff {
  const oldServers = new Map(before.servers.map((s) => [s.name, s]));
  const newServers = new Map(after.servers.map((s) => [s.name, s]));
  const diff: RegistryDiff = {
    version: before.version !== after.version ? { before: before.version, after: after.version } : undefined,
    addedServers: after.servers
      .filter((s) => !oldServers.has(s.name))
      .map((s) => ({ name: s.name, tools: s.tools.length })),
    removedServers: before.servers.filter((s) => !newServers.has(s.name)).map((s) => s.name),
    changedServers: [],
  };
  for (const s of after.servers) {
    const old = oldServers.get(s.name);
    const c = old && diffServer(old, s);
    if (c) diff.changedServers.push(c);
  }
  return diff;
}

export function isEmptyDiff(d: RegistryDiff): boolean {
  return !d.version && !d.addedServers.length && !d.removedServers.length && !d.changedServers.length;
}

export function formatRegistryDiff(d: RegistryDiff): string {
  const lines: string[] = [];
  if (d.version) lines.push(`version ${d.version.before} -> ${d.version.after}`);
  for (const s of d.addedServers) lines.push(`+ server ${s.name} (${s.tools} tools)`);
  for (const s of d.removedServers) lines.push(`- server ${s}`);
  for (const s of d.changedServers) {
    lines.push(`~ server ${s.name}${s.fields.length ? `: ${s.fields.join(", ")} changed` : ""}`);
    for (const t of s.addedTools) lines.push(`  + tool ${s.name}/${t.name} (risk ${t.risk}, ${t.pin})`);
    for (const t of s.removedTools) lines.push(`  - tool ${s.name}/${t}`);
    for (const t of s.changedTools) {
      const parts: string[] = [];
      if (t.fields.length) parts.push(t.fields.join(", "));
      if (t.pin) parts.push(`pin ${t.pin.before} -> ${t.pin.after}`);
      if (t.risk)
        parts.push(`risk ${t.risk.before} -> ${t.risk.after}${t.risk.escalated ? " (escalated)" : ""}`);
      lines.push(`  ~ tool ${s.name}/${t.name}: ${parts.join("; ")}`);
    }
  }
  return lines.join("\n");
}

/** Reads and validates a registry file; a missing or unreadable file is a ConfigError naming it. */
export function readRegistryFile(file: string): Registry {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError([
      { file, path: "", message: code === "ENOENT" ? "file not found" : `cannot read (${code})` },
    ]);
  }
  return parseRegistry(text, file);
}
