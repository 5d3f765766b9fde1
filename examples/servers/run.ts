/**
 * Runs one demo MCP server as its own process (one container each in docker-compose.yml):
 *   node dist/examples/servers/run.js <kb|tickets|deploy>
 * HOST (default 127.0.0.1) and PORT (default: the server's demo port; 0 picks a free one) come
 * from the environment. SIGTERM/SIGINT close it cleanly.
 */
import { DEMO_SERVERS, type DemoServerName } from "./index.js";

async function main(): Promise<number> {
  const name = process.argv[2];
  if (!name || !(name in DEMO_SERVERS)) {
    process.stderr.write(`usage: run.js <${Object.keys(DEMO_SERVERS).join("|")}>  (env: HOST, PORT)\n`);
    return 2;
  }
  const demo = DEMO_SERVERS[name as DemoServerName];
  const host = process.env.HOST || "127.0.0.1";
  const port =
    process.env.PORT === undefined || process.env.PORT === "" ? demo.port : Number(process.env.PORT);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    process.stderr.write(`PORT must be an integer 0-65535, got '${process.env.PORT}'\n`);
    return 2;
  }
  const server = await demo.start(port, host);
  process.stdout.write(`demo MCP server '${name}' listening on ${server.url}\n`);
  await new Promise<void>((resolve) => {
    process.once("SIGTERM", resolve);
    process.once("SIGINT", resolve);
  });
  await server.close();
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`demo server failed: ${(err as Error).message}\n`);
    process.exitCode = 1;
  },
);
