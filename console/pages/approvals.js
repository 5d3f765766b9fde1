// Approvals: the queue of held calls; approve or deny with a note (GET/POST /admin/approvals).
import { api, el, select, setStatus, showError, table, when } from "../shared.js";

export const title = "Approvals";
/** Approvers open this page too (every other page is for admins). */
export const forApprovers = true;

export async function render(root) {
  const wanted = sessionStorage.getItem("approvals-status") || "pending";
  const filter = el(
    "div",
    { class: "filters" },
    el(
      "div",
      {},
      select(
        "approvals-status",
        "Status",
        ["pending", "approved", "denied", "used", "expired", "all"],
        wanted,
      ),
    ),
  );
  const holder = el("div", {});
  root.append(el("h2", {}, "Approvals"), filter, holder);
  const statusSelect = filter.querySelector("select");
  const load = async () => {
    sessionStorage.setItem("approvals-status", statusSelect.value);
    const { approvals } = await api(`/admin/approvals?status=${encodeURIComponent(statusSelect.value)}`);
    holder.replaceChildren(
      table(
        `${approvals.length} approval(s), newest first`,
        ["Call", "Requester", "Arguments (redacted)", "Binding", "Status", "Expires", "Decision"],
        approvals.map((a) => approvalRow(a, load)),
      ),
    );
  };
  statusSelect.addEventListener("change", () => load().catch(showError));
  await load();
}

function approvalRow(a, reload) {
  const decide = async (action, note) => {
    try {
      const view = await api(`/admin/approvals/${encodeURIComponent(a.id)}/${action}`, {
        body: note ? { note } : {},
      });
      setStatus(`Approval ${view.id} ${view.status} by ${view.decided_by ? view.decided_by.agent : "you"}.`);
      await reload();
    } catch (err) {
      showError(err);
    }
  };
  const noteId = `note-${a.id}`;
  const decision =
    a.status === "pending"
      ? el(
          "div",
          {},
          el("label", { for: noteId }, "Note"),
          el("input", { id: noteId, type: "text", size: 18 }),
          " ",
          el(
            "button",
            {
              type: "button",
              "aria-label": `Approve ${a.server}/${a.tool} for ${a.agent}`,
              onclick: (e) => decide("approve", e.target.parentElement.querySelector("input").value),
            },
            "Approve",
          ),
          " ",
          el(
            "button",
            {
              type: "button",
              class: "deny",
              "aria-label": `Deny ${a.server}/${a.tool} for ${a.agent}`,
              onclick: (e) => decide("deny", e.target.parentElement.querySelector("input").value),
            },
            "Deny",
          ),
        )
      : el(
          "span",
          {},
          a.decided_by ? `${a.status} by ${a.decided_by.agent} at ${when(a.decided_at)}` : a.status,
          a.note ? ` (${a.note})` : "",
        );
  return el(
    "tr",
    { "data-approval": a.id },
    el(
      "td",
      {},
      el("code", {}, `${a.server}/${a.tool}`),
      el("div", { class: "muted" }, `rule ${a.rule}, risk ${a.risk || "-"}`),
    ),
    el(
      "td",
      {},
      a.agent,
      el("div", { class: "muted" }, a.issuer),
      el("div", { class: "muted" }, when(a.requested_at)),
    ),
    el("td", {}, el("pre", {}, JSON.stringify(a.arguments, null, 1))),
    el(
      "td",
      {},
      el("div", {}, "pin ", el("code", {}, String(a.pin || "").slice(0, 16))),
      el("div", {}, "args ", el("code", {}, String(a.arguments_digest || "").slice(0, 16))),
      el("div", { class: "muted" }, `uses left ${a.uses_left}`),
    ),
    el("td", {}, a.status),
    el("td", {}, when(a.expires_at)),
    el("td", {}, decision),
  );
}
