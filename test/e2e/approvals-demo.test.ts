import { McpError } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ADMIN_TOKEN_ENV } from "../../ext-service/src/commands/approvals.js";
import { devBanner } from "../../ext-service/src/commands/dev.js";
import { runCli } from "../config/cli-capture.js";
import { connectClient, startDemoGateway, type DemoGateway } from "./harness.js";

/** The demo (`npm start`) holds ops-bot's production deploy and prints how to approve it. */
describe("npm start: a held production deploy, approved as the banner says", () => {
  let gw: DemoGateway;
  beforeAll(async () => {
    gw = await startDemoGateway();
  });
  afterAll(async () => {
    await gw?.close();
  });

  it("holds deploy_service(environment: production) and lets the identical retry through once approved", async () => {
    const banner = devBanner(gw.dev);
    expect(banner).toContain(`approvals approve <approval id> --url ${gw.dev.adminUrl}`);
    expect(banner).toContain(`export ${ADMIN_TOKEN_ENV}='${gw.token("release-manager")}'`);

    const args = { service: "billing", version: "2.6.0", environment: "production" };
    const call = async () => {
      const c = await connectClient(gw.dev.urls.deploy!, gw.token("ops-bot"));
      try {
        return await c.client.callTool({ name: "deploy_service", arguments: args });
      } finally {
        await c.close();
      }
    };
    const held = await call().then(
      () => undefined,
      (err: unknown) => err as McpError,
    );
    expect(held).toBeInstanceOf(McpError);
    const id = (held!.data as { approval_id: string }).approval_id;
    expect(held!.message).toContain(`mcp-gateway approvals approve ${id}`);

    process.env[ADMIN_TOKEN_ENV] = gw.token("release-manager");
    try {
      const listed = await runCli(["approvals", "list", "--url", gw.dev.adminUrl]);
      expect(listed.code).toBe(0);
      expect(listed.stdout).toContain(`${id}  pending   ops-bot -> deploy/deploy_service`);
      const approved = await runCli(["approvals", "approve", id, "--url", gw.dev.adminUrl]);
      expect(approved).toMatchObject({ code: 0, stderr: "" });
    } finally {
      delete process.env[ADMIN_TOKEN_ENV];
    }
    const done = await call();
    expect(JSON.stringify(done.content)).toContain("Deployed billing@2.6.0 to production");
  });
});
