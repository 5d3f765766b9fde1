import { spawn } from "node:child_process";
import { once } from "node:events";
import { describe, expect, it } from "vitest";
import { connectClient } from "./harness.js";

/** The per-container entry point of the demo servers (docker-compose.yml runs one per service). */
describe("examples/servers/run.ts", () => {
  it("serves one demo server on HOST/PORT and stops cleanly on SIGTERM", async () => {
    const child = spawn(process.execPath, ["--import", "tsx", "examples/servers/run.ts", "tickets"], {
      env: { ...process.env, HOST: "127.0.0.1", PORT: "0" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    const url = await new Promise<string>((resolve, reject) => {
      child.stdout.on("data", (d: Buffer) => {
        out += d.toString();
        const m = /listening on (http:\/\/\S+)/.exec(out);
        if (m) resolve(m[1]!);
      });
      child.once("exit", (code) => reject(new Error(`exited ${code}: ${out}`)));
    });
    const mcp = await connectClient(url, undefined);
    const { tools } = await mcp.client.listTools();
    expect(tools.map((t) => t.name)).toContain("create_ticket");
    await mcp.close();
    child.kill("SIGTERM");
    const [code] = await once(child, "exit");
    expect(code).toBe(0);
  });

  it("refuses an unknown server name with its usage and exit code 2", async () => {
    const child = spawn(process.execPath, ["--import", "tsx", "examples/servers/run.ts", "mail"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let err = "";
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    const [code] = await once(child, "exit");
    expect(code).toBe(2);
    expect(err).toContain("usage: run.js <kb|tickets|deploy>");
  });
});
