import { join } from "node:path";
import { McpError } from "@modelcontextprotocol/sdk/types.js";
import type { Page } from "playwright-core";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { devBanner } from "../../ext-service/src/commands/dev.js";
import { CONSOLE_CSP } from "../../ext-service/src/console/routes.js";
import { connectClient, startDemoGateway, type DemoGateway } from "../e2e/harness.js";
import { chromiumAvailable, launchChromium, SCREENSHOT_DIR, type RunningBrowser } from "./browser.js";

/**
 * The admin console (issue 20) in Debian's headless chromium against the demo (`npm start`) run
 * in-process: log in with a pasted token, approve ops-bot's held production deploy and see the
 * agent's identical retry go through.
 */
describe.runIf(chromiumAvailable())("admin console in a real browser", () => {
  let gw: DemoGateway;
  let browser: RunningBrowser;
  let page: Page;

  beforeAll(async () => {
    gw = await startDemoGateway();
    browser = await launchChromium();
    page = await browser.context.newPage();
  });
  afterAll(async () => {
    await browser?.close();
    await gw?.close();
  });

  const shot = (name: string) =>
    page.screenshot({ path: join(SCREENSHOT_DIR, `${name}.png`), fullPage: true });

  async function deploy(version: string) {
    const c = await connectClient(gw.dev.urls.deploy!, gw.token("ops-bot"));
    try {
      return await c.client.callTool({
        name: "deploy_service",
        arguments: { service: "billing", version, environment: "production" },
      });
    } finally {
      await c.close();
    }
  }

  async function login(token: string) {
    await page.goto(`${gw.dev.adminUrl}/console`);
    await page.getByLabel("Admin token").fill(token);
    await page.getByRole("button", { name: "Log in" }).click();
  }

  it("npm start's banner prints the console URL and a token that logs in", () => {
    const banner = devBanner(gw.dev);
    expect(banner).toContain(`open ${gw.dev.adminUrl}/console and paste this token (platform-admin):`);
    expect(banner).toContain(`  ${gw.token("platform-admin")}\n`);
  });

  it("serves the page with a strict CSP and no cookies", async () => {
    const res = await request(`${gw.dev.adminUrl}/console`);
    expect(res.statusCode).toBe(200);
    expect(res.headers["content-security-policy"]).toBe(CONSOLE_CSP);
    expect(res.headers["set-cookie"]).toBeUndefined();
    expect(await res.body.text()).toContain('<label for="token">Admin token</label>');
    for (const module of ["app.js", "shared.js", "pages/approvals.js"]) {
      const js = await request(`${gw.dev.adminUrl}/console/${module}`);
      expect(js.statusCode, module).toBe(200);
      expect(js.headers["content-type"]).toBe("text/javascript; charset=utf-8");
      expect(js.headers["content-security-policy"]).toBe(CONSOLE_CSP);
      await js.body.dump();
    }
    const missing = await request(`${gw.dev.adminUrl}/console/pages/../../package.json`);
    expect(missing.statusCode).toBe(404);
    await missing.body.dump();
  });

  it("refuses a wrong token at the login form", async () => {
    await login("not-a-token");
    await expect.poll(() => page.locator("#status").textContent()).toContain("not valid");
    expect(await page.locator("#login").isVisible()).toBe(true);
    await shot("login-refused");
  });

  it("approves a held call; the agent's identical retry goes through", async () => {
    const held = await deploy("2.7.0").then(
      () => undefined,
      (err: unknown) => err as McpError,
    );
    expect(held).toBeInstanceOf(McpError);
    const id = (held!.data as { approval_id: string }).approval_id;

    await login(gw.token("release-manager"));
    const row = page.locator(`tr[data-approval="${id}"]`);
    await row.waitFor();
    expect(await row.textContent()).toContain("deploy/deploy_service");
    expect(await row.textContent()).toContain("ops-bot");
    expect(await row.textContent()).toContain('"environment": "production"');
    await shot("approvals-pending");

    await row.getByLabel("Note").fill("release window");
    await row.getByRole("button", { name: "Approve deploy/deploy_service for ops-bot" }).click();
    await expect
      .poll(() => page.locator("#status").textContent())
      .toContain(`${id} approved by release-manager`);
    await page.getByLabel("Status").selectOption("approved");
    await expect
      .poll(() => page.locator(`tr[data-approval="${id}"]`).textContent())
      .toContain("approved by release-manager");
    await shot("approvals-approved");

    const done = await deploy("2.7.0");
    expect(JSON.stringify(done.content)).toContain("Deployed billing@2.7.0 to production");
  });

  it("logs out: the token leaves sessionStorage", async () => {
    await page.getByRole("button", { name: "Log out" }).click();
    const stored = await page.evaluate<string>("JSON.stringify({ ...sessionStorage })");
    expect(stored).not.toContain(gw.token("release-manager"));
    expect(await page.locator("#login").isVisible()).toBe(true);
  });
});
