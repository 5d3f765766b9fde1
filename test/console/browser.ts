import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type Browser, type BrowserContext } from "playwright-core";

/** Debian's chromium package; .ci/run installs it. */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

/** Screenshots of each console page land here (gitignored) for a person to look at. */
export const SCREENSHOT_DIR = join(import.meta.dirname, "../../test-artifacts/console");

/**
 * Whether the browser tests can run: outside CI a machine without chromium skips them with a
 * notice on stderr; in CI (CI=true) a missing chromium is an error, so the tests never pass by
 * not running.
 */
export function chromiumAvailable(): boolean {
  if (existsSync(CHROMIUM)) return true;
  if (process.env.CI === "true") throw new Error(`CI=true but there is no chromium at ${CHROMIUM}`);
  process.stderr.write(
    `\nNOTICE: skipping the console browser tests: no chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH)\n\n`,
  );
  return false;
}

export interface RunningBrowser {
  browser: Browser;
  context: BrowserContext;
  close(): Promise<void>;
}

/** Headless Debian chromium with a fresh profile, nothing fetched from the network by itself. */
export async function launchChromium(): Promise<RunningBrowser> {
  const profile = mkdtempSync(join(tmpdir(), "mcp-gw-chromium-"));
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport: { width: 1366, height: 850 },
  });
  return {
    browser: context.browser()!,
    context,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
