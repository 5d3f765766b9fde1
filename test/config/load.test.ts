import { describe, expect, it } from "vitest";
import {
  ConfigError,
  formatProblem,
  parseGatewayConfig,
  parseRegistry,
} from "../../ext-service/src/config/load.js";
import { durationMs } from "../../ext-service/src/config/schema.js";
import { resourceMetadataUrl } from "../../ext-service/src/policy/routing.js";

function problems(text: string, parse: (t: string) => unknown = parseGatewayConfig) {
  try {
    parse(text);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error("expected a ConfigError");
}

const lines = (text: string, parse?: (t: string) => unknown) => problems(text, parse).map(formatProblem);

describe("gateway.yaml loading", () => {
  it("names a misspelled key at the key itself, with a suggestion", () => {
    const found = problems("registry: r.yaml\nauth:\n  mode: optional\n  moed: required\n");
    expect(found).toEqual([
      {
        file: "gateway.yaml",
        path: "auth",
        line: 4,
        column: 3,
        message: "unknown key 'moed' (did you mean 'mode'?)",
      },
    ]);
  });

  it("reports each unknown key separately; no suggestion when nothing is close", () => {
    expect(
      lines("registry: r\nauth: {mode: optional}\nfoo: 1\nlisten:\n  edge: {prot: 1, xyzzy: 2}\n"),
    ).toEqual([
      "gateway.yaml:3:1: (root): unknown key 'foo'",
      "gateway.yaml:5:10: listen.edge: unknown key 'prot' (did you mean 'port'?)",
      "gateway.yaml:5:19: listen.edge: unknown key 'xyzzy'",
    ]);
  });

  it("requires an issuer when auth is required (the default mode)", () => {
    expect(lines("registry: r.yaml\nauth: {}\n")).toEqual([
      "gateway.yaml:2:7: auth.issuers: mode 'required' needs at least one issuer",
    ]);
  });

  it("refuses an unprefixed broker view of more than one server (names could collide)", () => {
    expect(
      lines(
        "registry: r\nauth: {mode: optional}\nbroker:\n  views:\n    both: {servers: [a, b], prefix: false}\n    one: {servers: [a], prefix: false}\n",
      ),
    ).toEqual([
      "gateway.yaml:5:37: broker.views.both.prefix: prefix: false needs exactly one server in the view",
    ]);
  });

  it("says a required key is missing", () => {
    expect(lines("auth: {mode: optional}\n")).toEqual([
      "gateway.yaml:1:1: registry: required (expected string)",
    ]);
  });

  it("locates YAML syntax errors", () => {
    expect(lines("registry: r\nauth:\n  mode: [optional\n")[0]).toMatch(
      /^gateway\.yaml:\d+:\d+: \(root\): YAML: /,
    );
    expect(lines("registry: r\nregistry: s\n")).toEqual([
      "gateway.yaml:2:1: (root): YAML: Map keys must be unique",
    ]);
  });

  it("refuses a document that is not a mapping", () => {
    expect(lines("- a\n- b\n")).toEqual(["gateway.yaml:1:1: (root): expected object, received array"]);
  });

  it("refuses YAML alias bombs", () => {
    const bomb = ["a: &a [x, x, x, x, x, x, x, x, x, x]"];
    for (let i = 0; i < 8; i++)
      bomb.push(
        `${"bcdefghij"[i]}: &${"bcdefghij"[i]} [*${"abcdefghij"[i]}, *${"abcdefghij"[i]}, *${"abcdefghij"[i]}, *${"abcdefghij"[i]}, *${"abcdefghij"[i]}, *${"abcdefghij"[i]}, *${"abcdefghij"[i]}, *${"abcdefghij"[i]}, *${"abcdefghij"[i]}, *${"abcdefghij"[i]}]`,
      );
    const found = lines(bomb.join("\n") + "\n");
    expect(found).toHaveLength(1);
    expect(found[0]).toMatch(/^gateway\.yaml: \(root\): YAML: .*alias/i);
  });

  it("picks the intended alternative of a union to explain what is wrong", () => {
    const issuer = (jwks: string) =>
      `registry: r\nauth:\n  issuers:\n    - issuer: i\n      audiences: [a]\n      jwks: ${jwks}\n`;
    expect(lines(issuer("{ file: k.json, cooldown: 5s }"))).toEqual([
      "gateway.yaml:6:29: auth.issuers[0].jwks: unknown key 'cooldown'",
    ]);
    expect(lines(issuer("{ uri: 'https://k', cooldown: 5 minutes }"))).toEqual([
      "gateway.yaml:6:43: auth.issuers[0].jwks.cooldown: expected a duration: seconds as a number, or a string such as 500ms, 30s, 10m, 1h",
    ]);
    expect(lines(issuer("{ url: 'https://k' }"))).toEqual([
      "gateway.yaml:6:13: auth.issuers[0].jwks: expected exactly one key source: uri (with optional timeout, cacheMaxAge, cooldown), file, inline or secretEnv",
    ]);
  });

  it("fills defaults", () => {
    const config = parseGatewayConfig("registry: r.yaml\nauth: {mode: optional}\n");
    expect(config.limits).toEqual({
      maxRequestBytes: 1_048_576,
      maxResponseBytes: 2_097_152,
      maxBatchSize: 32,
      maxJsonDepth: 64,
      maxSseEventBytes: 4_194_304,
    });
    expect(config.auth).toMatchObject({
      mode: "optional",
      anonymous: { agent: "anonymous", roles: [] },
      clockSkew: "30s",
      tokenCache: { ttl: "60s", maxEntries: 10_000 },
    });
    // Loopback unless told otherwise: whoever reaches the port can claim any identity (F8).
    expect(config.listen.grpc).toEqual({ host: "127.0.0.1", port: 9001 });
    expect(config.drainDelay).toBe("12s");
    expect(config.publicUrl).toBe("http://localhost:8080");
  });

  it("derives publicUrl from the edge port when unset (trial B5), and keeps one that is set", () => {
    const onPort = parseGatewayConfig(
      "registry: r.yaml\nauth: {mode: optional}\nlisten: {edge: {port: 28495}}\n",
    );
    expect(onPort.publicUrl).toBe("http://localhost:28495");
    expect(resourceMetadataUrl(onPort.publicUrl, "everything")).toBe(
      "http://localhost:28495/.well-known/oauth-protected-resource/mcp/everything",
    );
    const set = parseGatewayConfig(
      "registry: r.yaml\nauth: {mode: optional}\nlisten: {edge: {port: 28495}}\npublicUrl: https://gw.example\n",
    );
    expect(set.publicUrl).toBe("https://gw.example");
  });
});

describe("registry.yaml loading", () => {
  it("reports a duplicate tool even when other problems exist", () => {
    const text = [
      'version: "1"',
      "servers:",
      "  - name: kb",
      "    upstreams: [http://a/mcp]",
      "    tools:",
      "      - name: search",
      "        risk: extreme",
      "      - name: search",
    ].join("\n");
    expect(lines(text, parseRegistry)).toEqual([
      `registry.yaml:7:15: servers[0].tools[0].risk: expected one of "low"|"medium"|"high"|"critical"`,
      "registry.yaml:8:15: servers[0].tools[1].name: duplicate tool 'search' on server 'kb'",
    ]);
  });

  it("accepts the same tool name on different servers", () => {
    const text =
      'version: "1"\nservers:\n  - { name: a, upstreams: [http://a], tools: [{ name: t }] }\n  - { name: b, upstreams: [http://b], tools: [{ name: t }] }\n';
    expect(parseRegistry(text).servers.map((s) => s.tools[0]!.name)).toEqual(["t", "t"]);
  });

  it("accepts DNS-label server names that start with a letter and refuses others", () => {
    const reg = (name: string) => `version: "1"\nservers:\n  - { name: "${name}", upstreams: [http://a] }\n`;
    for (const ok of ["a", "kb", "tickets-2", "x".repeat(63), "d0"])
      expect(parseRegistry(reg(ok)).servers[0]!.name).toBe(ok);
    // "0day": a name starts /mcp's resource URIs' scheme ('<server>.<uri>'), which needs a letter.
    for (const bad of ["", "A", "kb_1", "-kb", "kb-", "x".repeat(64), "kb.internal", "kb/x", "%6b", "0day"]) {
      expect(lines(reg(bad), parseRegistry), bad).toHaveLength(1);
    }
  });
});

describe("durations", () => {
  it("reads numbers as seconds and strings with a unit", () => {
    expect(durationMs(2)).toBe(2000);
    expect(durationMs(0.5)).toBe(500);
    expect(durationMs("250ms")).toBe(250);
    expect(durationMs("1.5s")).toBe(1500);
    expect(durationMs("10m")).toBe(600_000);
    expect(durationMs("1h")).toBe(3_600_000);
    expect(() => durationMs("1d")).toThrow("invalid duration '1d'");
  });
});
