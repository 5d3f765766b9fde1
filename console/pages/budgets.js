// Budgets: how much of each budget is spent this period (GET /console/api/budgets), from the
// counters in the state store the planes charge.
import { api, el, table, when } from "../shared.js";

export const title = "Budgets";

const STATE_TEXT = { ok: "ok", warning: "warning", exhausted: "spent", unknown: "store unavailable" };
const STATE_CLASS = { ok: "allow", warning: "warn", exhausted: "deny-text", unknown: "deny-text" };

export async function render(root) {
  const page = await api("/console/api/budgets");
  const store = page.store;
  root.append(
    el("h2", {}, "Budgets"),
    el(
      "p",
      {},
      "Counters live in the ",
      el("strong", {}, store.kind),
      " store",
      store.kind === "memory" ? " (this process only)" : " (shared by every replica)",
      store.available ? "." : el("span", { class: "deny-text" }, ", which cannot be reached now."),
      ` While it is down, budgeted calls are ${page.whenStoreDown === "allow" ? "let through uncounted" : "refused"}.`,
      ` Rate limit per agent: ${page.rateLimit.requestsPerSecond} requests/s, bursts of ${page.rateLimit.burst}.`,
    ),
  );
  if (page.budgets.length === 0) {
    root.append(el("p", { class: "muted" }, "No budgets are configured (budgets.rules in gateway.yaml)."));
    return;
  }
  for (const budget of page.budgets) root.append(budgetSection(budget));
}

function budgetSection(b) {
  const id = `budget-${b.budget}`;
  const unit = b.unit === "cost" ? "cost units" : "calls";
  return el(
    "section",
    { "aria-labelledby": id, "data-budget": b.budget, class: "budget" },
    el("h3", { id }, b.budget),
    el(
      "p",
      { class: "muted" },
      `${b.limit} ${unit} per ${b.period}, `,
      b.per === "shared" ? "one counter for everyone it applies to" : "one counter per agent",
      "; counts ",
      el("code", {}, b.tools.join(", ")),
      `; warns from ${b.warnFrom}; this period ${when(b.periodStart)} to ${when(b.resetsAt)}.`,
    ),
    table(
      b.per === "shared"
        ? "The shared counter"
        : "Per-agent counters of the agents the gateway knows of (gateway.yaml and recent audit records)",
      ["Whose", "Used", "Left", "State"],
      b.counters.map((c) => counterRow(b, c, unit)),
    ),
  );
}

function counterRow(b, c, unit) {
  const whose = c.agent === undefined ? "shared" : c.agent;
  const used = c.used === undefined ? null : c.used;
  return el(
    "tr",
    { "data-whose": whose },
    el("td", {}, whose, c.issuer ? el("div", { class: "muted small" }, c.issuer) : null),
    el(
      "td",
      {},
      used === null
        ? "?"
        : el(
            "span",
            { class: "usage" },
            el("meter", {
              min: 0,
              max: b.limit,
              low: b.warnFrom,
              high: b.warnFrom,
              optimum: 0,
              value: used,
              "aria-label": `${whose}: ${used} of ${b.limit} ${unit}`,
            }),
            ` ${used} / ${b.limit}`,
          ),
    ),
    el("td", {}, used === null ? "?" : Math.max(0, b.limit - used)),
    el("td", { class: STATE_CLASS[c.state] }, STATE_TEXT[c.state]),
  );
}
