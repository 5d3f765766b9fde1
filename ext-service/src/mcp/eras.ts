import type { JsonRpcMessage } from "./jsonrpc.js";
import { isPlainObject } from "./jsonrpc.js";

/**
 * The two protocol eras of MCP and how a request is told apart.
 *
 * - 2025 (revisions 2024-11-05 .. 2025-11-25): `initialize` opens a session, later requests carry
 *   `Mcp-Session-Id`, a GET opens the server-to-client stream, servers send requests on streams.
 * - 2026 (revision 2026-07-28 and later): stateless. Every request carries the per-request
 *   envelope in `params._meta` (protocol version, client info, client capabilities) and the
 *   `MCP-Protocol-Version`, `Mcp-Method` and (for named targets) `Mcp-Name` headers, which must
 *   agree with the body.
 *
 * The body decides (an envelope claim in `_meta`); the `MCP-Protocol-Version` header is only a
 * cross-check, except for a request without a claim whose header names a 2026 revision, which
 * is refused (its envelope is missing), never quietly served as 2025 traffic.
 */

export type ProtocolEra = "2025" | "2026";

export const LEGACY_PROTOCOL_VERSIONS = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"] as const;
/** The 2026-era revisions the gateway can parse; a request claiming a later one is refused. */
export const MODERN_PROTOCOL_VERSIONS = ["2026-07-28"] as const;
export const FIRST_MODERN_PROTOCOL_VERSION = "2026-07-28";
const KNOWN_VERSIONS: ReadonlySet<string> = new Set([
  ...LEGACY_PROTOCOL_VERSIONS,
  ...MODERN_PROTOCOL_VERSIONS,
]);

export const META_PROTOCOL_VERSION = "io.modelcontextprotocol/protocolVersion";
export const META_CLIENT_INFO = "io.modelcontextprotocol/clientInfo";
export const META_CLIENT_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities";

const REVISION = /^\d{4}-\d{2}-\d{2}$/;

/** Whether a revision id names the 2026 era (revision ids are dates, so they order as strings). */
export function isModernProtocolVersion(version: string): boolean {
  return REVISION.test(version) && version >= FIRST_MODERN_PROTOCOL_VERSION;
}

/** Whether the gateway understands this revision (a bounded set, safe as a metric label). */
export function isKnownProtocolVersion(version: string): boolean {
  return KNOWN_VERSIONS.has(version);
}

/** A bounded label for a protocol version: the version when known, else "other" (or "none"). */
export function protocolVersionLabel(version: string | undefined): string {
  if (version === undefined) return "none";
  return KNOWN_VERSIONS.has(version) ? version : "other";
}

/** The headers that classify a request, lower-case names as the data planes pass them. */
export interface StandardHeaders {
  "mcp-protocol-version"?: string | undefined;
  "mcp-method"?: string | undefined;
  "mcp-name"?: string | undefined;
}

export type EraProblem = "header_mismatch" | "invalid_envelope" | "unsupported_protocol_version";

export type EraClassification =
  | {
      ok: true;
      era: ProtocolEra;
      /** The revision the message names (envelope, initialize params or header), if any. */
      version: string | undefined;
    }
  | { ok: false; problem: EraProblem; detail: string };

function trimmed(value: string | undefined): string | undefined {
  return value === undefined ? undefined : value.trim();
}

/** The `_meta` object of a message's params, when it has one. */
export function metaOf(params: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  const meta = params?._meta;
  return isPlainObject(meta) ? meta : undefined;
}

/** Whether params carry the 2026 envelope claim: the reserved protocol-version key in `_meta`. */
export function hasEnvelopeClaim(params: Record<string, unknown> | undefined): boolean {
  const meta = metaOf(params);
  return meta !== undefined && META_PROTOCOL_VERSION in meta;
}

/** The first problem of a 2026 request envelope, or undefined when it is well formed. */
function envelopeProblem(meta: Record<string, unknown>): string | undefined {
  if (typeof meta[META_PROTOCOL_VERSION] !== "string")
    return `${META_PROTOCOL_VERSION}: expected a protocol version string`;
  if (!(META_CLIENT_CAPABILITIES in meta)) return `${META_CLIENT_CAPABILITIES}: missing`;
  if (!isPlainObject(meta[META_CLIENT_CAPABILITIES]))
    return `${META_CLIENT_CAPABILITIES}: expected an object`;
  const info = meta[META_CLIENT_INFO];
  if (info !== undefined) {
    if (!isPlainObject(info) || typeof info.name !== "string" || typeof info.version !== "string")
      return `${META_CLIENT_INFO}: expected an object with string name and version`;
  }
  return undefined;
}

/** Body field each method's `Mcp-Name` header mirrors (2026-07-28, Streamable HTTP). */
const MCP_NAME_SOURCE: Readonly<Record<string, "name" | "uri">> = {
  "tools/call": "name",
  "prompts/get": "name",
  "resources/read": "uri",
};

const SENTINEL_PREFIX = "=?base64?";
const SENTINEL_SUFFIX = "?=";
const CANONICAL_BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
// ignoreBOM: a leading U+FEFF is part of the value, not a marker to strip.
const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * Decodes an `Mcp-Name` (or `Mcp-Param-*`) value: a `=?base64?...?=` sentinel carries the UTF-8
 * value in Base64, anything else is the value itself. Undefined for a sentinel whose payload is
 * not canonical Base64 of valid UTF-8 (the spec requires refusing it).
 */
export function decodeHeaderValue(value: string): string | undefined {
  if (!(value.startsWith(SENTINEL_PREFIX) && value.endsWith(SENTINEL_SUFFIX))) return value;
  const payload = value.slice(SENTINEL_PREFIX.length, value.length - SENTINEL_SUFFIX.length);
  if (!CANONICAL_BASE64.test(payload)) return undefined;
  try {
    return strictUtf8.decode(Buffer.from(payload, "base64"));
  } catch {
    return undefined;
  }
}

/**
 * Checks `Mcp-Method` and `Mcp-Name` against the body. `required`: the 2026 rules, where the
 * headers must be present on requests; on 2025 traffic they are optional, but when sent they
 * must agree too (a decision made on headers must never differ from what the server executes).
 */
export function standardHeaderMismatch(
  message: JsonRpcMessage,
  headers: StandardHeaders,
  required: boolean,
): string | undefined {
  const method = trimmed(headers["mcp-method"]);
  const name = trimmed(headers["mcp-name"]);
  if (message.kind === "response") {
    return method !== undefined || name !== undefined ? "Mcp-Method sent with a response" : undefined;
  }
  if (method === undefined) {
    if (required && message.kind === "request") return "the Mcp-Method header is missing";
  } else if (method !== message.method) {
    return `Mcp-Method '${method}' vs body '${message.method}'`;
  }
  const field = Object.hasOwn(MCP_NAME_SOURCE, message.method) ? MCP_NAME_SOURCE[message.method] : undefined;
  const bodyValue =
    field !== undefined && typeof message.params?.[field] === "string" ? message.params[field] : undefined;
  if (name === undefined) {
    if (required && message.kind === "request" && bodyValue !== undefined)
      return "the Mcp-Name header is missing";
    return undefined;
  }
  const decoded = decodeHeaderValue(name);
  if (decoded === undefined) return "the Mcp-Name header has an invalid Base64 value";
  if (decoded !== (bodyValue ?? "")) return `Mcp-Name '${name}' vs body '${bodyValue ?? ""}'`;
  return undefined;
}

/**
 * Classifies one client message into its era, or names why it must be refused:
 * - an envelope claim naming a 2025 revision: 2025 traffic; any other claim is 2026 traffic and
 *   needs a well-formed envelope (`invalid_envelope`), a revision the gateway can parse
 *   (`unsupported_protocol_version`: a later or unknown one), an
 *   `MCP-Protocol-Version` header equal to the claim and the standard headers (`header_mismatch`);
 * - no claim, but an `MCP-Protocol-Version` header naming a 2026 revision: a request is refused
 *   (its envelope is missing), a notification is 2026 traffic;
 * - otherwise 2025 traffic, whose version is read from `initialize` or the header.
 */
export function classifyEra(message: JsonRpcMessage, headers: StandardHeaders): EraClassification {
  const headerVersion = trimmed(headers["mcp-protocol-version"]);
  const headerModern = headerVersion !== undefined && isModernProtocolVersion(headerVersion);
  const params = message.kind === "response" ? undefined : message.params;
  if (message.kind !== "response" && hasEnvelopeClaim(params)) {
    const meta = metaOf(params)!;
    const claimed = meta[META_PROTOCOL_VERSION];
    if (typeof claimed === "string" && (LEGACY_PROTOCOL_VERSIONS as readonly string[]).includes(claimed)) {
      // A 2025 revision named in the envelope: 2025 traffic, with the same header cross-checks.
      if (headerVersion !== undefined && headerVersion !== claimed)
        return mismatch(`MCP-Protocol-Version '${headerVersion}' vs envelope '${claimed}'`);
      const headerProblem = standardHeaderMismatch(message, headers, false);
      if (headerProblem) return mismatch(headerProblem);
      return { ok: true, era: "2025", version: claimed };
    }
    const problem = message.kind === "request" ? envelopeProblem(meta) : undefined;
    if (problem) return { ok: false, problem: "invalid_envelope", detail: problem };
    if (typeof claimed !== "string")
      return {
        ok: false,
        problem: "invalid_envelope",
        detail: `${META_PROTOCOL_VERSION}: expected a string`,
      };
    if (headerVersion === undefined) {
      if (message.kind === "request") return mismatch("the MCP-Protocol-Version header is missing");
    } else if (headerVersion !== claimed) {
      return mismatch(`MCP-Protocol-Version '${headerVersion}' vs envelope '${claimed}'`);
    }
    // Any revision the gateway does not know (a later date, or no date at all) is one it cannot
    // parse: refused, never quietly served as 2025 traffic.
    if (!(MODERN_PROTOCOL_VERSIONS as readonly string[]).includes(claimed)) {
      return { ok: false, problem: "unsupported_protocol_version", detail: claimed };
    }
    const headerProblem = standardHeaderMismatch(message, headers, true);
    if (headerProblem) return mismatch(headerProblem);
    return { ok: true, era: "2026", version: claimed };
  }
  if (headerModern) {
    if (message.kind === "request") {
      return {
        ok: false,
        problem: "invalid_envelope",
        detail: `MCP-Protocol-Version names ${headerVersion}, but params._meta has no ${META_PROTOCOL_VERSION}`,
      };
    }
    if (message.kind === "notification") {
      const headerProblem = standardHeaderMismatch(message, headers, false);
      if (headerProblem) return mismatch(headerProblem);
      return { ok: true, era: "2026", version: headerVersion };
    }
  }
  const headerProblem = standardHeaderMismatch(message, headers, false);
  if (headerProblem) return mismatch(headerProblem);
  const asked =
    message.kind === "request" &&
    message.method === "initialize" &&
    typeof params?.protocolVersion === "string"
      ? params.protocolVersion
      : undefined;
  return { ok: true, era: "2025", version: asked ?? headerVersion };
}

function mismatch(detail: string): EraClassification {
  return { ok: false, problem: "header_mismatch", detail };
}

/** The embedded requests a 2026 `input_required` result may carry (sampling, elicitation, roots). */
export const INPUT_REQUEST_METHODS: ReadonlySet<string> = new Set([
  "elicitation/create",
  "sampling/createMessage",
  "roots/list",
]);

/** Whether a result is a 2026 multi-round-trip `input_required` result. */
export function isInputRequiredResult(result: unknown): result is Record<string, unknown> {
  return isPlainObject(result) && result.resultType === "input_required";
}
