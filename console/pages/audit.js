// Audit: the most recent audit records, filtered (GET /console/api/audit).
import { api, el, showError, table } from "../shared.js";

export const title = "Audit";

const FIELDS = ["agent", "server", "tool", "decision", "reason"];

export async function render(root) {
  const form = el(
    "form",
    { class: "filters", id: "audit-filters" },
    FIELDS.map((f) =>
      el(
        "div",
        {},
        el("label", { for: `audit-${f}` }, f),
        el("input", { id: `audit-${f}`, name: f, type: "text", size: 14 }),
      ),
    ),
    el("button", { type: "submit" }, "Filter"),
  );
  const holder = el("div", {});
  root.append(el("h2", {}, "Audit"), form, holder);
  const load = async () => {
    const query = new URLSearchParams();
    for (const f of FIELDS) {
      const value = form.elements[f].value.trim();
      if (value) query.set(f, value);
    }
    const { records, kept, capacity } = await api(`/console/api/audit?${query}`);
    holder.replaceChildren(
      table(
        `${records.length} matching of the ${kept} most recent records kept in memory (at most ${capacity}), newest first`,
        ["Request", "Agent", "Server", "Methods / tools", "Decision", "Reasons", "Status", "Latency ms"],
        records.map(recordRow),
      ),
    );
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    load().catch(showError);
  });
  await load();
}

function recordRow(r) {
  return el(
    "tr",
    { "data-request": r.request_id },
    el(
      "td",
      {},
      el("code", {}, r.request_id),
      r.trace_id
        ? el(
            "div",
            { class: "muted" },
            "trace ",
            r.trace_url && /^https?:\/\//.test(r.trace_url)
              ? el("a", { href: r.trace_url, rel: "noreferrer noopener", target: "_blank" }, r.trace_id)
              : r.trace_id,
          )
        : null,
    ),
    el("td", {}, r.agent || (r.anonymous ? "(anonymous)" : "-")),
    el("td", {}, r.server || "-"),
    el(
      "td",
      {},
      r.methods.join(", "),
      r.tools.length ? el("div", {}, el("code", {}, r.tools.join(", "))) : null,
    ),
    el("td", { class: r.decision === "allow" ? "allow" : "deny-text" }, r.decision),
    el("td", {}, r.reasons.join(", ")),
    el("td", {}, r.status === null ? "-" : r.status),
    el("td", {}, r.latency_ms),
  );
}
