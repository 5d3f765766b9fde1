import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { hostnameOf } from "../../ext-service/src/policy/origins.js";

/** What hostnameOf answered before it kept recent answers: a URL parse per call. */
function parsedHostname(host: string): string | undefined {
  if (host.length === 0 || /[\s/?#@\\]/.test(host)) return undefined;
  try {
    const hostname = new URL(`http://${host}`).hostname;
    return hostname.length > 0 ? hostname : undefined;
  } catch {
    return undefined;
  }
}

const hostValue = fc.oneof(
  fc.string(),
  fc.constantFrom(
    "127.0.0.1:8080",
    "LOCALHOST",
    "0x7f.1",
    "0127.0.0.1",
    "127.1:99999",
    "[::1]:80",
    "[::1",
    "evil.example:80",
    "xn--nxasmq6b.example",
    "é.example",
    "a b",
    "",
  ),
);

describe("origins: hostnameOf keeps recent answers, and they are the URL parser's", () => {
  it("answers every Host value as a fresh parse would, however often and in whatever order", () => {
    fc.assert(
      fc.property(fc.array(hostValue, { minLength: 1, maxLength: 200 }), (hosts) => {
        // Twice over: the second pass is answered from what the first one kept (or refilled).
        for (const host of [...hosts, ...hosts]) expect(hostnameOf(host)).toBe(parsedHostname(host));
      }),
      { numRuns: 300 },
    );
  });

  it("keeps a malformed value malformed (undefined is a kept answer, not a miss)", () => {
    expect(hostnameOf("127.1:99999")).toBeUndefined();
    expect(hostnameOf("127.1:99999")).toBeUndefined();
    expect(hostnameOf("127.1:8080")).toBe("127.0.0.1");
  });
});
