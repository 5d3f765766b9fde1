// The admin console's entry module (docs/CONSOLE.md): login, navigation and the page list.
// Plain ES modules, no dependencies, no inline script (the page's Content-Security-Policy
// forbids it). A page is a module in pages/ exporting `title`, `render(root)` and, when
// approvers may open it too, `forApprovers = true`; add it to PAGES below (the order is the
// navigation's order; the first page the token may open is the default).
import { ApiError, SESSION_KEY, api, el, logout, setStatus, showError, storeToken, token } from "./shared.js";
import * as overview from "./pages/overview.js";
import * as registry from "./pages/registry.js";
import * as access from "./pages/access.js";
import * as audit from "./pages/audit.js";
import * as approvals from "./pages/approvals.js";
import * as budgets from "./pages/budgets.js";

/** @type {Record<string, {title: string, render: (root: HTMLElement) => Promise<void>, forApprovers?: boolean}>} */
const PAGES = { overview, registry, access, audit, approvals, budgets };

/** Who the token is ({agent, access}), asked once per tab; it also checks the token. */
async function session() {
  const known = sessionStorage.getItem(SESSION_KEY);
  if (known) return JSON.parse(known);
  const who = await api("/console/api/session");
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(who));
  return who;
}

function allowedPages(who) {
  return Object.keys(PAGES).filter((name) => who.access === "admin" || PAGES[name].forApprovers);
}

function currentPage(allowed) {
  const name = location.hash.replace(/^#/, "");
  return allowed.includes(name) ? name : allowed[0];
}

async function show() {
  if (!token()) return logout();
  let who;
  try {
    who = await session();
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) {
      logout();
      showError(err);
    }
    return;
  }
  const allowed = allowedPages(who);
  document.getElementById("login").hidden = true;
  document.getElementById("nav").hidden = false;
  document.getElementById("who").textContent = `${who.agent} (${who.access})`;
  const name = currentPage(allowed);
  const list = document.getElementById("nav-list");
  list.replaceChildren(
    ...allowed.map((page) =>
      el(
        "li",
        {},
        el(
          "a",
          { href: `#${page}`, "data-page": page, "aria-current": page === name ? "page" : null },
          PAGES[page].title,
        ),
      ),
    ),
  );
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

function start() {
  document.getElementById("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const field = document.getElementById("token");
    const value = field.value.trim().replace(/^bearer\s+/i, "");
    field.value = "";
    sessionStorage.removeItem(SESSION_KEY);
    storeToken(value);
    await show();
    if (!document.getElementById("page").hidden) document.getElementById("main").focus();
  });
  document.getElementById("logout").addEventListener("click", () => logout("Logged out."));
  window.addEventListener("hashchange", () => void show());
  void show();
}

// Module scripts run after the document is parsed (they are deferred), so the DOM is there.
start();
