import { startDeployServer } from "./deploy.js";
import type { RunningServer } from "./http.js";
import { startKbServer } from "./kb.js";
import { startTicketsServer } from "./tickets.js";

export { startKbServer } from "./kb.js";
export { startTicketsServer } from "./tickets.js";
export { startDeployServer } from "./deploy.js";
export type { RunningServer } from "./http.js";

/** The demo servers, by registry name, with their default ports (see registry/registry.yaml). */
export const DEMO_SERVERS = {
  kb: { port: 3101, start: startKbServer },
  tickets: { port: 3102, start: startTicketsServer },
  deploy: { port: 3103, start: startDeployServer },
} as const;

export type DemoServerName = keyof typeof DEMO_SERVERS;

/**
 * Starts the three demo servers. `ports` overrides the defaults (0 = any free port). If one
 * fails to start, the others are closed again.
 */
export async function startDemoServers(
  ports: Partial<Record<DemoServerName, number>> = {},
  host = "127.0.0.1",
): Promise<Record<DemoServerName, RunningServer>> {
  const names = Object.keys(DEMO_SERVERS) as DemoServerName[];
  const results = await Promise.allSettled(
    names.map((n) => DEMO_SERVERS[n].start(ports[n] ?? DEMO_SERVERS[n].port, host)),
  );
  const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) {
    await Promise.allSettled(
      results.map((r) => (r.status === "fulfilled" ? r.value.close() : Promise.resolve())),
    );
    throw failed.reason;
  }
  const started = results.map((r) => (r as PromiseFulfilledResult<RunningServer>).value);
  return Object.fromEntries(names.map((n, i) => [n, started[i]!])) as Record<DemoServerName, RunningServer>;
}
