import type { HeaderMap, HeaderValueOption } from "./types.js";

/**
 * Header conversions between Envoy's protos and the core's lower-case header map. The two
 * filters differ: ext_proc carries values as bytes in `raw_value` and only reads `raw_value`
 * back; ext_authz reads `value` (ARCHITECTURE.md section 5).
 */

/** ext_proc's HeaderMap as a lower-case map; repeated headers are joined with ", ". */
export function headerMapToRecord(map: HeaderMap | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const h of map?.headers ?? []) {
    const key = h.key.toLowerCase();
    const raw = h.raw_value;
    const value =
      raw !== undefined && raw.length > 0
        ? Buffer.isBuffer(raw)
          ? raw.toString("latin1")
          : Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString("latin1")
        : (h.value ?? "");
    out[key] = key in out ? `${out[key]}, ${value}` : value;
  }
  return out;
}

/** Sets a header for ext_proc (raw_value), replacing any existing value. */
export function rawHeader(key: string, value: string): HeaderValueOption {
  return {
    header: { key, raw_value: Buffer.from(value, "latin1") },
    append_action: "OVERWRITE_IF_EXISTS_OR_ADD",
  };
}

/** Sets a header for ext_authz (value), replacing any existing value: `append` set explicitly. */
export function authzHeader(key: string, value: string): HeaderValueOption {
  return { header: { key, value }, append: { value: false } };
}

/** A header record with lower-case names (Envoy's and HTTP/2's form), later duplicates winning. */
export function lowerCaseKeys(headers: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers ?? {})) out[k.toLowerCase()] = v;
  return out;
}
