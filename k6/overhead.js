// What does the gateway add? The same MCP request to the MCP server directly and through the
// gateway (Envoy or the local edge), at a fixed arrival rate (open model), with the budget as
// thresholds. See k6/README.md for the commands and every variable.
import { check } from "k6";
import http from "k6/http";
import { Rate, Trend } from "k6/metrics";
import { DEFAULT_PROTOCOL_VERSION, hasResult, jsonRpc, mcpHeaders, openSession } from "./lib/mcp.js";

const DIRECT_URL = __ENV.DIRECT_URL;
const GATEWAY_URL = __ENV.GATEWAY_URL;
const TOKEN = __ENV.TOKEN || "";
const DIRECT_TOKEN = __ENV.DIRECT_TOKEN || "";
const RATE = parseInt(__ENV.RATE || "200", 10);
const DURATION = __ENV.DURATION || "1m";
const METHOD = __ENV.METHOD || "tools/call";
const TOOL = __ENV.TOOL || "echo";
const ARGS = JSON.parse(__ENV.ARGS || '{"text":"hello from k6"}');
const PROTOCOL_VERSION = __ENV.PROTOCOL_VERSION || DEFAULT_PROTOCOL_VERSION;
const VUS = parseInt(__ENV.VUS || "20", 10);
const MAX_VUS = parseInt(__ENV.MAX_VUS || String(VUS * 5), 10);
const SCENARIOS = (__ENV.SCENARIOS || "direct,gateway,paired").split(",");
const ADDED_P50_MS = __ENV.ADDED_P50_MS || "1";
const ADDED_P95_MS = __ENV.ADDED_P95_MS || "5";
const GATEWAY_P95_MS = __ENV.GATEWAY_P95_MS || "50";
const MAX_FAILED_RATE = __ENV.MAX_FAILED_RATE || "0.01";
const INSECURE = __ENV.INSECURE === "1";

if (!DIRECT_URL || !GATEWAY_URL) {
  throw new Error(
    "set DIRECT_URL (the MCP server itself) and GATEWAY_URL (the same server through the gateway)",
  );
}
if (METHOD !== "tools/call" && METHOD !== "tools/list") throw new Error("METHOD is tools/call or tools/list");

/** Time of one MCP call, tagged target:direct|gateway. */
const callDuration = new Trend("mcp_call_duration", true);
/** Gateway minus direct for the same request sent back to back (the paired scenario). */
const addedLatency = new Trend("mcp_added_latency", true);
/** Calls answered with a JSON-RPC result (not an HTTP or JSON-RPC error). */
const callOk = new Rate("mcp_call_ok");

function want(name) {
  return SCENARIOS.indexOf(name) >= 0;
}

function openRate(exec) {
  return {
    executor: "constant-arrival-rate",
    rate: RATE,
    timeUnit: "1s",
    duration: DURATION,
    preAllocatedVUs: VUS,
    maxVUs: MAX_VUS,
    exec: exec,
  };
}

const scenarios = {};
if (want("direct")) scenarios.direct = openRate("direct");
if (want("gateway")) scenarios.gateway = openRate("gateway");
if (want("paired")) scenarios.paired = openRate("paired");

const thresholds = {
  http_req_failed: ["rate<" + MAX_FAILED_RATE],
  mcp_call_ok: ["rate>" + (1 - parseFloat(MAX_FAILED_RATE))],
};
if (want("gateway")) thresholds["mcp_call_duration{target:gateway}"] = ["p(95)<" + GATEWAY_P95_MS];
if (want("paired")) thresholds.mcp_added_latency = ["med<" + ADDED_P50_MS, "p(95)<" + ADDED_P95_MS];

export const options = {
  scenarios: scenarios,
  thresholds: thresholds,
  insecureSkipTLSVerify: INSECURE,
  summaryTrendStats: ["avg", "min", "med", "p(90)", "p(95)", "p(99)", "max"],
};

// Per VU: one MCP session per side, opened on first use and reused, as an agent would.
const sessions = {};
let nextId = 1;

function session(target) {
  if (sessions[target] && sessions[target].ok) return sessions[target];
  const url = target === "direct" ? DIRECT_URL : GATEWAY_URL;
  const token = target === "direct" ? DIRECT_TOKEN : TOKEN;
  sessions[target] = openSession(url, token, PROTOCOL_VERSION, { target: target });
  check(sessions[target], { ["session opened (" + target + ")"]: (s) => s.ok });
  return sessions[target];
}

/** One call; returns its duration in ms, or undefined when it failed. */
function call(target) {
  const s = session(target);
  if (!s.ok) {
    callOk.add(false, { target: target });
    return undefined;
  }
  const id = nextId++;
  const params = METHOD === "tools/call" ? { name: TOOL, arguments: ARGS } : {};
  const res = http.post(target === "direct" ? DIRECT_URL : GATEWAY_URL, jsonRpc(id, METHOD, params), {
    headers: mcpHeaders(target === "direct" ? DIRECT_TOKEN : TOKEN, s.sessionId, s.protocolVersion),
    tags: { target: target, step: METHOD },
  });
  const ok = hasResult(res, id);
  callOk.add(ok, { target: target });
  check(res, { [METHOD + " answered (" + target + ")"]: () => ok });
  if (!ok) return undefined;
  callDuration.add(res.timings.duration, { target: target });
  return res.timings.duration;
}

export function direct() {
  call("direct");
}

export function gateway() {
  call("gateway");
}

/** Both sides back to back, in random order, so drift and noise hit both alike. */
export function paired() {
  let d;
  let g;
  if (Math.random() < 0.5) {
    d = call("direct");
    g = call("gateway");
  } else {
    g = call("gateway");
    d = call("direct");
  }
  if (d !== undefined && g !== undefined) addedLatency.add(g - d);
}
