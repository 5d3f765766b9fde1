import { join } from "node:path";
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectClient, startDemoGateway, type DemoGateway } from "../e2e/harness.js";
import { chromiumAvailable, launchChromium, SCREENSHOT_DIR, type RunningBrowser } from "./browser.js";

/**
 * The console's Audit, Access and Budgets pages (issue 20) in Debian's headless chromium against
 * the demo (`npm start`) run in-process, logged in with the platform-admin token the banner
 * prints: the demo agents make real MCP calls, and the pages must show what the gateway decided.
 */
describe.runIf(chromiumAvailable())("console pages in a real browser: audit, access, budgets", () => {
  let gw: DemoGateway;
  let browser: RunningBrowser;
  let page: Page;

  beforeAll(async () => {
    gw = await startDemoGateway();
    browser = await launchChromium();
    page = await browser.context.newPage();
    await page.goto(`${gw.dev.adminUrl}/console`);
    await page.getByLabel("Admin token").fill(gw.token("platform-admin"));
    await page.getByRole("button", { name: "Log in" }).click();
    await page.getByRole("link", { name: "Audit" }).waitFor();
  });
  afterAll(async () => {
    await browser?.close();
    await gw?.close();
  });

  const shot = (name: string) =>
    page.screenshot({ path: join(SCREENSHOT_DIR, `${name}.png`), fullPage: true });

  /** One tools/call as a demo agent; a refusal is returned, not thrown. */
  async function call(agent: string, server: string, name: string, args: Record<string, unknown>) {
    const c = await connectClient(gw.dev.urls[server]!, gw.token(agent));
    try {
      return await c.client.callTool({ name, arguments: args }).catch((err: unknown) => err as Error);
    } finally {
      await c.close();
    }
  }

  it("filters the audit log by agent, decision and reason", async () => {
    expect(await call("research-bot", "kb", "search_articles", { query: "vpn" })).not.toBeInstanceOf(Error);
    expect(await call("support-bot", "tickets", "list_tickets", {})).not.toBeInstanceOf(Error);
    expect(await call("support-bot", "tickets", "delete_ticket", { id: "T-1" })).toBeInstanceOf(Error);
    expect(await call("research-bot", "tickets", "create_ticket", { title: "x" })).toBeInstanceOf(Error);

    await page.getByRole("link", { name: "Audit" }).click();
    const rows = page.locator("tr[data-request]");
    await rows.first().waitFor();
    await shot("audit-all");

    await page.getByLabel("agent", { exact: true }).fill("support-bot");
    await page.getByLabel("decision", { exact: true }).fill("deny");
    await page.getByLabel("reason", { exact: true }).fill("tool_unknown");
    await page.getByRole("button", { name: "Filter" }).click();
    await expect.poll(() => page.locator("caption").first().textContent()).toMatch(/^1 matching/);
    const denied = await rows.allTextContents();
    expect(denied).toHaveLength(1);
    expect(denied[0]).toContain("support-bot");
    expect(denied[0]).toContain("delete_ticket");
    expect(denied[0]).toContain("deny");
    expect(denied[0]).toContain("tool_unknown");
    await shot("audit-filtered");

    await page.getByLabel("decision", { exact: true }).fill("allow");
    await page.getByLabel("reason", { exact: true }).fill("");
    await page.getByRole("button", { name: "Filter" }).click();
    await expect.poll(async () => (await rows.allTextContents()).join("\n")).toContain("list_tickets");
    for (const text of await rows.allTextContents()) {
      expect(text).toContain("support-bot");
      expect(text).not.toContain("delete_ticket");
    }
  });

  it("shows the rule behind each matrix cell", async () => {
    await page.getByRole("link", { name: "Access" }).click();
    const cell = (agent: string, tool: string) =>
      page.locator(`td[data-principal="${agent}"][data-tool="${tool}"]`);
    await cell("support-bot", "tickets/delete_ticket").waitFor();
    expect(await cell("support-bot", "tickets/delete_ticket").textContent()).toBe(
      "denyroles.support.rules[1]",
    );
    expect(await cell("support-bot", "tickets/list_tickets").textContent()).toBe(
      "allowroles.reader.rules[0]",
    );
    expect(await cell("research-bot", "deploy/deploy_service").textContent()).toBe("denyno rule names it");
    const release = await cell("release-bot", "deploy/deploy_service").textContent();
    expect(release).toContain("depends");
    expect(release).toContain("roles.deployer.rules[0]");
    const ops = await cell("ops-bot", "deploy/deploy_service").textContent();
    expect(ops).toContain("allow");
    expect(ops).toContain("approval: production-deploys");
    await shot("access-matrix");
  });

  it("answers 'may this agent call this tool?' with allow, and deny with the reason", async () => {
    await page.getByLabel("Agent", { exact: true }).fill("release-bot");
    await page.getByLabel("Tool", { exact: true }).selectOption("deploy/deploy_service");
    const args = page.getByLabel("Arguments (JSON object)");
    await args.fill('{"service": "billing", "version": "2.7.0", "environment": "staging"}');
    await page.getByRole("button", { name: "Ask" }).click();
    await expect.poll(() => page.locator("#explain-decision").textContent()).toBe("ALLOW");
    expect(await page.locator("#explain-answer").textContent()).toContain(
      "release-bot → deploy/deploy_service",
    );

    // By keyboard this time: Enter in a field of the form asks again.
    await args.fill('{"service": "billing", "version": "2.7.0", "environment": "production"}');
    await page.getByLabel("Token roles (comma-separated, optional)").press("Enter");
    await expect.poll(() => page.locator("#explain-decision").textContent()).toBe("DENY");
    const reason = await page.locator("#explain-reason").textContent();
    expect(reason).toContain("policy_denied");
    expect(reason).toContain("condition_false:roles.deployer.rules[0]");
    await page.locator("#explain-answer").scrollIntoViewIfNeeded();
    await shot("access-explain-deny");

    // The arguments were decided on, never written to the log.
    expect(JSON.stringify(gw.log.lines)).not.toContain("2.7.0");
  });

  it("shows the matrix by role", async () => {
    await page.getByLabel("Rows").selectOption("role");
    const cell = page.locator('td[data-principal="support"][data-tool="tickets/delete_ticket"]');
    await cell.waitFor();
    expect(await cell.textContent()).toBe("denyroles.support.rules[1]");
    expect(
      await page.locator('td[data-principal="operator"][data-tool="deploy/deploy_service"]').textContent(),
    ).toContain("approval: production-deploys");
    await shot("access-by-role");
    await page.getByLabel("Rows").selectOption("agent");
    await page.locator('td[data-principal="support-bot"]').first().waitFor();
  });

  it("shows each budget's use from the store", async () => {
    await page.getByRole("link", { name: "Budgets" }).click();
    const support = page.locator('section[data-budget="support-tickets-daily"]');
    await support.waitFor();
    // support-bot listed tickets once (the delete was refused, which costs nothing).
    expect(await support.locator('tr[data-whose="support-bot"]').textContent()).toContain("1 / 500");
    expect(await support.locator('tr[data-whose="support-bot"] meter').getAttribute("aria-label")).toBe(
      "support-bot: 1 of 500 calls",
    );
    const deploys = page.locator('section[data-budget="deploys-daily"]');
    expect(await deploys.locator('tr[data-whose="shared"]').textContent()).toContain("0 / 200");
    await shot("budgets");
  });
});
