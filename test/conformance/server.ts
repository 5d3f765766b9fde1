/**
 * Runs a conformance server by hand: `npx tsx test/conformance/server.ts <revision> [port] [--legacy-stateless]`.
 * `--legacy-stateless` lets the 2026-07-28 server also answer the 2025 wire (for 2025-era clients; the tests run it
 * strictly 2026-07-28). The tests start the same servers in process.
 */
import { isRevision, startConformanceServer } from "./servers.js";

const args = process.argv.slice(2);
const [revision, port] = args.filter((a) => !a.startsWith("--"));
if (!revision || !isRevision(revision)) {
  process.stderr.write(
    "usage: tsx test/conformance/server.ts 2025-11-25|2026-07-28 [port] [--legacy-stateless]\n",
  );
  process.exit(2);
}
const legacy = args.includes("--legacy-stateless") ? "stateless" : "reject";
const server = await startConformanceServer(revision, Number(port ?? 0), legacy);
process.stdout.write(`${server.url}\n`);
const stop = (): void => {
  void server.close().then(() => process.exit(0));
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
