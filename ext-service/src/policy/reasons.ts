import type { McpMediaRejection } from "../mcp/media.js";

/**
 * The one table of decision reasons. Each code is stable: it appears in audit records, metric
 * labels and JSON-RPC `error.data.reason`, and docs/REASONS.md documents every one (a test checks).
 */

export const JsonRpcCode = {
  ParseError: -32700,
  InvalidRequest: -32600,
  MethodNotFound: -32601,
  InvalidParams: -32602,
  InternalError: -32603,
  /** Implementation-defined server errors live in -32000..-32099. */
  Unauthorized: -32001,
  Forbidden: -32003,
  PolicyDenied: -32010,
  /** A human must approve the call first (approval_required and its outcomes). */
  ApprovalRequired: -32011,
  RateLimited: -32029,
  UpstreamUnavailable: -32050,
  /** MCP 2026-07-28: HTTP headers disagree with the body, or a required one is missing. */
  HeaderMismatch: -32020,
  /** MCP 2026-07-28: the request names a protocol revision the receiver does not implement. */
  UnsupportedProtocolVersion: -32022,
} as const;

export interface ReasonInfo {
  /** JSON-RPC error code the agent sees. */
  code: number;
  /** HTTP status when the reason rejects the whole HTTP request (not one message). */
  status: number;
  /** A human sentence for the agent. Never includes secrets or raw arguments. */
  message: string;
}

export const Reasons = {
  // identity
  token_missing: { code: JsonRpcCode.Unauthorized, status: 401, message: "Authentication required" },
  token_malformed: { code: JsonRpcCode.Unauthorized, status: 401, message: "The bearer token is malformed" },
  jwt_expired: { code: JsonRpcCode.Unauthorized, status: 401, message: "The token has expired" },
  jwt_not_yet_valid: { code: JsonRpcCode.Unauthorized, status: 401, message: "The token is not yet valid" },
  jwt_issuer_unknown: {
    code: JsonRpcCode.Unauthorized,
    status: 401,
    message: "The token's issuer is not trusted",
  },
  jwt_audience_invalid: {
    code: JsonRpcCode.Unauthorized,
    status: 401,
    message: "The token was not issued for this gateway",
  },
  jwt_algorithm_rejected: {
    code: JsonRpcCode.Unauthorized,
    status: 401,
    message: "The token's signing algorithm is not allowed",
  },
  jwt_signature_invalid: {
    code: JsonRpcCode.Unauthorized,
    status: 401,
    message: "The token's signature is invalid",
  },
  jwt_key_unknown: {
    code: JsonRpcCode.Unauthorized,
    status: 401,
    message: "The token's signing key is unknown",
  },
  hop_token_invalid: {
    code: JsonRpcCode.Unauthorized,
    status: 401,
    message: "The gateway's internal hop identity is invalid or expired",
  },
  jwt_claims_invalid: {
    code: JsonRpcCode.Unauthorized,
    status: 401,
    message: "The token's claims are invalid",
  },
  jwks_unavailable: {
    code: JsonRpcCode.Unauthorized,
    status: 401,
    message: "The issuer's signing keys could not be fetched; try again later",
  },
  // routing and reachability
  server_unknown: { code: JsonRpcCode.MethodNotFound, status: 404, message: "No such MCP server" },
  origin_forbidden: {
    code: JsonRpcCode.Forbidden,
    status: 403,
    message: "Requests from this web origin are not accepted",
  },
  host_forbidden: {
    code: JsonRpcCode.Forbidden,
    status: 403,
    message: "Requests for this host name are not accepted (DNS rebinding protection)",
  },
  // Audited as such, but answered exactly as server_unknown: a 403 would confirm the name exists.
  server_forbidden: { code: JsonRpcCode.MethodNotFound, status: 404, message: "No such MCP server" },
  session_unknown: {
    code: JsonRpcCode.Unauthorized,
    status: 404,
    message: "Session not found; start a new session with initialize",
  },
  session_required: {
    code: JsonRpcCode.InvalidRequest,
    status: 400,
    message: "Mcp-Session-Id is required; start a session with initialize",
  },
  session_unavailable: {
    code: JsonRpcCode.UpstreamUnavailable,
    status: 503,
    message: "The session cannot be checked right now; try again shortly",
  },
  stream_conflict: {
    code: JsonRpcCode.InvalidRequest,
    status: 409,
    message: "This session's stream is already open; close it before opening another",
  },
  answer_not_pending: {
    code: JsonRpcCode.InvalidRequest,
    status: 409,
    message:
      "No request of this session waits for this answer on any gateway replica that can take it: it timed out or was cancelled, or (without a shared state store) the session's requests must reach one replica (affinity by Mcp-Session-Id)",
  },
  input_not_pending: {
    code: JsonRpcCode.InvalidParams,
    status: 400,
    message:
      "No call of this agent waits for this input on this gateway replica: it expired, was answered already, or is held by another replica",
  },
  answer_relay_unavailable: {
    code: JsonRpcCode.UpstreamUnavailable,
    status: 503,
    message:
      "The answer cannot reach the gateway replica waiting for it (the state store is unavailable); the request it answers fails",
  },
  query_not_allowed: {
    code: JsonRpcCode.InvalidRequest,
    status: 400,
    message: "MCP endpoints take no query string; remove it from the URL",
  },
  header_name_invalid: {
    code: JsonRpcCode.InvalidRequest,
    status: 400,
    message: "A request header name is not accepted: use letters, digits and '-' only",
  },
  // message shape
  parse_error: { code: JsonRpcCode.ParseError, status: 400, message: "The body is not valid JSON" },
  invalid_utf8: { code: JsonRpcCode.ParseError, status: 400, message: "The body is not valid UTF-8" },
  json_too_deep: { code: JsonRpcCode.InvalidRequest, status: 400, message: "The JSON nesting is too deep" },
  invalid_request: {
    code: JsonRpcCode.InvalidRequest,
    status: 400,
    message: "The body is not a JSON-RPC 2.0 message",
  },
  batch_empty: {
    code: JsonRpcCode.InvalidRequest,
    status: 400,
    message: "A JSON-RPC batch must not be empty",
  },
  batch_too_large: {
    code: JsonRpcCode.InvalidRequest,
    status: 400,
    message: "The batch has too many messages",
  },
  batch_rejected: {
    code: JsonRpcCode.PolicyDenied,
    status: 200,
    message: "Not forwarded: another message in the same batch was denied",
  },
  body_too_large: { code: JsonRpcCode.InvalidRequest, status: 413, message: "The request body is too large" },
  headers_too_large: {
    code: JsonRpcCode.InvalidRequest,
    status: 431,
    message: "The request headers are too large (a bearer token is the usual cause)",
  },
  agent_token_too_large: {
    code: JsonRpcCode.InvalidRequest,
    status: 431,
    message: "The agent's token is too large to be carried to this server through the aggregated endpoint",
  },
  unsupported_media_type: {
    code: JsonRpcCode.InvalidRequest,
    status: 415,
    message: "MCP requests must be sent as application/json",
  },
  not_acceptable: {
    code: JsonRpcCode.InvalidRequest,
    status: 406,
    message: "MCP clients must accept application/json and text/event-stream",
  },
  http_method_not_allowed: {
    code: JsonRpcCode.InvalidRequest,
    status: 405,
    message: "MCP endpoints accept POST, GET and DELETE",
  },
  request_timeout: {
    code: JsonRpcCode.InvalidRequest,
    status: 408,
    message: "The request body was not received in time",
  },
  header_mismatch: {
    code: JsonRpcCode.HeaderMismatch,
    status: 400,
    message: "The MCP-Protocol-Version, Mcp-Method or Mcp-Name header is missing or does not match the body",
  },
  invalid_envelope: {
    code: JsonRpcCode.InvalidParams,
    status: 400,
    message: "The request's params._meta envelope (MCP 2026-07-28) is missing or malformed",
  },
  unsupported_protocol_version: {
    code: JsonRpcCode.UnsupportedProtocolVersion,
    status: 400,
    message: "The gateway does not support this MCP protocol version",
  },
  invalid_params: { code: JsonRpcCode.InvalidParams, status: 200, message: "Invalid params" },
  // policy on messages
  method_unknown: { code: JsonRpcCode.MethodNotFound, status: 200, message: "Method not found" },
  tool_unknown: { code: JsonRpcCode.InvalidParams, status: 200, message: "Unknown tool" },
  tool_deprecated: { code: JsonRpcCode.InvalidParams, status: 200, message: "Unknown tool" },
  prompt_unknown: { code: JsonRpcCode.InvalidParams, status: 200, message: "Unknown prompt" },
  resource_unknown: { code: JsonRpcCode.InvalidParams, status: 200, message: "Unknown resource" },
  policy_denied: {
    code: JsonRpcCode.PolicyDenied,
    status: 200,
    message: "The gateway's policy refused this request; an operator can look up why by its request_id",
  },
  resource_uri_invalid: {
    code: JsonRpcCode.InvalidParams,
    status: 200,
    message: "The resource URI must be an absolute URI in canonical form",
  },
  // security policies (docs/SECURITY.md)
  tool_pin_mismatch: {
    code: JsonRpcCode.PolicyDenied,
    status: 200,
    message: "The tool's definition changed since it was approved; calls are refused until it is re-pinned",
  },
  tool_pin_unverified: {
    code: JsonRpcCode.PolicyDenied,
    status: 200,
    message: "The tool's definition could not be checked against its pin; calls are refused until it can be",
  },
  tool_poisoned: {
    code: JsonRpcCode.PolicyDenied,
    status: 200,
    message: "The tool's description contains instructions aimed at the model",
  },
  tool_collision: {
    code: JsonRpcCode.PolicyDenied,
    status: 200,
    message: "The tool's name collides with a tool of another server",
  },
  invalid_arguments: { code: JsonRpcCode.InvalidParams, status: 200, message: "Invalid arguments" },
  injection_blocked: {
    code: JsonRpcCode.PolicyDenied,
    status: 200,
    message: "Blocked: the content contains a prompt-injection pattern",
  },
  injection_suspected: {
    code: JsonRpcCode.PolicyDenied,
    status: 200,
    message: "The content resembles a prompt injection",
  },
  secret_in_arguments: {
    code: JsonRpcCode.PolicyDenied,
    status: 200,
    message: "The arguments contain a secret; the request was not sent",
  },
  pii_in_arguments: {
    code: JsonRpcCode.PolicyDenied,
    status: 200,
    message: "The arguments contain personal data; the request was not sent",
  },
  secret_in_output: {
    code: JsonRpcCode.PolicyDenied,
    status: 200,
    message: "The server's answer contained a secret and was withheld",
  },
  pii_in_output: {
    code: JsonRpcCode.PolicyDenied,
    status: 200,
    message: "The server's answer contained personal data and was withheld",
  },
  scan_budget_exceeded: {
    code: JsonRpcCode.PolicyDenied,
    status: 200,
    message: "The message needs more inspection than the gateway's scan budget allows; it was not passed",
  },
  // budgets (docs/BUDGETS.md)
  budget_exhausted: {
    code: JsonRpcCode.PolicyDenied,
    status: 200,
    message: "The budget for this call is spent for the current period",
  },
  budget_unavailable: {
    code: JsonRpcCode.UpstreamUnavailable,
    status: 200,
    message: "Budgets cannot be checked right now; try again shortly",
  },
  // human approval (docs/APPROVALS.md)
  approval_required: {
    code: JsonRpcCode.ApprovalRequired,
    status: 200,
    message: "This call needs a human approval; retry the same call once it is approved",
  },
  approval_denied: {
    code: JsonRpcCode.ApprovalRequired,
    status: 200,
    message: "An approver denied this call",
  },
  approval_unavailable: {
    code: JsonRpcCode.ApprovalRequired,
    status: 200,
    message: "This call needs a human approval that cannot be requested right now",
  },
  approval_invalid: {
    code: JsonRpcCode.InvalidParams,
    status: 200,
    message: "The approval sent with this call is not valid for it (expired, altered, or for another call)",
  },
  // upstream and traffic
  rate_limited: { code: JsonRpcCode.RateLimited, status: 429, message: "Too many requests; slow down" },
  concurrency_limited: {
    code: JsonRpcCode.RateLimited,
    status: 429,
    message: "Too many requests or streams open at once for this agent; close some first",
  },
  upstream_streams_limited: {
    code: JsonRpcCode.RateLimited,
    status: 429,
    message:
      "This agent already holds as many streams on the aggregated endpoint as it may, each open; close one first",
  },
  upstream_unavailable: {
    code: JsonRpcCode.UpstreamUnavailable,
    status: 503,
    message: "The MCP server is unavailable",
  },
  upstream_session_lost: {
    code: JsonRpcCode.UpstreamUnavailable,
    status: 502,
    message: "The MCP server lost the session again right after the gateway opened a new one",
  },
  upstream_timeout: {
    code: JsonRpcCode.UpstreamUnavailable,
    status: 504,
    message: "The MCP server did not answer in time",
  },
  upstream_invalid_response: {
    code: JsonRpcCode.UpstreamUnavailable,
    status: 502,
    message: "The MCP server sent an invalid response",
  },
  response_too_large: {
    code: JsonRpcCode.InternalError,
    status: 502,
    message: "The MCP server's response is larger than the gateway inspects",
  },
  breaker_open: {
    code: JsonRpcCode.UpstreamUnavailable,
    status: 503,
    message: "The MCP server is failing; requests are paused briefly",
  },
  // 502, not 503: the shipped Envoy's local reply mappers turn every 503 into its own
  // internal_error (ext_authz unreachable), which would hide this reason on the Envoy plane.
  upstream_credential_unavailable: {
    code: JsonRpcCode.UpstreamUnavailable,
    status: 502,
    message: "The gateway could not obtain a credential for this MCP server",
  },
  internal_error: { code: JsonRpcCode.InternalError, status: 500, message: "Internal gateway error" },
} as const satisfies Record<string, ReasonInfo>;

export type Reason = keyof typeof Reasons;

/** The protocol model's media rejections must stay reasons this table knows (compile-time check). */
const mediaRejectionsAreReasons = (r: McpMediaRejection): Reason => r;
void mediaRejectionsAreReasons;

export function reasonInfo(reason: Reason): ReasonInfo {
  return Reasons[reason];
}
