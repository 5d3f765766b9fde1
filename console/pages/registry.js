// Registry: servers and tools with owner, risk, pin, drift, deprecation and usage, and what a
// reload would change (GET /console/api/registry); "Check pins now" fetches every server's
// tools/list and compares it with the pins (POST /console/api/registry/check).
import { api, el, select, setStatus, showError, table, when } from "../shared.js";

export const title = "Registry";

const SHOW = ["all tools", "needs attention", "drifted", "deprecated", "unused"];

function live(t) {
  const l = t.live;
  if (l.state === "drifted") {
    return el(
      "div",
      { class: "deny-text" },
      "drifted: ",
      l.fields.length ? `${l.fields.join(", ")} changed` : "definition changed",
      el("div", { class: "muted" }, `seen ${when(l.seen_at)}`),
      el("div", { class: "muted" }, "live ", el("code", {}, l.live_pin.slice(0, 19) + "…")),
    );
  }
  if (l.state === "verified") return el("span", { class: "allow" }, "matches pin");
  if (l.state === "unverifiable") return el("div", { class: "warn" }, "cannot check: ", l.cause);
  return el("span", { class: "muted" }, "not checked recently");
}

function usage(t) {
  if (t.calls === null) return el("span", { class: "muted" }, "-");
  return [
    String(t.calls),
    t.usage_status && t.usage_status !== "active" ? el("div", { class: "warn" }, t.usage_status) : null,
  ];
}

function matches(t, show) {
  switch (show) {
    case "drifted":
      return t.live.state === "drifted";
    case "deprecated":
      return t.deprecated !== null;
    case "unused":
      return t.usage_status === "unused";
    case "needs attention":
      return (
        t.live.state === "drifted" || t.live.state === "unverifiable" || t.deprecated_past || !t.pin_recorded
      );
    default:
      return true;
  }
}

function toolRow(server, t) {
  return el(
    "tr",
    { "data-tool": `${server.name}/${t.name}` },
    el(
      "th",
      { scope: "row" },
      el("code", {}, t.name),
      t.title ? el("div", { class: "muted" }, t.title) : null,
    ),
    el(
      "td",
      {},
      t.owner ||
        (server.owner
          ? [server.owner, el("div", { class: "muted" }, "(server)")]
          : el("span", { class: "muted" }, "-")),
    ),
    el("td", { class: t.risk === "critical" || t.risk === "high" ? "warn" : "" }, t.risk),
    el(
      "td",
      {},
      el("code", { title: t.pin }, t.pin.slice(0, 19) + "…"),
      t.pin_recorded ? null : el("div", { class: "warn" }, "not recorded (computed)"),
    ),
    el("td", {}, live(t)),
    el(
      "td",
      {},
      t.deprecated === null
        ? el("span", { class: "muted" }, "-")
        : el(
            "span",
            { class: t.deprecated_past ? "deny-text" : "warn" },
            t.deprecated_past ? `since ${t.deprecated}` : t.deprecated,
          ),
    ),
    el("td", { class: "num" }, usage(t)),
    el("td", {}, t.last_used ? when(t.last_used) : el("span", { class: "muted" }, "never")),
  );
}

/** The running registry against the file: the lines `mcp-gateway registry diff` prints. */
function diffLines(d) {
  const lines = [];
  if (d.version) lines.push(`version ${d.version.before} -> ${d.version.after}`);
  for (const s of d.addedServers) lines.push(`+ server ${s.name} (${s.tools} tools)`);
  for (const s of d.removedServers) lines.push(`- server ${s}`);
  for (const s of d.changedServers) {
    lines.push(`~ server ${s.name}${s.fields.length ? `: ${s.fields.join(", ")} changed` : ""}`);
    for (const t of s.addedTools) lines.push(`  + tool ${s.name}/${t.name} (risk ${t.risk})`);
    for (const t of s.removedTools) lines.push(`  - tool ${s.name}/${t}`);
    for (const t of s.changedTools) {
      const parts = [];
      if (t.fields.length) parts.push(t.fields.join(", "));
      if (t.pin) parts.push("pin changed");
      if (t.risk)
        parts.push(`risk ${t.risk.before} -> ${t.risk.after}${t.risk.escalated ? " (escalated)" : ""}`);
      lines.push(`  ~ tool ${s.name}/${t.name}: ${parts.join("; ")}`);
    }
  }
  return lines;
}

function diskSection(disk) {
  const head = el("h3", {}, "Running registry vs. the file on disk");
  const file = el("p", { class: "muted" }, "File: ", el("code", {}, disk.file));
  if (disk.error) return [head, file, el("p", { class: "warn" }, `Cannot compare: ${disk.error}`)];
  if (disk.identical)
    return [
      head,
      file,
      el("p", { class: "allow", id: "registry-diff" }, "Identical: a reload would change nothing."),
    ];
  return [
    head,
    file,
    el("p", {}, "A reload (SIGHUP) would apply these changes (running -> file):"),
    el("pre", { class: "diff", id: "registry-diff" }, diffLines(disk.diff).join("\n")),
  ];
}

const CHECK_TEXT = {
  matches: "matches",
  drifted: "drifted",
  unlisted: "tools missing",
  failed: "cannot list",
  skipped: "not checked",
};
const CHECK_CLASS = {
  matches: "allow",
  drifted: "deny-text",
  unlisted: "warn",
  failed: "deny-text",
  skipped: "muted",
};

function checkRow(s) {
  const found = [];
  for (const d of s.drifted) {
    found.push(
      el(
        "div",
        { class: "deny-text" },
        el("code", {}, d.tool),
        `: ${d.fields.length ? d.fields.join(", ") : "definition"} changed`,
      ),
    );
  }
  if (s.unlisted.length) found.push(el("div", { class: "warn" }, `not offered: ${s.unlisted.join(", ")}`));
  if (s.cause) found.push(el("div", {}, s.cause));
  return el(
    "tr",
    { "data-check": s.server },
    el("th", { scope: "row" }, s.server),
    el("td", {}, el("span", { class: CHECK_CLASS[s.result] }, CHECK_TEXT[s.result])),
    el("td", { class: "num" }, s.listed === null ? "-" : String(s.listed)),
    el("td", {}, s.upstream ? el("code", {}, s.upstream) : el("span", { class: "muted" }, "-")),
    el("td", {}, found.length ? found : el("span", { class: "muted" }, "every listed tool matches its pin")),
  );
}

/** The answer of "Check pins now": one row per server. */
function checkReport(report) {
  const counts = {};
  for (const s of report.servers) counts[s.result] = (counts[s.result] || 0) + 1;
  const summary = Object.entries(counts)
    .map(([result, n]) => `${n} ${CHECK_TEXT[result]}`)
    .join(", ");
  return [
    el("h3", { id: "pin-check-title", tabindex: "-1" }, `Pin check at ${when(report.checked_at)}`),
    table(
      `${summary}. Each server's tools/list, fetched now and compared with the pins as before a call` +
        (report.pins_enforced
          ? "; drifted tools are refused from now on"
          : "; pins are not enforced (alerts only)"),
      ["Server", "Result", "Tools listed", "Upstream", "Found"],
      report.servers.map(checkRow),
    ),
  ];
}

export async function render(root) {
  const wanted = sessionStorage.getItem("registry-show") || SHOW[0];
  const controls = el(
    "div",
    { class: "filters" },
    el("div", {}, select("registry-show", "Show", SHOW, wanted)),
  );
  const check = el("button", { type: "button", class: "secondary", id: "check-pins" }, "Check pins now");
  const meta = el("p", { class: "muted" });
  const checked = el("section", {
    id: "pin-check",
    "aria-live": "polite",
    "aria-labelledby": "pin-check-title",
  });
  const holder = el("div", {});
  root.append(
    el("div", { class: "page-head" }, el("h2", {}, "Registry"), check),
    meta,
    checked,
    controls,
    holder,
  );
  const showSelect = controls.querySelector("select");
  let r = await api("/console/api/registry");
  const draw = () => {
    sessionStorage.setItem("registry-show", showSelect.value);
    const drifted = r.servers.flatMap((s) => s.tools).filter((t) => t.live.state === "drifted").length;
    const u = r.usage;
    meta.replaceChildren(
      `Version ${r.version}; pins ${r.pins_enforced ? "enforced" : "alert only"}; ${drifted} drifted tool(s). `,
      u.error
        ? `Usage unavailable: ${u.error}.`
        : `Calls over the last ${u.window_days} days (since ${u.since}, ${u.store} store); "rare" is fewer than ${u.rare_below}.`,
    );
    const shown = r.servers
      .map((s) => ({ s, tools: s.tools.filter((t) => matches(t, showSelect.value)) }))
      // A filter hides the servers it leaves empty; "all tools" shows every server.
      .filter(({ tools }) => tools.length > 0 || showSelect.value === SHOW[0]);
    holder.replaceChildren(
      ...(shown.length === 0 ? [el("p", { class: "muted" }, `No tool is ${showSelect.value}.`)] : []),
      ...shown.map(({ s, tools }) => {
        return el(
          "section",
          { "aria-labelledby": `server-${s.name}` },
          el(
            "h3",
            { id: `server-${s.name}` },
            s.name,
            s.owner ? el("span", { class: "muted" }, ` owner ${s.owner}`) : null,
          ),
          s.description ? el("p", { class: "muted" }, s.description) : null,
          table(
            `${tools.length} of ${s.tools.length} tool(s); upstreams ${s.upstreams.join(", ")}`,
            ["Tool", "Owner", "Risk", "Pin", "Live definition", "Deprecated", "Calls", "Last used"],
            tools.map((t) => toolRow(s, t)),
          ),
        );
      }),
      ...diskSection(r.disk),
    );
  };
  showSelect.addEventListener("change", () => {
    try {
      draw();
    } catch (err) {
      showError(err);
    }
  });
  check.addEventListener("click", async () => {
    check.disabled = true;
    check.textContent = "Checking pins…";
    setStatus("Checking pins: fetching each server's tools/list…");
    try {
      const report = await api("/console/api/registry/check", { body: {} });
      // The live column shows what the check recorded; both are drawn together, so the report
      // never says "drifted" beside a tool row that still reads "matches pin".
      r = await api("/console/api/registry");
      checked.replaceChildren(...checkReport(report));
      draw();
      setStatus(`Pins checked at ${when(report.checked_at)}.`);
      document.getElementById("pin-check-title").focus();
    } catch (err) {
      showError(err);
    } finally {
      check.disabled = false;
      check.textContent = "Check pins now";
      // A disabled button loses focus; give it back unless the result took it.
      if (document.activeElement === document.body) check.focus();
    }
  });
  draw();
}
