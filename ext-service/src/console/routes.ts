import { existsSync, readdirSync, readFileSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { dirname, extname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The admin console's static front end (console/ in the package: index.html, console.css and the ES
 * modules app.js, shared.js, pages/*.js): every .html/.js/.css file under it, read once, served
 * on the admin port under /console with a strict Content-Security-Policy (scripts, styles and
 * fetches from the console's own origin only, no framing, no forms posting anywhere). The page
 * holds the admin token in sessionStorage and sends it as an Authorization header; nothing here
 * sets or reads a cookie, so a cross-site request carries no credential.
 */

const PREFIX = "/console";
const TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
};

/** URL path -> file for every servable file under dir; /console and /console/ are index.html. */
function consoleFiles(dir: string): Map<string, string> {
  const files = new Map<string, string>();
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || !(extname(entry.name) in TYPES)) continue;
    const file = join(entry.parentPath, entry.name);
    files.set(`${PREFIX}/${relative(dir, file).split(sep).join("/")}`, file);
  }
  const index = files.get(`${PREFIX}/index.html`);
  if (index === undefined) throw new Error(`no index.html in ${dir}`);
  files.set(PREFIX, index);
  files.set(`${PREFIX}/`, index);
  return files;
}

export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self'",
  "form-action 'none'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join("; ");

/** console/ of the package: the nearest ancestor of this module holding console/index.html (src or dist). */
export function consoleDir(from = dirname(fileURLToPath(import.meta.url))): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, "console", "index.html"))) return join(dir, "console");
    if (dirname(dir) === dir) throw new Error("cannot find console/index.html above " + from);
  }
}

/** The route for the admin server: the console's files; other paths are left to the next route. */
export function consoleAssets(dir = consoleDir()): (req: IncomingMessage, res: ServerResponse) => boolean {
  const loaded = new Map<string, { body: Buffer; type: string }>();
  for (const [path, file] of consoleFiles(dir)) {
    loaded.set(path, { body: readFileSync(file), type: TYPES[extname(file)]! });
  }
  return (req, res) => {
    const path = (req.url ?? "/").split("?")[0]!;
    if (path !== PREFIX && !path.startsWith(`${PREFIX}/`)) return false;
    if (path.startsWith(`${PREFIX}/api/`)) return false;
    const asset = loaded.get(path);
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
      return true;
    }
    if (!asset) {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
      return true;
    }
    res.writeHead(200, {
      "content-type": asset.type,
      "content-length": String(asset.body.length),
      "content-security-policy": CONSOLE_CSP,
      "x-content-type-options": "nosniff",
      "x-frame-options": "DENY",
      "referrer-policy": "no-referrer",
      "cross-origin-opener-policy": "same-origin",
      "cross-origin-resource-policy": "same-origin",
      "cache-control": "no-store",
    });
    res.end(req.method === "HEAD" ? undefined : asset.body);
    return true;
  };
}
