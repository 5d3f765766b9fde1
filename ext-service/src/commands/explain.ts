import type { Command } from "./command.js";
import { UsageError } from "./command.js";
import { loadEngine } from "../config/compile.js";
import { ConfigError } from "../config/load.js";
import { BrokerNames } from "../broker/names.js";
import { explainToolCall, formatExplanation } from "../policy/explain.js";

function parseJsonOption(name: string, text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new UsageError(`--${name} is not JSON: ${(err as Error).message}`);
  }
}

export const explainCommand: Command = {
  name: "explain",
  summary: "Show whether an agent may call a tool, and the rules and conditions that decide it",
  usage: `Usage: mcp-gateway explain --config <gateway.yaml> --agent <agent> --tool <server/tool> [options]

--tool also takes the name a client sees on the aggregated endpoint /mcp (tickets__create_ticket,
with the configured broker.separator).

Decides the tools/call as the data planes would (same policy code: server reachability, registry,
RBAC rules and CEL conditions, pins, argument schema, injection and DLP rules) and prints the
decision, what the agent would be told, the precise cause, and every rule of the agent's roles
in order with its condition's outcome.

Options:
  --arguments <json>   the call's arguments (conditions on arguments, schema, DLP)
  --roles <a,b>        roles the token would carry (counted where the issuer trusts token roles)
  --claims <json>      token claims for conditions on claims.* (sub is the agent)
  --issuer <iss>       the token's issuer (default: the agent's configured issuer)
  --json               print the explanation as JSON

Exit code 0 when the call would be allowed, 1 when denied, 2 on a usage error.`,
  options: {
    config: { type: "string", short: "c" },
    agent: { type: "string" },
    tool: { type: "string" },
    arguments: { type: "string" },
    roles: { type: "string" },
    claims: { type: "string" },
    issuer: { type: "string" },
    json: { type: "boolean" },
  },
  async run(values) {
    const file = values.config;
    if (typeof file !== "string") throw new UsageError("--config is required");
    const agent = values.agent;
    if (typeof agent !== "string" || agent === "") throw new UsageError("--agent is required");
    const target = values.tool;
    if (typeof target !== "string" || target === "") throw new UsageError("--tool is required");
    const args =
      typeof values.arguments === "string" ? parseJsonOption("arguments", values.arguments) : undefined;
    const claims = typeof values.claims === "string" ? parseJsonOption("claims", values.claims) : undefined;
    if (claims !== undefined && (typeof claims !== "object" || claims === null || Array.isArray(claims))) {
      throw new UsageError("--claims must be a JSON object");
    }
    const { engine, references } = loadEngine(file);
    if (references.length > 0) throw new ConfigError(references);
    const { separator } = engine.config.broker;
    const slash = target.indexOf("/");
    const named =
      slash > 0 && slash < target.length - 1
        ? { server: target.slice(0, slash), name: target.slice(slash + 1) }
        : new BrokerNames(separator).split(target);
    if (!named || named.name === "") {
      throw new UsageError(`--tool must be <server>/<tool> or, as on /mcp, <server>${separator}<tool>`);
    }
    const explanation = explainToolCall(engine, {
      agent,
      server: named.server,
      tool: named.name,
      arguments: args,
      tokenRoles:
        typeof values.roles === "string"
          ? values.roles
              .split(",")
              .map((r) => r.trim())
              .filter(Boolean)
          : [],
      ...(claims !== undefined ? { claims: claims as Record<string, unknown> } : {}),
      ...(typeof values.issuer === "string" ? { issuer: values.issuer } : {}),
    });
    process.stdout.write(
      values.json
        ? `${JSON.stringify(explanation, (_key, v: unknown) => (v === undefined ? null : v), 2)}\n`
        : formatExplanation(explanation),
    );
    return explanation.decision === "allow" ? 0 : 1;
  },
};
