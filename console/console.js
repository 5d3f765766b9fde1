// The admin console (docs/CONSOLE.md): plain JavaScript, no dependencies, no inline script (the
// page's Content-Security-Policy forbids it). Every value from the gateway is shown with
// textContent, never parsed as HTML. The token lives in this tab's sessionStorage only.
"use strict";

const TOKEN_KEY = "mcp-gateway-admin-token";

/** @type {Record<string, {title: string, render: (root: HTMLElement) => Promise<void>}>} */
const PAGES = {};

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function setStatus(text, isError) {
  const status = document.getElementById("status");
  status.textContent = text || "";
  status.className = isError ? "error" : "";
}

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** A JSON call with the token as a bearer header; a 401 logs out. */
async function api(path, options) {
  const headers = { authorization: `Bearer ${token()}`, accept: "application/json" };
  const init = { method: "GET", headers, cache: "no-store", credentials: "omit" };
  if (options && options.body !== undefined) {
    init.method = "POST";
    headers["content-type"] = "application/json";
    init.body = JSON.stringify(options.body);
  }
  const res = await fetch(path, init);
  const body = await res.json().catch(() => ({}));
  if (!res.ok) {
    const err = (body && body.error) || {};
    if (res.status === 401) logout(`Logged out: ${err.message || "the token was refused"}`);
    throw new ApiError(res.status, err.code || "error", err.message || `HTTP ${res.status}`);
  }
  return body;
}

function table(caption, columns, rows) {
  return el(
    "table",
    {},
    el("caption", { class: "muted" }, caption),
    el(
      "thead",
      {},
      el(
        "tr",
        {},
        columns.map((c) => el("th", { scope: "col" }, c)),
      ),
    ),
    el(
      "tbody",
      {},
      rows.length === 0
        ? el("tr", {}, el("td", { colspan: columns.length, class: "muted" }, "Nothing to show."))
        : rows,
    ),
  );
}

function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toISOString().replace("T", " ").slice(0, 19) + "Z";
}

function select(id, label, options, value) {
  return [
    el("label", { for: id }, label),
    el(
      "select",
      { id },
      options.map((o) => el("option", { value: o, selected: o === value }, o)),
    ),
  ];
}

// --- Approvals --------------------------------------------------------------------------------

PAGES.approvals = {
  title: "Approvals",
  async render(root) {
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
  },
};

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

// --- Audit ------------------------------------------------------------------------------------

PAGES.audit = {
  title: "Audit",
  async render(root) {
    const fields = ["agent", "server", "tool", "decision", "reason"];
    const form = el(
      "form",
      { class: "filters", id: "audit-filters" },
      fields.map((f) =>
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
      for (const f of fields) {
        const value = form.elements[f].value.trim();
        if (value) query.set(f, value);
      }
      const { records, kept, capacity } = await api(`/console/api/audit?${query}`);
      holder.replaceChildren(
        table(
          `${records.length} matching of the ${kept} most recent records kept in memory (at most ${capacity}), newest first`,
          ["Request", "Agent", "Server", "Methods / tools", "Decision", "Reasons", "Status", "Latency ms"],
          records.map((r) =>
            el(
              "tr",
              { "data-request": r.request_id },
              el(
                "td",
                {},
                el("code", {}, r.request_id),
                r.trace_id ? el("div", { class: "muted" }, `trace ${r.trace_id}`) : null,
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
            ),
          ),
        ),
      );
    };
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      load().catch(showError);
    });
    await load();
  },
};

// --- Shell ------------------------------------------------------------------------------------

function showError(err) {
  setStatus(err instanceof ApiError ? `${err.message} (${err.code})` : String(err), true);
}

function logout(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  document.getElementById("nav").hidden = true;
  document.getElementById("page").hidden = true;
  document.getElementById("login").hidden = false;
  setStatus(message || "", Boolean(message));
}

function currentPage() {
  const name = location.hash.replace(/^#/, "");
  return Object.hasOwn(PAGES, name) ? name : Object.keys(PAGES)[0];
}

async function show() {
  if (!token()) return logout();
  document.getElementById("login").hidden = true;
  document.getElementById("nav").hidden = false;
  const name = currentPage();
  for (const link of document.querySelectorAll("#nav-list a")) {
    if (link.dataset.page === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const page = document.getElementById("page");
  page.hidden = false;
  page.replaceChildren();
  document.title = `${PAGES[name].title} · mcp-gateway console`;
  setStatus("");
  try {
    await PAGES[name].render(page);
  } catch (err) {
    showError(err);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const list = document.getElementById("nav-list");
  for (const [name, page] of Object.entries(PAGES)) {
    list.append(el("li", {}, el("a", { href: `#${name}`, "data-page": name }, page.title)));
  }
  document.getElementById("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const field = document.getElementById("token");
    const value = field.value.trim().replace(/^bearer\s+/i, "");
    field.value = "";
    sessionStorage.setItem(TOKEN_KEY, value);
    try {
      // The approvals list answers any admin or approver: it checks the token before any page.
      await api("/admin/approvals?status=pending");
      await show();
      document.getElementById("main").focus();
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 401)) {
        logout();
        showError(err);
      }
    }
  });
  document.getElementById("logout").addEventListener("click", () => logout("Logged out."));
  window.addEventListener("hashchange", () => void show());
  void show();
});
