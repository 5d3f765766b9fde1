import type { Principal } from "../policy/identity.js";
import { EXT_AUTHZ_NAMESPACE } from "./context.js";
import { fromStruct, toStruct } from "./struct.js";
import type { Metadata, Struct } from "./types.js";
import { encodeStruct, structWithStrings, type EncodedStruct } from "./wire.js";

/**
 * The verified identity travels from ext_authz to ext_proc in Envoy's dynamic metadata: ext_authz
 * returns it as CheckResponse.dynamic_metadata (Envoy stores it under `envoy.filters.http.ext_authz`),
 * and the ext_proc filter forwards that namespace in ProcessingRequest.metadata_context when
 * configured with `metadata_options.forwarding_namespaces.untyped: ["envoy.filters.http.ext_authz"]`.
 */
export interface AuthzMetadata {
  principal: Principal;
  requestId: string;
  server: string;
  /** The HTTP method ext_authz saw, so a record written from a response alone still names it. */
  httpMethod: string;
  /** The per-agent credential ext_authz set upstream, sealed for this request (policy/token-exchange.ts). */
  sealedCredential?: string;
}

/**
 * The principal's fields of the metadata, encoded once per principal: the token cache hands out
 * the same (frozen) principal for every request with that token, and only the request id and
 * the server change from one request to the next.
 */
const principalFields = new WeakMap<Principal, Buffer>();
const REQUEST_KEYS = ["request_id", "server", "http_method"] as const;
const REQUEST_KEYS_WITH_CREDENTIAL = [...REQUEST_KEYS, "credential"] as const;

export function encodeAuthzMetadata(
  principal: Principal,
  requestId: string,
  server: string,
  httpMethod: string,
  sealedCredential?: string,
): EncodedStruct {
  let fields = principalFields.get(principal);
  if (fields === undefined) {
    fields = encodeStruct(
      toStruct({
        agent: principal.agent,
        roles: [...principal.roles],
        // A JSON string rather than a nested Struct: Struct numbers are doubles and would not
        // round-trip every claim exactly.
        claims: JSON.stringify(principal.claims),
        issuer: principal.issuer ?? null,
        anonymous: principal.anonymous,
        // The aggregated endpoint's hop (policy/hop-token.ts): its audit record says so.
        ...(principal.viaBroker ? { via_broker: true } : {}),
      }),
    );
    principalFields.set(principal, fields);
  }
  // The same entries, in the same order, as one Struct of all eight (or nine) fields.
  return sealedCredential === undefined
    ? structWithStrings(fields, REQUEST_KEYS, [requestId, server, httpMethod])
    : structWithStrings(fields, REQUEST_KEYS_WITH_CREDENTIAL, [
        requestId,
        server,
        httpMethod,
        sealedCredential,
      ]);
}

/**
 * What ext_authz leaves when it answers a request itself (a denial, or the RFC 9728 document):
 * that exchange is audited already. Envoy stores this metadata too and forwards it to ext_proc
 * with the local reply, whose stream then only passes the answer through.
 */
export function encodeAnsweredMetadata(requestId: string): Struct {
  return toStruct({ request_id: requestId, audited: true });
}

/** The forwarded ext_authz namespace, as ext_proc finds it on any message of a stream. */
export type AuthzOutcome =
  | { kind: "admitted"; metadata: AuthzMetadata }
  | { kind: "answered"; requestId: string }
  | { kind: "absent" }
  | { kind: "invalid"; problem: string };

export function readAuthzOutcome(metadata: Metadata | undefined): AuthzOutcome {
  const struct = metadata?.filter_metadata?.[EXT_AUTHZ_NAMESPACE];
  if (!struct) return { kind: "absent" };
  const audited = struct.fields?.audited;
  if (audited?.boolValue === true) {
    const requestId = struct.fields?.request_id?.stringValue;
    if (typeof requestId !== "string" || requestId === "")
      return { kind: "invalid", problem: "metadata: 'request_id' missing" };
    return { kind: "answered", requestId };
  }
  const decoded = decodeAuthzMetadata(metadata);
  return typeof decoded === "string"
    ? { kind: "invalid", problem: decoded }
    : { kind: "admitted", metadata: decoded };
}

/** Reads the metadata back; a string describes why it is missing or invalid (fail closed). */
export function decodeAuthzMetadata(metadata: Metadata | undefined): AuthzMetadata | string {
  const struct = metadata?.filter_metadata?.[EXT_AUTHZ_NAMESPACE];
  if (!struct) return `no '${EXT_AUTHZ_NAMESPACE}' metadata (is forwarding_namespaces configured?)`;
  const m = fromStruct(struct);
  const {
    agent,
    roles,
    claims,
    issuer,
    anonymous,
    request_id: requestId,
    server,
    http_method: httpMethod,
    via_broker: viaBroker,
    credential,
  } = m;
  if (typeof agent !== "string" || agent === "") return "metadata: 'agent' missing";
  if (!Array.isArray(roles) || !roles.every((r) => typeof r === "string")) return "metadata: 'roles' invalid";
  if (typeof anonymous !== "boolean") return "metadata: 'anonymous' missing";
  if (issuer !== null && typeof issuer !== "string") return "metadata: 'issuer' invalid";
  if (typeof requestId !== "string" || requestId === "") return "metadata: 'request_id' missing";
  if (typeof server !== "string" || server === "") return "metadata: 'server' missing";
  if (typeof claims !== "string") return "metadata: 'claims' missing";
  if (httpMethod !== undefined && typeof httpMethod !== "string") return "metadata: 'http_method' invalid";
  if (credential !== undefined && typeof credential !== "string") return "metadata: 'credential' invalid";
  let parsedClaims: unknown;
  try {
    parsedClaims = JSON.parse(claims);
  } catch {
    return "metadata: 'claims' is not JSON";
  }
  if (typeof parsedClaims !== "object" || parsedClaims === null || Array.isArray(parsedClaims)) {
    return "metadata: 'claims' is not an object";
  }
  const principal: Principal = Object.freeze({
    agent,
    roles: Object.freeze(roles as string[]),
    claims: Object.freeze(parsedClaims as Record<string, unknown>),
    issuer: issuer ?? undefined,
    anonymous,
    ...(viaBroker === true ? { viaBroker: true } : {}),
  });
  return {
    principal,
    requestId,
    server,
    httpMethod: httpMethod ?? "",
    ...(credential !== undefined ? { sealedCredential: credential } : {}),
  };
}
