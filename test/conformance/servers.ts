import { startServer2025, type RunningServer } from "./server-2025.js";
import { startServer2026, type Server2026Options } from "./server-2026.js";

export const REVISIONS = ["2025-11-25", "2026-07-28"] as const;
export type Revision = (typeof REVISIONS)[number];

export function isRevision(value: string): value is Revision {
  return (REVISIONS as readonly string[]).includes(value);
}

export type { RunningServer };

export async function startConformanceServer(
  revision: Revision,
  port = 0,
  legacy?: Server2026Options["legacy"],
): Promise<RunningServer> {
  return revision === "2025-11-25" ? startServer2025(port) : startServer2026({ port, legacy });
}
