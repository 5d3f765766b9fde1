import { renameSync, readFileSync, writeFileSync, unlinkSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { isMap, isSeq, parseDocument, type Document, type YAMLMap, type YAMLSeq } from "yaml";
import { UsageError } from "./command.js";
import { loadConfig } from "../config/load.js";
import { RegistrySchema, type RegistryServer } from "../config/schema.js";
import { canonicalJson, PINNED_FIELDS, toolPin, type PinnedField } from "../policy/canonical.js";
import { crossReferences } from "../policy/collisions.js";
import { scanInjection } from "../policy/injection.js";
import { diffTools, type ToolDiff } from "../policy/pins.js";
import { definitionTexts } from "../policy/security.js";
import { describeFetchError, fetchLiveTools } from "../upstream/tool-list.js";
import type { RegistrySubcommand } from "./command.js";

function shorten(s: string, n = 240): string {
  return s.length > n ? `${s.slice(0, n)}... (${s.length} chars)` : s;
}

function show(field: PinnedField, v: unknown): string {
  if (v === undefined) return "(absent)";
  if (typeof v === "string") return JSON.stringify(field === "description" ? v : shorten(v));
  return shorten(canonicalJson(v));
}

export interface ServerReport {
  server: string;
  upstream: string | undefined;
  /** Set when no upstream could be listed: each upstream tried, with why it failed. */
  error: string | undefined;
  diff: ToolDiff | undefined;
  /** Live tools whose texts trip block-tier rules or instruct about other servers: never written. */
  poisoned: Map<string, string[]>;
}

/** A reviewable, line-oriented rendering of one server's comparison. */
export function formatReport(report: ServerReport, registered: RegistryServer): string {
  const lines: string[] = [];
  if (report.error !== undefined) {
    lines.push(`server ${report.server}: unreachable`, ...report.error.split("\n").map((l) => `  ${l}`));
    return lines.join("\n");
  }
  const diff = report.diff!;
  lines.push(
    `server ${report.server} (${report.upstream}): ${diff.added.length} new, ${diff.changed.length} changed, ` +
      `${diff.removed.length} removed, ${diff.unpinned.length} unpinned, ${diff.unchanged.length} unchanged`,
  );
  const byName = new Map(registered.tools.map((t) => [t.name, t]));
  for (const c of diff.changed) {
    lines.push(`  ~ ${c.name}: ${c.fields.join(", ") || "pin"} changed`);
    const before = byName.get(c.name) as unknown as Record<string, unknown>;
    for (const f of c.fields) {
      lines.push(`      - ${f}: ${show(f, before?.[f])}`);
      lines.push(`      + ${f}: ${show(f, c.live[f])}`);
    }
    lines.push(`      pin ${c.before} -> ${c.after}`);
  }
  for (const t of diff.added) lines.push(`  + ${String(t.name)}: new (not in the registry)`);
  for (const t of diff.removed) lines.push(`  - ${t.name}: removed (registered, no longer offered)`);
  for (const u of diff.unpinned) lines.push(`  = ${u.name}: matches, no pin recorded yet (${u.pin})`);
  for (const [name, rules] of report.poisoned) {
    lines.push(`  ! ${name}: live definition trips ${rules.join(", ")}; it will not be written`);
  }
  return lines.join("\n");
}

export async function compareServer(
  server: RegistryServer,
  allServers: readonly RegistryServer[],
  fetcher: (url: string) => Promise<Record<string, unknown>[]> = fetchLiveTools,
): Promise<ServerReport> {
  const failures: string[] = [];
  for (const upstream of server.upstreams) {
    let live: Record<string, unknown>[];
    try {
      live = await fetcher(upstream);
    } catch (err) {
      failures.push(`${upstream}: ${describeFetchError(err)}`);
      continue;
    }
    const poisoned = new Map<string, string[]>();
    const others = allServers
      .filter((s) => s.name !== server.name)
      .flatMap((s) => s.tools.map((t) => ({ server: s.name, name: t.name })));
    for (const t of live) {
      const rules = new Set<string>();
      for (const text of definitionTexts(t)) {
        for (const f of scanInjection(text).findings) if (f.tier === "block") rules.add(f.rule);
      }
      const description = typeof t.description === "string" ? t.description : "";
      const refs = crossReferences(
        { server: server.name, name: String(t.name), description },
        others,
        allServers.map((s) => s.name),
      );
      if (refs.length > 0) rules.add("shadowing.cross_reference");
      if (rules.size > 0) poisoned.set(String(t.name), [...rules]);
    }
    return { server: server.name, upstream, error: undefined, diff: diffTools(server.tools, live), poisoned };
  }
  const error = failures.length > 0 ? failures.join("\n") : "no upstreams";
  return { server: server.name, upstream: undefined, error, diff: undefined, poisoned: new Map() };
}

function findServerNode(doc: Document, name: string): YAMLMap | undefined {
  const servers = doc.get("servers");
  if (!isSeq(servers)) return undefined;
  for (const item of servers.items) {
    if (isMap(item) && item.get("name") === name) return item;
  }
  return undefined;
}

function toolsSeq(doc: Document, serverNode: YAMLMap): YAMLSeq {
  let tools = serverNode.get("tools");
  if (!isSeq(tools)) {
    tools = doc.createNode([]);
    serverNode.set("tools", tools);
  }
  return tools as YAMLSeq;
}

/**
 * Block style for a tool list that gets new entries: `tools: []` is a flow sequence, and YAML
 * writes everything added inside a flow collection on its one line (13 tools made one 6 KB line
 * nobody can review).
 */
function blockStyle(tools: YAMLSeq): void {
  tools.flow = false;
  for (const item of tools.items) if (isMap(item)) item.flow = false;
}

function findToolNode(tools: YAMLSeq, name: string): YAMLMap | undefined {
  for (const item of tools.items) if (isMap(item) && item.get("name") === name) return item;
  return undefined;
}

/** Writes the live definition's pinned fields (and the pin) into an existing tool node. */
function updateToolNode(doc: Document, node: YAMLMap, live: Record<string, unknown>): void {
  for (const field of PINNED_FIELDS) {
    if (field === "name") continue;
    const v = live[field];
    if (v === undefined || v === null || (field === "description" && v === "")) {
      if (node.has(field)) node.delete(field);
    } else node.set(field, doc.createNode(v));
  }
  node.set("pin", toolPin(live));
}

export interface WriteSummary {
  updated: string[];
  pinned: string[];
  added: string[];
  skipped: string[];
}

/**
 * Applies reports to the registry text: changed and unpinned tools get the live definition and
 * pin; with `addNew`, new tools are appended with `risk: high` until someone reviews them.
 * Comments and formatting elsewhere are kept (YAML document API).
 */
export function applyReports(
  text: string,
  reports: readonly ServerReport[],
  addNew: boolean,
): { text: string; summary: WriteSummary } {
  const doc = parseDocument(text);
  const summary: WriteSummary = { updated: [], pinned: [], added: [], skipped: [] };
  for (const r of reports) {
    if (!r.diff) continue;
    const serverNode = findServerNode(doc, r.server);
    if (!serverNode) continue;
    const tools = toolsSeq(doc, serverNode);
    for (const c of r.diff.changed) {
      if (r.poisoned.has(c.name)) {
        summary.skipped.push(`${r.server}/${c.name}`);
        continue;
      }
      const node = findToolNode(tools, c.name);
      if (!node) continue;
      updateToolNode(doc, node, c.live);
      summary.updated.push(`${r.server}/${c.name}`);
    }
    for (const u of r.diff.unpinned) {
      const node = findToolNode(tools, u.name);
      if (!node) continue;
      node.set("pin", u.pin);
      summary.pinned.push(`${r.server}/${u.name}`);
    }
    if (addNew) {
      for (const live of r.diff.added) {
        const name = String(live.name);
        if (r.poisoned.has(name)) {
          summary.skipped.push(`${r.server}/${name}`);
          continue;
        }
        const entry: Record<string, unknown> = {};
        for (const field of PINNED_FIELDS) {
          const v = live[field];
          if (v !== undefined && v !== null && !(field === "description" && v === "")) entry[field] = v;
        }
        entry.risk = "high";
        entry.pin = toolPin(live);
        blockStyle(tools);
        tools.add(doc.createNode(entry));
        summary.added.push(`${r.server}/${name}`);
      }
    }
  }
  return { text: doc.toString({ lineWidth: 0 }), summary };
}

/** Replaces a file atomically: write a temporary file beside it, then rename over it. */
export function writeAtomically(file: string, text: string): void {
  const tmp = join(dirname(file), `.${basename(file)}.${process.pid}.${Date.now()}.tmp`);
  try {
    writeFileSync(tmp, text, { mode: 0o644 });
    renameSync(tmp, file);
  } catch (err) {
    try {
      unlinkSync(tmp);
    } catch {
      // already gone
    }
    throw err;
  }
}

export const registryPinCommand: RegistrySubcommand = {
  name: "pin",
  summary: "Fetch tools/list from live servers, show what changed, record pins",
  usage: `Usage: mcp-gateway registry pin --config <gateway.yaml> [--server <name>] [--write] [--add-new]

Connects to each registry server (its first reachable upstream) with the MCP client, fetches
tools/list and compares every live definition with the registry:
  ~ changed   the live definition differs from the pin; the changed fields are shown
  + new       the server offers a tool the registry does not list
  - removed   a registered tool the server no longer offers
  = unpinned  the definition matches but no pin is recorded yet
  ! poisoned  a live definition trips a block-tier injection rule or instructs about
              another server's tools; it is never written

Options:
  --config, -c   gateway.yaml (its 'registry' names the registry file)
  --server, -s   only this server (repeatable)
  --write        update registry.yaml: definitions and pins of changed and unpinned tools,
                 written atomically, comments kept
  --add-new      with --write, also add new tools (as risk: high, for review)

Exit code 0 when the registry matches the live servers (or was written), 1 when it differs
and --write was not given, when new tools remain unadded (--write without --add-new), when a
server cannot be reached (each upstream's URL and cause are printed), or a poisoned tool was
skipped.`,
  options: {
    config: { type: "string", short: "c" },
    server: { type: "string", short: "s", multiple: true },
    write: { type: "boolean" },
    "add-new": { type: "boolean" },
  },
  async run(values) {
    const file = values.config;
    if (typeof file !== "string") throw new UsageError("--config is required");
    if (values["add-new"] && !values.write) throw new UsageError("--add-new needs --write");
    const loaded = loadConfig(file);
    const wanted = (values.server as string[] | undefined) ?? [];
    const servers = loaded.registry.servers.filter((s) => wanted.length === 0 || wanted.includes(s.name));
    const unknown = wanted.filter((w) => !loaded.registry.servers.some((s) => s.name === w));
    if (unknown.length > 0) throw new UsageError(`unknown server ${unknown.map((u) => `'${u}'`).join(", ")}`);

    const reports: ServerReport[] = [];
    for (const server of servers) {
      const report = await compareServer(server, loaded.registry.servers);
      reports.push(report);
      process.stdout.write(formatReport(report, server) + "\n");
    }
    const unreachable = reports.some((r) => r.error !== undefined);
    const poisoned = reports.some((r) => r.poisoned.size > 0);
    const differs = reports.some(
      (r) =>
        r.diff &&
        (r.diff.changed.length || r.diff.added.length || r.diff.removed.length || r.diff.unpinned.length),
    );
    const added = reports.flatMap((r) => (r.diff?.added ?? []).map((t) => `${r.server}/${String(t.name)}`));
    if (!values.write) {
      if (differs)
        process.stdout.write(
          "registry differs from the live servers; review, then run again with " +
            (added.length > 0
              ? `--write --add-new (${added.length} new tool(s) are added only with --add-new)\n`
              : "--write\n"),
        );
      return unreachable || poisoned || differs ? 1 : 0;
    }
    const before = readFileSync(loaded.registryFile, "utf8");
    const { text, summary } = applyReports(before, reports, values["add-new"] === true);
    // Never write a file the loader would refuse.
    const check = RegistrySchema.safeParse(parseDocument(text).toJS());
    if (!check.success)
      throw new Error(`refusing to write an invalid registry: ${check.error.issues[0]?.message}`);
    if (text !== before) writeAtomically(loaded.registryFile, text);
    process.stdout.write(
      `${loaded.registryFile}: ${summary.updated.length} updated, ${summary.pinned.length} pinned, ` +
        `${summary.added.length} added, ${summary.skipped.length} skipped` +
        (summary.skipped.length ? ` (${summary.skipped.join(", ")})` : "") +
        "\nbump 'version' and review the change before committing\n",
    );
    const unadded = values["add-new"] === true ? [] : added;
    if (unadded.length > 0) {
      process.stdout.write(
        `${unadded.length} new tool(s) not added (${unadded.join(", ")}): review them, then run again with --write --add-new\n`,
      );
    }
    return unreachable || summary.skipped.length > 0 || unadded.length > 0 ? 1 : 0;
  },
};
