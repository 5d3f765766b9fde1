import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { SHIPPED_CHAIN, type LocalReplyFacts } from "../../ext-service/src/envoy/envoy-model.js";
import { chainFromEnvoyYaml } from "../../ext-service/src/envoy/envoy-model-config.js";

const ENVOY_YAML = fileURLToPath(new URL("../../envoy/envoy.yaml", import.meta.url));

/** Local replies to try every mapper with: Envoy's flags, statuses and code details. */
function probes(): LocalReplyFacts[] {
  const flags = [
    [],
    ["RL"],
    ["SI"],
    ["UT"],
    ["UH"],
    ["UF"],
    ["UO"],
    ["URX"],
    ["NC"],
    ["UAEX"],
    ["UC"],
    ["UR"],
  ];
  const statuses = [200, 401, 403, 408, 413, 429, 431, 500, 502, 503, 504];
  const details = [
    "",
    "request_payload_too_large",
    "response_payload_too_large",
    "ext_authz_denied",
    "http1.headers_too_large",
  ];
  const out: LocalReplyFacts[] = [];
  for (const f of flags)
    for (const status of statuses) for (const d of details) out.push({ status, flags: f, details: d });
  return out;
}

describe("the Envoy model's SHIPPED_CHAIN is envoy/envoy.yaml", () => {
  const fromFile = chainFromEnvoyYaml(ENVOY_YAML);

  it("every filter, listener and connection manager field the model uses", () => {
    const { localReplyMappers: _a, rateLimit: _b, ...shipped } = SHIPPED_CHAIN;
    const { localReplyMappers: _c, ...read } = fromFile;
    expect(shipped).toEqual(read);
  });

  it("local_reply_config: the same mapper answers every probe with the same status and body", () => {
    const headers = { "x-mcp-request-id": "rid-1" };
    const answer = (mappers: typeof SHIPPED_CHAIN.localReplyMappers, facts: LocalReplyFacts) => {
      const m = mappers.find((x) => x.matches(facts));
      return m ? { status: m.status ?? facts.status, body: m.format?.(headers) } : undefined;
    };
    expect(fromFile.localReplyMappers!.length).toBe(SHIPPED_CHAIN.localReplyMappers.length);
    for (const facts of probes()) {
      expect(answer(SHIPPED_CHAIN.localReplyMappers, facts), JSON.stringify(facts)).toEqual(
        answer(fromFile.localReplyMappers!, facts),
      );
    }
  });

  it("refuses what it cannot model instead of guessing", () => {
    expect(() => chainFromEnvoyYaml(ENVOY_YAML, "no_such_listener")).toThrow(/no listener/);
  });
});
