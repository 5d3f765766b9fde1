import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import {
  ENVOY_MAX_REQUEST_HEADERS_KB,
  MAX_HOP_TOKEN_LENGTH,
  MAX_REQUEST_HEADER_BYTES,
} from "../../ext-service/src/policy/header-limits.js";
import { SHIPPED_CHAIN } from "../../ext-service/src/envoy/envoy-model.js";

/**
 * The header limits fit together (policy/header-limits.ts): a hop identity of the longest length
 * passes every listener on its way with room for the hop's other headers, and the broker listener
 * takes whatever Envoy's listener accepted plus what Envoy adds.
 */

/** Generous room for a hop's headers other than Authorization (session id, protocol, traceparent, host...). */
const HOP_OTHER_HEADERS = 8 * 1024;
/** Generous room for the headers Envoy adds on its way to the broker (x-forwarded-*, x-request-id, x-envoy-*). */
const ENVOY_ADDED_HEADERS = 2 * 1024;

describe("header size limits", () => {
  it("a hop of MAX_HOP_TOKEN_LENGTH fits Envoy's listener and the gateway's own listeners", () => {
    const hop = "authorization".length + "Bearer ".length + MAX_HOP_TOKEN_LENGTH + HOP_OTHER_HEADERS;
    expect(hop).toBeLessThanOrEqual(ENVOY_MAX_REQUEST_HEADERS_KB * 1024);
    expect(hop).toBeLessThanOrEqual(MAX_REQUEST_HEADER_BYTES);
  });

  it("the broker listener takes what Envoy's listener accepted", () => {
    expect(MAX_REQUEST_HEADER_BYTES).toBeGreaterThanOrEqual(
      ENVOY_MAX_REQUEST_HEADERS_KB * 1024 + ENVOY_ADDED_HEADERS,
    );
  });

  it("envoy.yaml states the limit on both MCP listeners, and the Envoy model uses it", () => {
    const file = new URL("../../envoy/envoy.yaml", import.meta.url);
    const bootstrap = parse(readFileSync(file, "utf8")) as {
      static_resources: {
        listeners: {
          name: string;
          filter_chains: { filters: { name: string; typed_config: Record<string, unknown> }[] }[];
        }[];
      };
    };
    // The listeners agents reach (the metrics listener is not one).
    const mcpListeners = bootstrap.static_resources.listeners.filter((l) => l.name.startsWith("mcp_"));
    expect(mcpListeners.map((l) => l.name).sort()).toEqual(["mcp_plain", "mcp_tls"]);
    const managers = mcpListeners.flatMap((l) =>
      l.filter_chains.flatMap((c) =>
        c.filters
          .filter((f) => f.name === "envoy.filters.network.http_connection_manager")
          .map((f) => f.typed_config),
      ),
    );
    expect(managers.length).toBeGreaterThan(0);
    for (const m of managers) expect(m.max_request_headers_kb).toBe(ENVOY_MAX_REQUEST_HEADERS_KB);
    expect(SHIPPED_CHAIN.maxRequestHeadersKb).toBe(ENVOY_MAX_REQUEST_HEADERS_KB);
  });
});
