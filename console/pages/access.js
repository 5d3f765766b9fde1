// Access: who may call what. The permission matrix (GET /console/api/access), registered tools
// by agents (or roles), each cell with the rule that decides it; and "may this agent call this
// tool with these arguments?" (POST /console/api/explain), answered by `mcp-gateway explain`'s code.
import { api, el, select, showError, table } from "../shared.js";

export const title = "Access";

const ACCESS_TEXT = { allow: "allow", deny: "deny", conditional: "depends" };
const ACCESS_CLASS = { allow: "allow", deny: "deny-text", conditional: "warn" };

export async function render(root) {
  const by = sessionStorage.getItem("access-by") || "agent";
  const view = el(
    "div",
    { class: "filters" },
    el("div", {}, select("access-by", "Rows", ["agent", "role"], by)),
  );
  const matrixHolder = el("div", {});
  const askHolder = el("div", {});
  const patternsHolder = el("div", {});
  root.append(
    el("h2", {}, "Access"),
    el(
      "p",
      { class: "muted" },
      "Each cell is the policy's answer for a call to that tool without arguments, and the rule that decides it: ",
      el("span", { class: "allow" }, "allow"),
      " (a rule grants it), ",
      el("span", { class: "warn" }, "depends"),
      " (a condition decides per call), ",
      el("span", { class: "deny-text" }, "deny"),
      " (no call passes). Calls are also checked against the registry, pins, arguments and content.",
    ),
    view,
    matrixHolder,
    askHolder,
    patternsHolder,
  );
  const bySelect = view.querySelector("select");
  const load = async () => {
    sessionStorage.setItem("access-by", bySelect.value);
    const matrix = await api(`/console/api/access?by=${encodeURIComponent(bySelect.value)}`);
    matrixHolder.replaceChildren(matrixTable(matrix));
    patternsHolder.replaceChildren(patternsTable(matrix));
    return matrix;
  };
  bySelect.addEventListener("change", () => load().catch(showError));
  const matrix = await load();
  // The question box asks about agents; the role view's rows are roles, so ask for the agent list.
  const agents = matrix.by === "agent" ? matrix : await api("/console/api/access?by=agent");
  askHolder.replaceChildren(askForm(agents));
}

function matrixTable(matrix) {
  const kind = matrix.by === "role" ? "Role" : "Agent";
  const head = el(
    "tr",
    {},
    el("th", { scope: "col" }, "Tool"),
    matrix.rows.map((row) =>
      el(
        "th",
        { scope: "col", title: row.description || "" },
        row.name,
        el(
          "div",
          { class: "muted small" },
          matrix.by === "agent" ? row.roles.join(", ") || "(no roles)" : row.description || "",
        ),
      ),
    ),
  );
  const body = matrix.columns.map((column, i) => {
    const subject = `${column.server}/${column.tool}`;
    return el(
      "tr",
      {},
      el(
        "th",
        { scope: "row" },
        breakable(subject),
        el(
          "div",
          { class: "muted small" },
          `risk ${column.risk}`,
          column.deprecated
            ? column.retired
              ? `, retired ${column.deprecated}`
              : `, deprecated from ${column.deprecated}`
            : "",
        ),
      ),
      matrix.rows.map((row) => matrixCell(row, subject, row.cells[i])),
    );
  });
  return el(
    "table",
    { class: "matrix", id: "access-matrix" },
    el(
      "caption",
      { class: "muted" },
      `${matrix.columns.length} registered tools by ${matrix.rows.length} ${kind.toLowerCase()}s`,
    ),
    el("thead", {}, head),
    el("tbody", {}, body),
  );
}

function matrixCell(row, subject, cell) {
  return el(
    "td",
    { "data-principal": row.name, "data-tool": subject, class: `cell-${cell.access}` },
    el("strong", { class: ACCESS_CLASS[cell.access] }, ACCESS_TEXT[cell.access]),
    el("div", {}, cell.rule ? ruleLabel(cell.rule) : el("span", { class: "muted" }, "no rule names it")),
    cell.access === "conditional"
      ? cell.conditions.map((c) =>
          el("div", { class: "muted small" }, `${c.effect} when `, breakable(c.when)),
        )
      : null,
    cell.approval
      ? el(
          "div",
          { class: "warn small" },
          `approval: ${cell.approval.rule}`,
          cell.approval.when ? el("span", { class: "muted" }, " when ", breakable(cell.approval.when)) : null,
        )
      : null,
  );
}

/** `roles.<role>.rules[<i>]`, breakable at its dots only (narrow columns must not split a name). */
function ruleLabel(rule) {
  return breakable(rule, "rule");
}

/** Code that may wrap before each dot, after a slash and at spaces, so a narrow cell never splits a name. */
function breakable(text, cls) {
  const parts = text.split(/(?=\.)|(?<=\/)/);
  return el(
    "code",
    cls ? { class: cls } : {},
    parts.flatMap((part, i) => (i === 0 ? [part] : [el("wbr"), part])),
  );
}

function patternsTable(matrix) {
  const rows = matrix.rows.flatMap((row) =>
    row.patterns.map((p) =>
      el(
        "tr",
        {},
        el("td", {}, row.name),
        el("td", {}, el("code", {}, p.rule)),
        el("td", { class: p.effect === "allow" ? "allow" : "deny-text" }, p.effect),
        el("td", {}, el("code", {}, p.prompts.join(", ") || "-")),
        el("td", {}, el("code", {}, p.resources.join(", ") || "-")),
        el("td", {}, p.when ? el("code", {}, p.when) : "-"),
      ),
    ),
  );
  return el(
    "section",
    { "aria-labelledby": "patterns-title" },
    el("h3", { id: "patterns-title" }, "Prompts and resources"),
    table(
      "The prompts and resources globs each rule names (servers list these at run time; RBAC filters the lists)",
      [matrix.by === "role" ? "Role" : "Agent", "Rule", "Effect", "Prompts", "Resources", "Condition"],
      rows,
    ),
  );
}

/** The issuer select's first option: the agent's configured issuer, named when it has one. */
function defaultIssuerText(matrix, agent) {
  const row = matrix.rows.find((r) => r.name === agent);
  if (!row) return "(agent not in gateway.yaml: pick its token's issuer)";
  return row.issuer ? `${row.issuer} (the agent's configured issuer)` : "(the agent's configured issuer)";
}

function askForm(matrix) {
  const tools = matrix.columns.map((c) => `${c.server}/${c.tool}`);
  const agents = matrix.rows.map((r) => r.name);
  const answer = el("div", { id: "explain-answer", "aria-live": "polite" });
  const trusting = matrix.issuers.filter((i) => i.trust_token_roles).map((i) => i.issuer);
  const agentInput = el("input", {
    id: "explain-agent",
    type: "text",
    list: "explain-agents",
    value: agents[0] || "",
    required: true,
    size: 20,
    autocomplete: "off",
    spellcheck: "false",
    "aria-describedby": "explain-agent-hint",
  });
  const issuerSelect = el(
    "select",
    { id: "explain-issuer", "aria-describedby": "explain-issuer-hint" },
    el("option", { value: "" }, defaultIssuerText(matrix, agents[0])),
    matrix.issuers.map((i) => el("option", { value: i.issuer }, i.issuer)),
  );
  agentInput.addEventListener("input", () => {
    issuerSelect.options[0].textContent = defaultIssuerText(matrix, agentInput.value.trim());
  });
  const form = el(
    "form",
    { id: "explain-form", class: "ask" },
    el(
      "div",
      { class: "filters" },
      el(
        "div",
        {},
        el("label", { for: "explain-agent" }, "Agent"),
        agentInput,
        el(
          "datalist",
          { id: "explain-agents" },
          agents.map((a) => el("option", { value: a })),
        ),
      ),
      el("div", {}, el("label", { for: "explain-issuer" }, "Issuer"), issuerSelect),
      el("div", {}, select("explain-tool", "Tool", tools, tools[0])),
    ),
    el(
      "p",
      { class: "muted small hint" },
      el(
        "span",
        { id: "explain-agent-hint" },
        "An agent is a token's subject from one issuer: the configured agents are suggested, any subject may be asked about. ",
      ),
      el(
        "span",
        { id: "explain-issuer-hint" },
        "A configured agent's roles count only for tokens of its own issuer; token roles count only from ",
        trusting.length
          ? `${trusting.join(", ")} (trustTokenRoles)`
          : "issuers with trustTokenRoles (none here)",
        ".",
      ),
    ),
    el("label", { for: "explain-arguments" }, "Arguments (JSON object)"),
    el("textarea", { id: "explain-arguments", rows: 3, cols: 60, spellcheck: "false" }, "{}"),
    el(
      "div",
      { class: "filters" },
      el(
        "div",
        {},
        el("label", { for: "explain-roles" }, "Token roles (comma-separated, optional)"),
        el("input", { id: "explain-roles", type: "text", size: 24 }),
      ),
      el(
        "div",
        {},
        el("label", { for: "explain-claims" }, "Token claims (JSON object, optional)"),
        el("input", { id: "explain-claims", type: "text", size: 36, spellcheck: "false" }),
      ),
    ),
    el("button", { type: "submit" }, "Ask"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    ask(form, answer).catch(showError);
  });
  return el(
    "section",
    { "aria-labelledby": "explain-title" },
    el("h3", { id: "explain-title" }, "May this agent call this tool with these arguments?"),
    el(
      "p",
      { class: "muted" },
      "Answered by the code of ",
      el("code", {}, "mcp-gateway explain"),
      " on the policy in force. The arguments are decided on, never logged or kept.",
    ),
    form,
    answer,
  );
}

function parseJson(text, what) {
  if (text.trim() === "") return undefined;
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new Error(`${what} is not JSON: ${err.message}`, { cause: err });
  }
}

async function ask(form, answer) {
  const target = form.querySelector("#explain-tool").value;
  const slash = target.indexOf("/");
  const question = {
    agent: form.querySelector("#explain-agent").value.trim(),
    server: target.slice(0, slash),
    tool: target.slice(slash + 1),
  };
  const issuer = form.querySelector("#explain-issuer").value;
  if (issuer) question.issuer = issuer;
  const args = parseJson(form.querySelector("#explain-arguments").value, "Arguments");
  if (args !== undefined) question.arguments = args;
  const roles = form
    .querySelector("#explain-roles")
    .value.split(",")
    .map((r) => r.trim())
    .filter(Boolean);
  if (roles.length) question.roles = roles;
  const claims = parseJson(form.querySelector("#explain-claims").value, "Claims");
  if (claims !== undefined) question.claims = claims;
  const e = await api("/console/api/explain", { body: question });
  answer.replaceChildren(explanation(e));
}

function explanation(e) {
  const allowed = e.decision === "allow";
  return el(
    "div",
    { class: `verdict ${allowed ? "verdict-allow" : "verdict-deny"}` },
    el(
      "p",
      {},
      el(
        "strong",
        { class: allowed ? "allow" : "deny-text", id: "explain-decision" },
        allowed ? "ALLOW" : e.decision === "deny" ? "DENY" : "ERROR",
      ),
      " ",
      el("code", {}, `${e.agent} → ${e.server}/${e.tool}`),
    ),
    allowed
      ? e.flags && e.flags.length
        ? el("p", {}, "Flags: ", e.flags.join(", "))
        : null
      : el(
          "dl",
          { id: "explain-reason" },
          el("dt", {}, "Agent sees"),
          el("dd", {}, el("code", {}, e.reason || "-"), ` "${e.message || ""}"`),
          el("dt", {}, "Cause"),
          el("dd", {}, el("code", {}, e.cause || "-")),
        ),
    el(
      "p",
      { class: "muted", id: "explain-identity" },
      `Issuer: ${e.issuer || "(none)"}. Roles: ${e.roles.length ? e.roles.join(", ") : "(none)"}`,
      e.agentConfigured ? "" : " (not in gateway.yaml agents: token roles only)",
      `. Registry: server ${e.registry.server}, tool ${e.registry.tool}`,
      e.registry.risk ? `, risk ${e.registry.risk}` : "",
      ".",
    ),
    table(
      "The agent's rules, in the order the decision visits them",
      ["Rule", "Effect", "Names the tool", "Condition", "Outcome"],
      e.rules.map((r) =>
        el(
          "tr",
          {},
          el("td", {}, el("code", {}, r.rule)),
          el("td", {}, r.effect),
          el("td", {}, r.matches ? "yes" : "no"),
          el(
            "td",
            {},
            r.when ? el("code", {}, r.when) : "-",
            r.when ? ` → ${r.condition.replace("_", " ")}` : "",
          ),
          el(
            "td",
            { class: r.applied ? (r.effect === "allow" ? "allow" : "deny-text") : "" },
            !r.matches ? "-" : r.applied ? "applies" : "does not apply",
          ),
        ),
      ),
    ),
    e.assumptions.length
      ? el(
          "ul",
          { class: "muted" },
          e.assumptions.map((a) => el("li", {}, `Assumes ${a}`)),
        )
      : null,
  );
}
