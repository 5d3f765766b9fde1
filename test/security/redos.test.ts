import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import { describe, expect, it } from "vitest";

/**
 * Catastrophic backtracking guard: every scanner regex and every scanner, over adversarial
 * 100k-character inputs, in a worker thread. The assertion is about behaviour (the worker
 * finishes and reports every run); the generous timeout only turns a hang into a failure.
 */
describe("scanners on adversarial input", () => {
  it("finish on 100k-character adversarial strings for every pattern", async () => {
    // The worker runs TypeScript through tsx's loader, registered before the module is imported.
    const tsxApi = join(
      dirname(createRequire(import.meta.url).resolve("tsx/package.json")),
      "dist/esm/api/index.mjs",
    );
    const target = new URL("./redos-worker.ts", import.meta.url).href;
    const bootstrap =
      `const { register } = await import(${JSON.stringify(pathToFileURL(tsxApi).href)}); register();` +
      `await import(${JSON.stringify(target)});`;
    const worker = new Worker(new URL(`data:text/javascript,${encodeURIComponent(bootstrap)}`));
    const result = await new Promise<{ done: boolean; runs: number; units: number; patterns: number }>(
      (resolve, reject) => {
        const timer = setTimeout(() => {
          void worker.terminate();
          reject(new Error("scanners did not finish on adversarial input (catastrophic backtracking?)"));
        }, 120_000);
        worker.once("message", (m) => {
          clearTimeout(timer);
          resolve(m);
        });
        worker.once("error", (err) => {
          clearTimeout(timer);
          reject(err);
        });
      },
    );
    await worker.terminate();
    expect(result.done).toBe(true);
    expect(result.patterns).toBeGreaterThan(40);
    expect(result.runs).toBe(result.units * (result.patterns + 3));
  }, 150_000);
});
