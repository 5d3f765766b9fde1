// The admin console's entry module (docs/CONSOLE.md): login, navigation and the page list.
// Plain ES modules, no dependencies, no inline script (the page's Content-Security-Policy
// forbids it). A page is a module in pages/ exporting `title` and `render(root)`; add it to
// PAGES below (the order is the navigation's order, the first is the default page).
import { ApiError, api, el, logout, setStatus, showError, storeToken, token } from "./shared.js";
import * as approvals from "./pages/approvals.js";
import * as audit from "./pages/audit.js";
import * as access from "./pages/access.js";
import * as budgets from "./pages/budgets.js";

/** @type {Record<string, {title: string, render: (root: HTMLElement) => Promise<void>}>} */
const PAGES = { approvals, audit, access, budgets };

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

function start() {
  const list = document.getElementById("nav-list");
  for (const [name, page] of Object.entries(PAGES)) {
    list.append(el("li", {}, el("a", { href: `#${name}`, "data-page": name }, page.title)));
  }
  document.getElementById("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const field = document.getElementById("token");
    const value = field.value.trim().replace(/^bearer\s+/i, "");
    field.value = "";
    storeToken(value);
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
}

// Module scripts run after the document is parsed (they are deferred), so the DOM is there.
start();
