// What every console page shares (docs/CONSOLE.md): the token, the JSON API call, DOM helpers and
// the status line. Every value from the gateway goes into the page as text (textContent or a text
// node), never parsed as HTML. The token lives in this tab's sessionStorage only.

const TOKEN_KEY = "mcp-gateway-admin-token";
/** Who the token is ({agent, access}), as /console/api/session said; forgotten with the token. */
export const SESSION_KEY = "mcp-gateway-console-session";

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function storeToken(value) {
  sessionStorage.setItem(TOKEN_KEY, value);
}

/** An element with attributes (on* keys become listeners) and children (strings become text nodes). */
export function el(tag, attrs, ...children) {
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

export function setStatus(text, isError) {
  const status = document.getElementById("status");
  status.textContent = text || "";
  status.className = isError ? "error" : "";
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function showError(err) {
  setStatus(err instanceof ApiError ? `${err.message} (${err.code})` : String(err), true);
}

/** Forgets the token and shows the login form. */
export function logout(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(SESSION_KEY);
  document.getElementById("nav").hidden = true;
  document.getElementById("page").hidden = true;
  document.getElementById("login").hidden = false;
  setStatus(message || "", Boolean(message));
}

/** A JSON call with the token as a bearer header (POST when options.body is given); a 401 logs out. */
export async function api(path, options) {
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

/** A data table with a caption and column headers; an empty row list says so. */
export function table(caption, columns, rows) {
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

/** An ISO time as "YYYY-MM-DD HH:MM:SSZ" (UTC, so every reader sees the same clock). */
export function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toISOString().replace("T", " ").slice(0, 19) + "Z";
}

/** A labelled <select>: [label, select]. */
export function select(id, label, options, value) {
  return [
    el("label", { for: id }, label),
    el(
      "select",
      { id },
      options.map((o) => el("option", { value: o, selected: o === value }, o)),
    ),
  ];
}
