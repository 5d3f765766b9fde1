// MCP over Streamable HTTP for k6 scripts: JSON-RPC bodies, headers, sessions, and answers that
// come back either as application/json or as text/event-stream. No environment reads here: each
// script reads its own parameters from __ENV so they are all visible (and documented) in one place.
import http from "k6/http";

export const DEFAULT_PROTOCOL_VERSION = "2025-11-25";

/** A JSON-RPC request (with id) or notification (id === undefined) as a string body. */
export function jsonRpc(id, method, params) {
  const message = { jsonrpc: "2.0", method: method };
  if (id !== undefined) message.id = id;
  if (params !== undefined) message.params = params;
  return JSON.stringify(message);
}

/** Response header lookup that does not depend on how the header name is cased. */
export function header(res, name) {
  const wanted = name.toLowerCase();
  const headers = res.headers || {};
  for (const key in headers) {
    if (key.toLowerCase() === wanted) return headers[key];
  }
  return undefined;
}

/** Headers for a POST to an MCP endpoint; token, session and version are optional. */
export function mcpHeaders(token, sessionId, protocolVersion) {
  const headers = {
    "Content-Type": "application/json",
    Accept: "application/json, text/event-stream",
  };
  if (token) headers.Authorization = "Bearer " + token;
  if (sessionId) headers["Mcp-Session-Id"] = sessionId;
  if (protocolVersion) headers["Mcp-Protocol-Version"] = protocolVersion;
  return headers;
}

/** The data of each event of an SSE body, joined per event (blank line separated). */
export function sseData(text) {
  const out = [];
  const blocks = String(text).replace(/\r\n?/g, "\n").split("\n\n");
  for (let i = 0; i < blocks.length; i++) {
    const lines = blocks[i].split("\n");
    const data = [];
    for (let j = 0; j < lines.length; j++) {
      const line = lines[j];
      if (line.indexOf("data:") === 0) data.push(line.charAt(5) === " " ? line.slice(6) : line.slice(5));
    }
    if (data.length > 0) out.push(data.join("\n"));
  }
  return out;
}

/** Every JSON-RPC message in a response body (JSON object, JSON batch, or SSE events). */
export function messages(res) {
  const type = String(header(res, "Content-Type") || "").toLowerCase();
  const body = res.body === null || res.body === undefined ? "" : String(res.body);
  if (body === "") return [];
  try {
    if (type.indexOf("text/event-stream") === 0) {
      return sseData(body).map(function (d) {
        return JSON.parse(d);
      });
    }
    const value = JSON.parse(body);
    return Array.isArray(value) ? value : [value];
  } catch (e) {
    return [];
  }
}

/** The JSON-RPC response to request `id`, or undefined. */
export function responseTo(res, id) {
  const all = messages(res);
  for (let i = 0; i < all.length; i++) {
    if (all[i] && all[i].id === id && (all[i].result !== undefined || all[i].error !== undefined)) {
      return all[i];
    }
  }
  return undefined;
}

/** True when `res` carries a successful JSON-RPC result for `id`. */
export function hasResult(res, id) {
  const m = responseTo(res, id);
  return res.status === 200 && m !== undefined && m.result !== undefined && m.error === undefined;
}

/**
 * initialize + notifications/initialized. Returns { ok, sessionId, protocolVersion, res }. The
 * session id is undefined for stateless servers; later requests send it back when present.
 */
export function openSession(url, token, protocolVersion, tags) {
  const init = http.post(
    url,
    jsonRpc(0, "initialize", {
      protocolVersion: protocolVersion,
      capabilities: {},
      clientInfo: { name: "mcp-gateway-k6", version: "1.0.0" },
    }),
    { headers: mcpHeaders(token, undefined, undefined), tags: Object.assign({ step: "initialize" }, tags) },
  );
  const answer = responseTo(init, 0);
  if (init.status !== 200 || !answer || answer.result === undefined) {
    return { ok: false, sessionId: undefined, protocolVersion: protocolVersion, res: init };
  }
  const sessionId = header(init, "Mcp-Session-Id");
  const negotiated = answer.result.protocolVersion || protocolVersion;
  const note = http.post(url, jsonRpc(undefined, "notifications/initialized"), {
    headers: mcpHeaders(token, sessionId, negotiated),
    tags: Object.assign({ step: "initialized" }, tags),
  });
  return {
    ok: note.status === 202 || note.status === 200 || note.status === 204,
    sessionId: sessionId,
    protocolVersion: negotiated,
    res: init,
  };
}

/** Ends a session (DELETE); servers without sessions may answer 405, which is fine. */
export function closeSession(url, token, session, tags) {
  if (!session.sessionId) return undefined;
  return http.del(url, null, {
    headers: mcpHeaders(token, session.sessionId, session.protocolVersion),
    tags: Object.assign({ step: "delete" }, tags),
    responseCallback: http.expectedStatuses(200, 202, 204, 404, 405),
  });
}
