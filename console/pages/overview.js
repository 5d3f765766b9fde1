// Overview: per server its health, breakers, request/denial/error rates, drift alerts and
// pending approvals (GET /console/api/overview). The rates are this replica's; with a Redis state
// store the page also shows what every replica let through today.
import { api, el, showError, table, when } from "../shared.js";

export const title = "Overview";

const HEALTH_CLASS = { ok: "allow", degraded: "warn", down: "deny-text" };

function card(label, value, detail, href) {
  const body = [el("strong", {}, value), el("span", {}, label)];
  if (detail) body.push(el("span", { class: "muted" }, detail));
  return el("li", { class: "card" }, href ? el("a", { href }, body) : body);
}

function rate(traffic, key) {
  return [`${traffic.perMinute[key]}/min`, el("div", { class: "muted" }, `${traffic.total[key]} total`)];
}

function breakers(server, breakersAt) {
  if (!server.upstreams) return el("span", { class: "muted" }, breakersAt === "envoy" ? "in Envoy" : "-");
  return el(
    "ul",
    { class: "plain" },
    server.upstreams.map((u) =>
      el(
        "li",
        {},
        el("span", { class: u.breaker === "closed" ? "allow" : "deny-text" }, u.breaker.replace("_", "-")),
        " ",
        el("code", {}, u.upstream),
        u.inflight ? el("span", { class: "muted" }, ` (${u.inflight} in flight)`) : null,
      ),
    ),
  );
}

function clusterCell(s) {
  const c = s.cluster;
  if (!c) return el("span", { class: "muted" }, "?");
  return [
    c.allowed_per_minute === null ? "-" : `${c.allowed_per_minute}/min`,
    el("div", { class: "muted" }, `${c.allowed_today} today`),
  ];
}

/** What the numbers cover: this replica's counters, and the store's counts when it is shared. */
function scope(o) {
  const replica = `${o.replica.host} (pid ${o.replica.pid})`;
  const parts = [
    `Requests, denied and errors are this replica's: ${replica}, since it started; ` +
      "with several replicas each console shows its own (Prometheus adds them up).",
  ];
  const c = o.cluster;
  if (!c)
    parts.push(
      ` The state store is ${o.store.kind}: nothing is counted across replicas, so no cluster-wide numbers.`,
    );
  else if (!c.available) parts.push(" All replicas: unknown, the Redis state store did not answer.");
  else
    parts.push(
      ` "All replicas" is what every replica let through (forwarded or served from the cache) on ${c.day} (UTC), ` +
        "from the Redis state store" +
        (c.window_seconds === null
          ? "; its rate shows from the next refresh."
          : `; rates over ${c.window_seconds} s.`),
    );
  return el("p", { class: "muted", id: "overview-scope" }, parts);
}

function serverRow(s, breakersAt, cluster) {
  return el(
    "tr",
    { "data-server": s.name },
    el("th", { scope: "row" }, s.name, s.owner ? el("div", { class: "muted" }, s.owner) : null),
    el(
      "td",
      {},
      el("span", { class: HEALTH_CLASS[s.health] || "" }, s.health),
      s.problems.length
        ? el(
            "ul",
            { class: "plain muted" },
            s.problems.map((p) => el("li", {}, p)),
          )
        : null,
    ),
    el("td", {}, breakers(s, breakersAt)),
    el("td", { class: "num" }, rate(s.traffic, "requests")),
    el("td", { class: "num" }, rate(s.traffic, "denied")),
    el("td", { class: "num" }, rate(s.traffic, "errors")),
    cluster ? el("td", { class: "num" }, clusterCell(s)) : null,
    el(
      "td",
      {},
      s.drifted.length
        ? s.drifted.map((t) => el("div", {}, el("code", { class: "deny-text" }, t)))
        : el("span", { class: "muted" }, `none of ${s.tools}`),
    ),
    el("td", { class: "num" }, s.pending_approvals === null ? "?" : s.pending_approvals),
  );
}

export async function render(root) {
  const refresh = el("button", { type: "button", class: "secondary" }, "Refresh");
  const holder = el("div", {});
  root.append(el("div", { class: "page-head" }, el("h2", {}, "Overview"), refresh), holder);
  const load = async () => {
    const o = await api("/console/api/overview");
    const healthy = o.servers.filter((s) => s.health === "ok").length;
    const alerts = o.drift_alerts;
    holder.replaceChildren(
      el(
        "p",
        { class: "muted" },
        `Registry ${o.registry_version}; pins ${o.pins_enforced ? "enforced" : "alert only"}; ` +
          `state store ${o.store.kind} (${o.store.available ? "available" : "UNAVAILABLE"}); ` +
          `rates over the last ${o.rate_window_seconds} s, as of ${when(o.generated_at)}.`,
      ),
      scope(o),
      el(
        "ul",
        { class: "cards", "aria-label": "Summary" },
        card("servers healthy", `${healthy} / ${o.servers.length}`),
        card(
          "requests, this replica",
          `${o.traffic.perMinute.requests}/min`,
          `${o.traffic.total.requests} total`,
        ),
        card("denied, this replica", `${o.traffic.perMinute.denied}/min`, `${o.traffic.total.denied} total`),
        card("errors, this replica", `${o.traffic.perMinute.errors}/min`, `${o.traffic.total.errors} total`),
        o.cluster
          ? card(
              "let through, all replicas",
              o.cluster.allowed_per_minute === null ? "-" : `${o.cluster.allowed_per_minute}/min`,
              o.cluster.available ? `${o.cluster.allowed_today} today (UTC)` : "store not answering",
            )
          : null,
        card(
          "pending approvals",
          o.pending_approvals === null ? "?" : o.pending_approvals,
          o.pending_approvals === null ? "state store down" : null,
          "#approvals",
        ),
        card("drift alerts", alerts.length, null, "#registry"),
      ),
      el("h3", {}, "Servers"),
      table(
        "Health, circuit breakers and traffic per registered server",
        [
          "Server",
          "Health",
          "Upstreams (breaker)",
          "Requests (this replica)",
          "Denied (this replica)",
          "Errors (this replica)",
          ...(o.cluster ? ["Let through (all replicas)"] : []),
          "Drifted tools",
          "Pending approvals",
        ],
        o.servers.map((s) => serverRow(s, o.breakers, o.cluster)),
      ),
      el("h3", {}, "Drift alerts"),
      alerts.length === 0
        ? el("p", { class: "muted" }, "No tool's live definition differs from its pin.")
        : table(
            "Tools whose live definition differs from the registry pin; calls to them are refused while pins are enforced",
            ["Tool", "Changed", "Live pin", "Seen"],
            alerts.map((a) =>
              el(
                "tr",
                { "data-drift": `${a.server}/${a.tool}` },
                el("td", {}, el("code", {}, `${a.server}/${a.tool}`)),
                el("td", {}, a.fields.length ? a.fields.join(", ") : "definition"),
                el("td", {}, el("code", {}, a.live_pin.slice(0, 19) + "…")),
                el("td", {}, when(a.seen_at)),
              ),
            ),
          ),
    );
  };
  refresh.addEventListener("click", () => load().catch(showError));
  await load();
}
