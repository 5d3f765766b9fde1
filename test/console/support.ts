import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { approvalsAdminApi } from "../../ext-service/src/approvals/admin-api.js";
import { consoleApi } from "../../ext-service/src/console/api.js";
import { consoleAssets } from "../../ext-service/src/console/routes.js";
import { adminBaseUrl, boundPort, startAdminServer } from "../../ext-service/src/telemetry/admin.js";
import type { Gateway } from "../e2e/harness.js";

/** registry/registry.yaml's kb server: its tools with their pins. */
export const KB = (
  parse(readFileSync(join(import.meta.dirname, "../../registry/registry.yaml"), "utf8")) as {
    servers: { name: string; tools: (Record<string, unknown> & { name: string; pin?: string })[] }[];
  }
).servers.find((s) => s.name === "kb")!;

/**
 * The admin port of `gw`'s edge with the console API on a free port, as `serve` and `edge` mount
 * it: with the approvals admin API (`approvalsApi`) and the console's pages (`assets`) when asked.
 * The approvals' notifications link to it.
 */
export async function startConsoleAdmin(
  gw: Gateway,
  options: { approvalsApi?: boolean; assets?: boolean } = {},
): Promise<{ url: string; close(): Promise<void> }> {
  const approvals = gw.edge.state.approvals;
  const admin = await startAdminServer(gw.metrics, { ready: () => true }, "127.0.0.1", 0, [
    ...(options.approvalsApi ? [approvalsAdminApi(() => gw.edge.engine, approvals, gw.log.logger)] : []),
    consoleApi({
      engine: () => gw.edge.engine,
      approvals,
      audit: gw.edge.audit,
      store: gw.edge.state.store,
      metrics: gw.metrics,
      upstreams: () => gw.edge.upstreamStatus(),
      logger: gw.log.logger,
    }),
    ...(options.assets ? [consoleAssets()] : []),
  ]);
  const url = adminBaseUrl("127.0.0.1", boundPort(admin));
  approvals.adminUrl = url;
  return { url, close: () => new Promise<void>((r) => admin.close(() => r())) };
}
