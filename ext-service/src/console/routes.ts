import { existsSync, readFileSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The admin console's static front end (console/ in the package): three files, read once, served
 * on the admin port under /console with a strict Content-Security-Policy (scripts, styles and
 * fetches from the console's own origin only, no framing, no forms posting anywhere). The page
 * holds the admin token in sessionStorage and sends it as an Authorization header; nothing here
 * sets or reads a cookie, so a cross-site request carries no credential.
 */

const PREFIX = "/console";
const ASSETS: Readonly<Record<string, { file: string; type: string }>> = {
  "/console": { file: "index.html", type: "text/html; charset=utf-8" },
  "/console/": { file: "index.html", type: "text/html; charset=utf-8" },
  "/console/console.js": { file: "console.js", type: "text/javascript; charset=utf-8" },
  "/console/console.css": { file: "console.css", type: "text/css; charset=utf-8" },
};

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
  for (const [path, asset] of Object.entries(ASSETS)) {
    loaded.set(path, { body: readFileSync(join(dir, asset.file)), type: asset.type });
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
