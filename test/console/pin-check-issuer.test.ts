import { join } from "node:path";
import type { Page } from "playwright-core";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEV_ISSUER, ensureDevKeys, signDevToken } from "../../ext-service/src/config/devkeys.js";
import type { PinCheckReport } from "../../ext-service/src/console/pin-check.js";
import { startKbServer } from "../../examples/servers/kb.js";
import type { RunningServer } from "../../examples/servers/http.js";
import { connectClient, ECHO_TOOL, startGateway, tempDir, unusedPort, type Gateway } from "../e2e/harness.js";
import { KB, startConsoleAdmin } from "./support.js";
import { chromiumAvailable, launchChromium, SCREENSHOT_DIR, type RunningBrowser } from "./browser.js";

/** A second trusted issuer whose tokens' roles count (a partner IdP). */
const PARTNER = "https://partner.example";
const SECRET_ENV = "CONSOLE_PIN_CHECK_EXCHANGE_SECRET";

/**
 * Two console gaps of issue 20, over real HTTP and in Debian's headless chromium: "check pins
 * now" on the Registry page (each server's tools/list fetched by the data planes' pin check, a
 * rug pull found at once, an unreachable server and a token-exchange server reported as such), and
 * the issuer in the Access page's "may this agent call this tool?" box (an agent is an issuer and
 * a subject: the same name from another issuer gets other roles).
 */
describe("console: check pins now, and the explain box's issuer", () => {
  let kb: RunningServer;
  let gw: Gateway;
  let adminUrl: string;
  let closeAdmin: () => Promise<void>;
  let keys: Awaited<ReturnType<typeof ensureDevKeys>>;
  const tmp = tempDir("mcp-gw-console-keys-");
  const token = (subject: string, issuer = DEV_ISSUER, roles?: string[]) =>
    signDevToken(keys.privateJwk, { subject, issuer, ...(roles ? { roles } : {}) });

  beforeAll(async () => {
    process.env[SECRET_ENV] = "a-client-secret-of-at-least-some-length";
    keys = await ensureDevKeys(tmp.dir);
    kb = await startKbServer(0, "127.0.0.1");
    const issuer = (name: string, trustTokenRoles: boolean) => ({
      issuer: name,
      audiences: ["mcp-gateway"],
      jwks: { file: keys.jwksFile },
      algorithms: ["ES256"],
      trustTokenRoles,
    });
    gw = await startGateway({
      servers: [
        { name: "kb", upstreams: [kb.url], tools: KB.tools },
        // Nothing listens there: its check fails with the connection refused.
        { name: "down", upstreams: [`http://127.0.0.1:${await unusedPort()}/mcp`], tools: [ECHO_TOOL] },
        {
          name: "exchanged",
          upstreams: [kb.url],
          upstream: {
            tokenExchange: {
              tokenEndpoint: `http://127.0.0.1:${await unusedPort()}/token`,
              clientId: "gateway",
              clientSecret: `\${env:${SECRET_ENV}}`,
              audience: "kb",
            },
          },
          tools: [{ ...ECHO_TOOL, name: "exchanged_echo" }],
        },
      ],
      roles: {
        reader: { rules: [{ effect: "allow", tools: ["kb/*"] }] },
        approver: { rules: [] },
        admin: { rules: [] },
      },
      agents: {
        alice: { issuer: DEV_ISSUER, roles: ["reader"] },
        boss: { issuer: DEV_ISSUER, roles: ["admin"] },
        carol: { issuer: DEV_ISSUER, roles: ["approver"] },
      },
      config: {
        auth: { mode: "required", issuers: [issuer(DEV_ISSUER, false), issuer(PARTNER, true)] },
        approvals: { approvers: [{ roles: ["approver"] }] },
      },
    });
    const admin = await startConsoleAdmin(gw, { approvalsApi: true, assets: true });
    adminUrl = admin.url;
    closeAdmin = admin.close;
  });
  afterAll(async () => {
    await closeAdmin?.();
    await gw?.close();
    await kb?.close();
    tmp.remove();
    delete process.env[SECRET_ENV];
  });

  async function post(
    path: string,
    body: string,
    auth: string | undefined,
    headers: Record<string, string> = {},
  ) {
    const res = await request(`${adminUrl}/console/api/${path}`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        ...(auth ? { authorization: `Bearer ${auth}` } : {}),
        ...headers,
      },
      body,
    });
    return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown> };
  }

  async function searchAsAlice(): Promise<unknown> {
    const c = await connectClient(gw.url("kb"), await token("alice"));
    try {
      return await c.client
        .callTool({ name: "search_articles", arguments: { query: "vpn" } })
        .catch((err: unknown) => err);
    } finally {
      await c.close();
    }
  }

  describe("POST /console/api/registry/check", () => {
    it("checks every server: kb matches, the unreachable one fails, the token-exchange one is skipped", async () => {
      const { status, body } = await post("registry/check", "{}", await token("boss"));
      expect(status).toBe(200);
      const report = body as unknown as PinCheckReport;
      expect(report.pins_enforced).toBe(true);
      const by = Object.fromEntries(report.servers.map((s) => [s.server, s]));
      expect(by.kb).toMatchObject({
        result: "matches",
        upstream: kb.url,
        listed: 2,
        drifted: [],
        unlisted: [],
      });
      expect(by.down!.result).toBe("failed");
      expect(by.down!.cause).toContain("ECONNREFUSED");
      expect(by.exchanged).toMatchObject({ result: "skipped", upstream: null });
      expect(by.exchanged!.cause).toContain("upstream.tokenExchange");
      // Recorded as the data planes record it: the Registry page now vouches for kb's tools.
      const registry = await request(`${adminUrl}/console/api/registry`, {
        headers: { authorization: `Bearer ${await token("boss")}` },
      });
      const tools = ((await registry.body.json()) as { servers: { tools: { live: { state: string } }[] }[] })
        .servers[0]!.tools;
      expect(tools.map((t) => t.live.state)).toEqual(["verified", "verified"]);
      const logged = gw.log.lines.find((l) => l.msg === "console pin check");
      expect(logged).toMatchObject({ admin: "boss" });
    });

    it("checks only the servers named", async () => {
      const { status, body } = await post("registry/check", '{"servers": ["kb"]}', await token("boss"));
      expect(status).toBe(200);
      expect((body as unknown as PinCheckReport).servers.map((s) => s.server)).toEqual(["kb"]);
      const unknown = await post("registry/check", '{"servers": ["nope"]}', await token("boss"));
      expect(unknown).toMatchObject({ status: 400 });
      expect(JSON.stringify(unknown.body)).toContain("Not a registered server: nope");
    });

    it("is for admins, same-origin JSON POSTs only", async () => {
      expect((await post("registry/check", "{}", undefined)).status).toBe(401);
      expect((await post("registry/check", "{}", await token("carol"))).status).toBe(403);
      const boss = await token("boss");
      expect((await post("registry/check", "{}", boss, { origin: "https://evil.example" })).status).toBe(403);
      expect((await post("registry/check", "{}", boss, { "sec-fetch-site": "cross-site" })).status).toBe(403);
      // What a cross-site <form> can send without a preflight.
      expect((await post("registry/check", "{}", boss, { "content-type": "text/plain" })).status).toBe(415);
      expect(
        (await post("registry/check", "a=b", boss, { "content-type": "application/x-www-form-urlencoded" }))
          .status,
      ).toBe(415);
      const get = await request(`${adminUrl}/console/api/registry/check`, {
        headers: { authorization: `Bearer ${boss}` },
      });
      expect(get.statusCode).toBe(405);
      await get.body.dump();
      expect((await post("registry/check", "[]", boss)).status).toBe(400);
      expect((await post("registry/check", '{"server": "kb"}', boss)).status).toBe(400);
    });
  });

  describe("POST /console/api/explain with an issuer", () => {
    const ask = async (question: Record<string, unknown>) =>
      post("explain", JSON.stringify(question), await token("boss"));

    it("an agent is its issuer and subject: another issuer's alice gets only its token roles", async () => {
      const base = { agent: "alice", server: "kb", tool: "search_articles", arguments: { query: "vpn" } };
      expect((await ask(base)).body).toMatchObject({
        decision: "allow",
        issuer: DEV_ISSUER,
        roles: ["reader"],
      });
      expect((await ask({ ...base, issuer: DEV_ISSUER })).body).toMatchObject({ decision: "allow" });
      // The partner IdP's alice is someone else: none of the configured roles.
      expect((await ask({ ...base, issuer: PARTNER })).body).toMatchObject({
        decision: "deny",
        issuer: PARTNER,
        roles: [],
      });
      // The partner's tokens carry roles that count (trustTokenRoles); the dev issuer's do not.
      expect((await ask({ ...base, issuer: PARTNER, roles: ["reader"] })).body).toMatchObject({
        decision: "allow",
        roles: ["reader"],
      });
      expect(
        (await ask({ ...base, agent: "dave", issuer: DEV_ISSUER, roles: ["reader"] })).body,
      ).toMatchObject({ decision: "deny", roles: [] });
    });

    it("refuses an issuer the gateway does not trust: its tokens never reach a rule", async () => {
      const { status, body } = await ask({
        agent: "alice",
        server: "kb",
        tool: "search_articles",
        issuer: "https://evil.example",
      });
      expect(status).toBe(400);
      expect(JSON.stringify(body)).toContain("jwt_issuer_unknown");
    });

    it("the Access page lists the issuers for the box", async () => {
      const res = await request(`${adminUrl}/console/api/access`, {
        headers: { authorization: `Bearer ${await token("boss")}` },
      });
      expect(((await res.body.json()) as { issuers: unknown }).issuers).toEqual([
        { issuer: DEV_ISSUER, trust_token_roles: false },
        { issuer: PARTNER, trust_token_roles: true },
      ]);
    });
  });

  describe.runIf(chromiumAvailable())("in a real browser", () => {
    let browser: RunningBrowser;
    let page: Page;
    const shot = (name: string) =>
      page.screenshot({ path: join(SCREENSHOT_DIR, `${name}.png`), fullPage: true });

    beforeAll(async () => {
      browser = await launchChromium();
      page = await browser.context.newPage();
      await page.goto(`${adminUrl}/console`);
      await page.getByLabel("Admin token").fill(await token("boss"));
      await page.getByRole("button", { name: "Log in" }).click();
      await page.getByRole("link", { name: "Registry" }).waitFor();
    });
    afterAll(async () => {
      await browser?.close();
    });

    it("'Check pins now' shows each server's result, then finds a rug pull at once", async () => {
      await page.getByRole("link", { name: "Registry" }).click();
      await page.locator('tr[data-tool="kb/search_articles"]').waitFor();
      await page.getByRole("button", { name: "Check pins now" }).click();
      const row = (server: string) => page.locator(`tr[data-check="${server}"]`);
      await row("kb").waitFor();
      expect(await row("kb").textContent()).toContain("matches");
      expect(await row("down").textContent()).toContain("cannot list");
      expect(await row("down").textContent()).toContain("ECONNREFUSED");
      expect(await row("exchanged").textContent()).toContain("not checked");
      expect(await page.locator('tr[data-tool="kb/get_article"]').textContent()).toContain("matches pin");
      // The result took the focus, so a keyboard or screen reader user lands on it.
      expect(await page.locator(":focus").getAttribute("id")).toBe("pin-check-title");
      expect(await page.locator("#status").textContent()).toMatch(/^Pins checked at /);
      await shot("registry-check");

      // The kb server changes search_articles' description (a rug pull); no agent has listed it.
      const port = Number(new URL(kb.url).port);
      await kb.close();
      kb = await startKbServer(port, "127.0.0.1", { rugPull: true });
      // By keyboard: focus the button and press Enter.
      await page.getByRole("button", { name: "Check pins now" }).focus();
      await page.keyboard.press("Enter");
      await expect.poll(() => row("kb").textContent()).toContain("drifted");
      expect(await row("kb").textContent()).toContain("search_articles: description changed");
      expect(await page.locator('tr[data-tool="kb/search_articles"]').textContent()).toContain(
        "drifted: description changed",
      );
      await shot("registry-check-drift");
      // Recorded exactly as the data planes record it: the agent's call is refused now.
      const refused = await searchAsAlice();
      expect(refused).toBeInstanceOf(Error);
      expect(String(refused)).toContain("definition changed since it was approved");
    });

    it("asks about the same agent name from another issuer, by keyboard", async () => {
      await page.getByRole("link", { name: "Access" }).click();
      const agent = page.getByLabel("Agent", { exact: true });
      await agent.waitFor();
      await agent.fill("alice");
      await page.getByLabel("Tool", { exact: true }).selectOption("kb/get_article");
      await page.getByLabel("Arguments (JSON object)").fill('{"id": "kb-101"}');
      const issuer = page.getByLabel("Issuer", { exact: true });
      expect(await issuer.locator("option").first().textContent()).toBe(
        `${DEV_ISSUER} (the agent's configured issuer)`,
      );
      await page.getByRole("button", { name: "Ask" }).click();
      await expect.poll(() => page.locator("#explain-decision").textContent()).toBe("ALLOW");
      expect(await page.locator("#explain-identity").textContent()).toContain(`Issuer: ${DEV_ISSUER}.`);

      // Focus order: agent, issuer, tool. Choose the partner issuer with the arrow keys.
      await agent.focus();
      await page.keyboard.press("Tab");
      expect(await page.locator(":focus").getAttribute("id")).toBe("explain-issuer");
      await page.keyboard.press("ArrowDown");
      await page.keyboard.press("ArrowDown");
      expect(await issuer.inputValue()).toBe(PARTNER);
      await page.keyboard.press("Tab");
      expect(await page.locator(":focus").getAttribute("id")).toBe("explain-tool");
      await page.getByLabel("Token roles (comma-separated, optional)").press("Enter");
      await expect.poll(() => page.locator("#explain-decision").textContent()).toBe("DENY");
      expect(await page.locator("#explain-identity").textContent()).toContain(
        `Issuer: ${PARTNER}. Roles: (none)`,
      );

      // The partner's token roles count.
      const roles = page.getByLabel("Token roles (comma-separated, optional)");
      await roles.fill("reader");
      await roles.press("Enter");
      await expect.poll(() => page.locator("#explain-decision").textContent()).toBe("ALLOW");
      expect(await page.locator("#explain-identity").textContent()).toContain(
        `Issuer: ${PARTNER}. Roles: reader`,
      );
      await page.locator("#explain-form").scrollIntoViewIfNeeded();
      await shot("access-explain-issuer");

      // A subject gateway.yaml does not name: the default option says to pick its issuer.
      await agent.fill("someone-else");
      expect(await issuer.locator("option").first().textContent()).toContain("agent not in gateway.yaml");
    });
  });
});
