import { request } from "undici";
import type { Command } from "./command.js";
import { UsageError } from "./command.js";

export const ADMIN_URL_ENV = "MCP_GATEWAY_ADMIN_URL";
export const ADMIN_TOKEN_ENV = "MCP_GATEWAY_ADMIN_TOKEN";
const DEFAULT_ADMIN_URL = "http://127.0.0.1:9901";

interface View {
  id: string;
  status: string;
  rule: string;
  server: string;
  tool: string;
  agent: string;
  issuer: string | null;
  arguments: unknown;
  requested_at: string;
  expires_at: string;
  decided_by: { agent: string; issuer: string | null } | null;
  note: string | null;
  approve_url: string;
}

function listLine(v: View): string {
  const args = JSON.stringify(v.arguments ?? {});
  const shown = args.length > 60 ? `${args.slice(0, 57)}...` : args;
  return `${v.id}  ${v.status.padEnd(8)}  ${v.agent} -> ${v.server}/${v.tool} ${shown}  (until ${v.expires_at})`;
}

/** `mcp-gateway approvals`: a client of the admin API (docs/APPROVALS.md), nothing more. */
export const approvalsCommand: Command = {
  name: "approvals",
  summary: "List, show, approve or deny tool calls held for human approval (admin API client)",
  usage: `Usage: mcp-gateway approvals <list|show|approve|deny> [id] [--url URL] [--status S] [--note TEXT] [--json]

  list              approvals still kept (--status pending|approved|denied|used|expired|all, default pending)
  show <id>         one approval, as JSON
  approve <id>      let the identical call through (once, unless the rule allows more uses)
  deny <id>         refuse it; the same call is not asked again while the request would have waited

Talks to the admin API of a running gateway: --url, else $${ADMIN_URL_ENV}, else ${DEFAULT_ADMIN_URL}.
Authenticates with the bearer token in $${ADMIN_TOKEN_ENV}: a token of a configured issuer whose
holder is an approver of the call (approvals.approvers) or holds an admin role (list, show, deny).
Nobody decides their own call. Exit status: 0 done, 1 refused or failed, 2 usage.`,
  allowPositionals: true,
  options: {
    url: { type: "string" },
    status: { type: "string" },
    note: { type: "string" },
    json: { type: "boolean", default: false },
  },
  async run(values, positionals) {
    const [action, id, ...extra] = positionals;
    if (action === undefined) throw new UsageError("say what to do: list, show, approve or deny");
    if (!["list", "show", "approve", "deny"].includes(action))
      throw new UsageError(`unknown action '${action}'`);
    if (action === "list" ? id !== undefined : id === undefined || extra.length > 0)
      throw new UsageError(action === "list" ? "list takes no id" : `${action} takes one approval id`);
    const token = process.env[ADMIN_TOKEN_ENV];
    if (token === undefined || token.trim() === "") {
      throw new UsageError(`set ${ADMIN_TOKEN_ENV} to an approver's or admin's bearer token`);
    }
    const base = (
      (values.url as string | undefined) ??
      process.env[ADMIN_URL_ENV] ??
      DEFAULT_ADMIN_URL
    ).replace(/\/+$/, "");
    const headers: Record<string, string> = { authorization: `Bearer ${token.trim()}` };
    let path = "/admin/approvals";
    let method: "GET" | "POST" = "GET";
    let body: string | undefined;
    if (action === "list")
      path += `?status=${encodeURIComponent((values.status as string | undefined) ?? "pending")}`;
    else path += `/${encodeURIComponent(id!)}`;
    if (action === "approve" || action === "deny") {
      path += `/${action}`;
      method = "POST";
      headers["content-type"] = "application/json";
      body = JSON.stringify(values.note === undefined ? {} : { note: values.note });
    }
    let res;
    try {
      res = await request(`${base}${path}`, { method, headers, body });
    } catch (err) {
      process.stderr.write(
        `mcp-gateway approvals: cannot reach the admin API at ${base} (${(err as { code?: string }).code ?? (err as Error).message})\n`,
      );
      return 1;
    }
    const text = await res.body.text();
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    if (res.statusCode !== 200) {
      const message =
        (parsed as { error?: { message?: string } } | undefined)?.error?.message ?? `HTTP ${res.statusCode}`;
      process.stderr.write(`mcp-gateway approvals ${action}: ${message}\n`);
      return 1;
    }
    if (values.json === true || action === "show") {
      process.stdout.write(`${JSON.stringify(parsed, null, 2)}\n`);
      return 0;
    }
    if (action === "list") {
      const list = (parsed as { approvals: View[] }).approvals;
      if (list.length === 0) process.stdout.write("no approvals\n");
      for (const v of list) process.stdout.write(`${listLine(v)}\n`);
      return 0;
    }
    const v = parsed as View;
    process.stdout.write(
      action === "approve"
        ? `approved ${v.id}: ${v.agent}'s identical call to ${v.server}/${v.tool} may go through until ${v.expires_at}\n`
        : `denied ${v.id}: ${v.agent}'s call to ${v.server}/${v.tool}\n`,
    );
    return 0;
  },
};
