import { join } from "node:path";
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startKbServer } from "../../examples/servers/kb.js";
import { connectClient, startDemoGateway, type DemoGateway } from "../e2e/harness.js";
import { chromiumAvailable, launchChromium, SCREENSHOT_DIR, type RunningBrowser } from "./browser.js";

/**
 * The console's Overview and Registry pages in Debian's headless chromium against the demo
 * (`npm start`) run in-process: an admin logs in and sees every server; the demo kb server then
 * changes a pinned tool's description (a rug pull) and the Registry page finds the drifted tool.
 */
describe.runIf(chromiumAvailable())("admin console: Overview and Registry in a real browser", () => {
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

  async function login(agent: string) {
    await page.goto(`${gw.dev.adminUrl}/console`);
    await page.getByLabel("Admin token").fill(gw.token(agent));
    await page.getByRole("button", { name: "Log in" }).click();
  }

  async function listKbTools(agent: string): Promise<string[]> {
    const c = await connectClient(gw.dev.urls.kb!, gw.token(agent));
    try {
      await c.client
        .callTool({ name: "search_articles", arguments: { query: "refund" } })
        .catch(() => undefined);
      return (await c.client.listTools()).tools.map((t) => t.name);
    } finally {
      await c.close();
    }
  }

  it("an approver sees only Approvals", async () => {
    await login("release-manager");
    await page.locator("#page h2").filter({ hasText: "Approvals" }).waitFor();
    expect(await page.locator("#nav-list a").allTextContents()).toEqual(["Approvals"]);
    expect(await page.locator("#who").textContent()).toBe("release-manager (approver)");
    await page.getByRole("button", { name: "Log out" }).click();
  });

  it("an admin logs in and the Overview shows every server, healthy, with its traffic", async () => {
    expect(await listKbTools("research-bot")).toContain("search_articles");
    await login("platform-admin");
    const rows = page.locator("tr[data-server]");
    await rows.first().waitFor();
    expect(await rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute("data-server")))).toEqual([
      "kb",
      "tickets",
      "deploy",
    ]);
    const kb = page.locator('tr[data-server="kb"]');
    expect(await kb.textContent()).toContain("ok");
    expect(await kb.textContent()).toContain("closed");
    expect(await kb.locator("td.num").first().textContent()).not.toMatch(/^0\/min0 total/);
    expect(await page.locator("#nav-list a").allTextContents()).toEqual([
      "Overview",
      "Registry",
      "Access",
      "Audit",
      "Approvals",
      "Budgets",
    ]);
    expect(await page.locator('#nav-list a[aria-current="page"]').textContent()).toBe("Overview");
    // The rates are this process's; the demo's memory store shares nothing between replicas.
    const scope = await page.locator("#overview-scope").textContent();
    expect(scope).toContain("Requests, denied and errors are this replica's");
    expect(scope).toContain("The state store is memory: nothing is counted across replicas");
    expect(await page.locator("thead th").allTextContents()).toContain("Requests (this replica)");
    await shot("overview");
  });

  it("finds a drifted tool: the demo kb server changes search_articles' description", async () => {
    const port = gw.dev.servers.kb.port;
    await gw.dev.servers.kb.close();
    gw.dev.servers.kb = await startKbServer(port, "127.0.0.1", { rugPull: true });
    // The gateway compares what the server lists with the pin and drops the changed tool.
    expect(await listKbTools("research-bot")).not.toContain("search_articles");

    // Keyboard only: Tab to the Registry link in the navigation and follow it.
    const registryLink = page.getByRole("link", { name: "Registry" });
    await registryLink.focus();
    await page.keyboard.press("Enter");
    const row = page.locator('tr[data-tool="kb/search_articles"]');
    await row.waitFor();
    expect(await row.textContent()).toContain("drifted: description changed");
    expect(await page.locator('tr[data-tool="kb/get_article"]').textContent()).toContain("matches pin");
    await shot("registry");

    await page.getByLabel("Show").selectOption("drifted");
    expect(
      await page.locator("tr[data-tool]").evaluateAll((trs) => trs.map((t) => t.getAttribute("data-tool"))),
    ).toEqual(["kb/search_articles"]);
    expect(await page.locator("#page h3").allTextContents()).toEqual([
      "kb owner docs-team",
      "Running registry vs. the file on disk",
    ]);
    await shot("registry-drifted");

    await page.getByRole("link", { name: "Overview" }).click();
    const alert = page.locator('tr[data-drift="kb/search_articles"]');
    await alert.waitFor();
    expect(await alert.textContent()).toContain("description");
    expect(await page.locator('tr[data-server="kb"]').textContent()).toContain("degraded");
    await shot("overview-drift");
  });
});
