import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import { describe, expect, it } from "vitest";
import { loadEngine } from "../../ext-service/src/config/compile.js";
import { ConfigError, parseRegistry } from "../../ext-service/src/config/load.js";
import { tempDir } from "../e2e/harness.js";

/** `upstream.tokenExchange` in the registry: what is refused, and why, before anything runs. */

const exchange = (overrides: Record<string, unknown> = {}) => ({
  tokenEndpoint: "https://auth.example.test/oauth2/token",
  clientId: "mcp-gateway",
  clientSecret: "${env:GW_CLIENT_SECRET}",
  audience: "jira",
  ...overrides,
});

const registry = (upstream: Record<string, unknown>) =>
  JSON.stringify({ version: "1", servers: [{ name: "s", upstreams: ["http://127.0.0.1:1/mcp"], upstream }] });

describe("upstream.tokenExchange", () => {
  it("accepts a complete exchange and fills in the defaults", () => {
    const parsed = parseRegistry(registry({ tokenExchange: exchange() }));
    expect(parsed.servers[0]!.upstream!.tokenExchange).toMatchObject({
      subjectTokenType: "urn:ietf:params:oauth:token-type:access_token",
      header: "Authorization",
      refreshSkewSeconds: 60,
    });
  });

  it("refuses a client secret written inline, or anything around a reference", () => {
    for (const clientSecret of ["s3cret-literal", "x${env:SECRET}", "${env:A}${env:B}", "${vault:secret}"]) {
      expect(
        () => parseRegistry(registry({ tokenExchange: exchange({ clientSecret }) })),
        clientSecret,
      ).toThrow(/exactly one \$\{env:NAME\} or \$\{file:\/path\} reference/);
    }
  });

  it("refuses a user or password in the token endpoint's URL", () => {
    const tokenEndpoint = "https://gw:s3cret@auth.example.test/oauth2/token";
    expect(() => parseRegistry(registry({ tokenExchange: exchange({ tokenEndpoint }) }))).toThrow(
      /no user or password in the URL/,
    );
  });

  it("needs an audience or a resource to name the server", () => {
    expect(() => parseRegistry(registry({ tokenExchange: exchange({ audience: undefined }) }))).toThrow(
      /audience, resource or both/,
    );
    expect(() =>
      parseRegistry(
        registry({
          tokenExchange: exchange({ audience: undefined, resource: "https://jira.example.test/" }),
        }),
      ),
    ).not.toThrow();
  });

  it("refuses a static header of the same name as the exchanged token's", () => {
    const both = { headers: { authorization: "Bearer ${env:STATIC}" }, tokenExchange: exchange() };
    expect(() => parseRegistry(registry(both))).toThrow(/also the header of tokenExchange/);
    // Other static headers may sit beside it, and another header for the token frees Authorization.
    const apart = {
      headers: { Authorization: "Bearer ${env:STATIC}", "X-Tenant": "acme" },
      tokenExchange: exchange({ header: "X-Jira-Token" }),
    };
    expect(() => parseRegistry(registry(apart))).not.toThrow();
  });

  it("refuses a header the gateway sets itself", () => {
    expect(() => parseRegistry(registry({ tokenExchange: exchange({ header: "X-Mcp-Agent" }) }))).toThrow(
      /set by the gateway/,
    );
  });

  it("refuses to load when the client secret's variable is unset, naming it but no value", () => {
    const tmp = tempDir();
    try {
      writeFileSync(
        join(tmp.dir, "gateway.yaml"),
        stringify({ registry: "registry.yaml", auth: { mode: "optional" } }),
      );
      writeFileSync(join(tmp.dir, "registry.yaml"), registry({ tokenExchange: exchange() }));
      delete process.env.GW_CLIENT_SECRET;
      expect(() => loadEngine(join(tmp.dir, "gateway.yaml"))).toThrow(ConfigError);
      expect(() => loadEngine(join(tmp.dir, "gateway.yaml"))).toThrow(
        /environment variable GW_CLIENT_SECRET is not set/,
      );
      process.env.GW_CLIENT_SECRET = "loaded-secret-value";
      expect(() => loadEngine(join(tmp.dir, "gateway.yaml"))).not.toThrow();
    } finally {
      delete process.env.GW_CLIENT_SECRET;
      tmp.remove();
    }
  });
});
