import { afterAll, beforeAll, expect, it } from "vitest";
import { runCli } from "../config/cli-capture.js";
import { prepareGatewayConfig, type GatewayConfig } from "./gateway.js";
import { startConformanceServer, type RunningServer } from "./servers.js";

/**
 * The gateway drops tools whose live definition differs from its pin, which would show up in the conformance
 * comparison as failures of the gateway. This keeps the fixture honest on its own: `registry pin` (which reads
 * tools/list over the 2026-07-28 wire first, else the 2025 wire) finds nothing to change.
 */
let servers: RunningServer[] = [];
let config: GatewayConfig;

beforeAll(async () => {
  servers = [await startConformanceServer("2025-11-25"), await startConformanceServer("2026-07-28")];
  config = await prepareGatewayConfig({ "2025-11-25": servers[0]!.url, "2026-07-28": servers[1]!.url });
});

afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
  config?.remove();
});

it("the registry fixture pins exactly the tools the conformance servers list", async () => {
  const run = await runCli(["registry", "pin", "--config", config.configFile]);
  expect(run.stdout).toMatch(/conformance-2025 .*: 0 new, 0 changed, 0 removed, 0 unpinned, 13 unchanged/);
  expect(run.stdout).toMatch(/conformance-2026 .*: 0 new, 0 changed, 0 removed, 0 unpinned, 23 unchanged/);
  expect(run.code, run.stdout + run.stderr).toBe(0);
});
