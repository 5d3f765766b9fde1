/**
 * The resource URI a server will serve. The official SDK servers look a resource up by
 * `new URL(uri).href` (WHATWG URL parsing: tabs and newlines removed, the scheme lower-cased,
 * `.`/`..` and `%2e` segments resolved, `\` read as `/` for special schemes), and servers that
 * join paths themselves resolve dot segments too. Rules must judge the resource that is served,
 * so the gateway only lets through a URI that is already in that normal form and has nothing a
 * server could read two ways: the string authorised is then exactly the string served.
 */

/** C0 controls, DEL and C1 controls: removed or encoded by URL parsers, never meaningful in a URI. */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
/** A path (or query) segment that is `.` or `..`. */
const DOT_SEGMENT = /(?:^|[/?#])\.{1,2}(?=$|[/?#])/;
/** A percent-encoded dot: `.` never needs encoding (RFC 3986 unreserved), so it only hides a segment. */
const ENCODED_DOT = /%2e/i;

/**
 * Why `uri` is refused, or undefined when it is the canonical form of an absolute URI. The check
 * costs a few linear scans and one URL parse; it never echoes the URI.
 */
export function resourceUriProblem(uri: string): string | undefined {
  if (CONTROL.test(uri)) return "it contains control characters";
  if (uri.includes("\\")) return "it contains a backslash";
  if (ENCODED_DOT.test(uri)) return "it contains a percent-encoded dot";
  const colon = uri.indexOf(":");
  if (colon > 0 && DOT_SEGMENT.test(uri.slice(colon + 1).replace(/^\/\/[^/?#]*/, "")))
    return "it contains a '.' or '..' segment";
  let href: string;
  try {
    href = new URL(uri).href;
  } catch {
    return "it is not an absolute URI";
  }
  if (href !== uri) return "it is not in canonical form (as URL parsing would rewrite it)";
  return undefined;
}

/** Whether a server-listed URI could be read through the gateway as written. */
export function isCanonicalResourceUri(uri: string): boolean {
  return resourceUriProblem(uri) === undefined;
}

/**
 * Why a URI template (RFC 6570, as `resources/templates/list` and `completion/complete` name
 * them) is refused: the characters no server reads the same way. Its expansion is not known, so
 * canonical form cannot be asked of it; each URI read from it is checked on its own.
 */
export function resourceTemplateProblem(template: string): string | undefined {
  if (CONTROL.test(template)) return "it contains control characters";
  if (template.includes("\\")) return "it contains a backslash";
  if (ENCODED_DOT.test(template)) return "it contains a percent-encoded dot";
  return undefined;
}
