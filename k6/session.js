// A realistic MCP session through the gateway, at a fixed rate of new sessions: initialize (with
// Mcp-Session-Id handling), notifications/initialized, tools/list, several tools/call, then DELETE.
// Answers may be JSON or SSE. Optionally the same sessions directly against the MCP server.
// See k6/README.md for the commands and every variable.
import { check } from "k6";
import http from "k6/http";
import { Rate, Trend } from "k6/metrics";
import {
  DEFAULT_PROTOCOL_VERSION,
  closeSession,
  hasResult,
  jsonRpc,
  mcpHeaders,
  openSession,
  responseTo,
} from "./lib/mcp.js";

const GATEWAY_URL = __ENV.GATEWAY_URL;
const DIRECT_URL = __ENV.DIRECT_URL || "";
const TOKEN = __ENV.TOKEN || "";
const DIRECT_TOKEN = __ENV.DIRECT_TOKEN || "";
const SESSION_RATE = parseInt(__ENV.SESSION_RATE || "5", 10);
const DURATION = __ENV.DURATION || "1m";
const TOOL = __ENV.TOOL || "echo";
const ARGS = JSON.parse(__ENV.ARGS || '{"text":"hello from k6"}');
const CALLS = parseInt(__ENV.CALLS || "5", 10);
const PROTOCOL_VERSION = __ENV.PROTOCOL_VERSION || DEFAULT_PROTOCOL_VERSION;
const VUS = parseInt(__ENV.VUS || "20", 10);
const MAX_VUS = parseInt(__ENV.MAX_VUS || String(VUS * 5), 10);
const CALL_P95_MS = __ENV.CALL_P95_MS || "50";
const MAX_FAILED_RATE = __ENV.MAX_FAILED_RATE || "0.01";
const INSECURE = __ENV.INSECURE === "1";

if (!GATEWAY_URL) throw new Error("set GATEWAY_URL, e.g. http://127.0.0.1:8080/mcp/kb");

/** Duration of each step, tagged step:initialize|tools_list|tools_call and target:gateway|direct. */
const stepDuration = new Trend("mcp_step_duration", true);
/** A whole session, from initialize to the last call. */
const sessionDuration = new Trend("mcp_session_duration", true);
/** Sessions in which every step succeeded. */
const sessionOk = new Rate("mcp_session_ok");

function sessions(exec) {
  return {
    executor: "constant-arrival-rate",
    rate: SESSION_RATE,
    timeUnit: "1s",
    duration: DURATION,
    preAllocatedVUs: VUS,
    maxVUs: MAX_VUS,
    exec: exec,
  };
}

const scenarios = { gateway_sessions: sessions("gatewaySession") };
if (DIRECT_URL) scenarios.direct_sessions = sessions("directSession");

const thresholds = {
  http_req_failed: ["rate<" + MAX_FAILED_RATE],
  checks: ["rate>" + (1 - parseFloat(MAX_FAILED_RATE))],
  mcp_session_ok: ["rate>" + (1 - parseFloat(MAX_FAILED_RATE))],
  "mcp_step_duration{step:tools_call,target:gateway}": ["p(95)<" + CALL_P95_MS],
};

export const options = {
  scenarios: scenarios,
  thresholds: thresholds,
  insecureSkipTLSVerify: INSECURE,
  summaryTrendStats: ["avg", "min", "med", "p(90)", "p(95)", "p(99)", "max"],
};

function runSession(target, url, token) {
  const tags = { target: target };
  const started = Date.now();
  const s = openSession(url, token, PROTOCOL_VERSION, tags);
  let ok = check(s, { ["initialize (" + target + ")"]: (x) => x.ok });
  stepDuration.add(s.res.timings.duration, { step: "initialize", target: target });
  if (!ok) {
    sessionOk.add(false, tags);
    return;
  }
  const headers = mcpHeaders(token, s.sessionId, s.protocolVersion);

  const list = http.post(url, jsonRpc(1, "tools/list", {}), {
    headers: headers,
    tags: { target: target, step: "tools_list" },
  });
  const listed = responseTo(list, 1);
  const tools = listed && listed.result && Array.isArray(listed.result.tools) ? listed.result.tools : [];
  ok =
    check(list, {
      ["tools/list answered (" + target + ")"]: (r) => hasResult(r, 1),
      ["tools/list offers TOOL (" + target + ")"]: () => tools.some((t) => t && t.name === TOOL),
    }) && ok;
  stepDuration.add(list.timings.duration, { step: "tools_list", target: target });

  for (let i = 0; i < CALLS; i++) {
    const id = 2 + i;
    const res = http.post(url, jsonRpc(id, "tools/call", { name: TOOL, arguments: ARGS }), {
      headers: headers,
      tags: { target: target, step: "tools_call" },
    });
    ok = check(res, { ["tools/call answered (" + target + ")"]: (r) => hasResult(r, id) }) && ok;
    stepDuration.add(res.timings.duration, { step: "tools_call", target: target });
  }
  sessionDuration.add(Date.now() - started, tags);
  closeSession(url, token, s, tags);
  sessionOk.add(ok, tags);
}

export function gatewaySession() {
  runSession("gateway", GATEWAY_URL, TOKEN);
}

export function directSession() {
  runSession("direct", DIRECT_URL, DIRECT_TOKEN);
}
