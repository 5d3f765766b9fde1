import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  DLP_CATEGORY,
  DLP_KINDS,
  DlpScanner,
  ibanValid,
  isCardNumber,
  luhnValid,
  redactMatches,
} from "../../ext-service/src/policy/dlp.js";
import { FIXTURES } from "./corpus.js";

/** test/fixtures/dlp/detectors.json: per detector, texts with the exact secret, and near misses. */
type Examples = Record<string, { positive: { text: string; secret: string }[]; negative: string[] }>;
const examples = JSON.parse(readFileSync(join(FIXTURES, "dlp/detectors.json"), "utf8")) as Examples;
const all = new DlpScanner();

describe("DLP detectors", () => {
  it("every detector has positive and negative examples", () => {
    for (const kind of DLP_KINDS) {
      expect(examples[kind]?.positive.length, kind).toBeGreaterThan(0);
      expect(examples[kind]?.negative.length, kind).toBeGreaterThan(0);
    }
    expect(Object.keys(examples).sort()).toEqual([...DLP_KINDS].sort());
  });

  describe.each(DLP_KINDS.map((k) => [k] as const))("%s", (kind) => {
    const only = new DlpScanner([kind]);
    it.each(examples[kind]!.positive.map((p) => [p.text, p.secret] as const))(
      "finds the secret in %j",
      (text, secret) => {
        const found = only.scan(text);
        expect(found.map((m) => [m.kind, text.slice(m.start, m.end)])).toEqual([[kind, secret]]);
        expect(found[0]!.category).toBe(DLP_CATEGORY[kind]);
        const redacted = redactMatches(text, all.scan(text));
        expect(redacted).not.toContain(secret);
        expect(redacted).toMatch(/\[REDACTED:[a-z_]+\]/);
      },
    );
    it.each(examples[kind]!.negative.map((n) => [n] as const))("ignores %j", (text) => {
      expect(only.scan(text)).toEqual([]);
    });
  });

  it("replaces each match with [REDACTED:<kind>] and keeps the rest", () => {
    const text = "mail alice@example.com and key AKIAIOSFODNN7EXAMPLE now";
    expect(redactMatches(text, all.scan(text))).toBe(
      "mail [REDACTED:email] and key [REDACTED:aws_access_key_id] now",
    );
  });

  it("checks Luhn, card networks and IBAN checksums", () => {
    expect(luhnValid("4111111111111111")).toBe(true);
    expect(luhnValid("4111111111111112")).toBe(false);
    expect(isCardNumber("4111 1111 1111 1111")).toBe(true);
    expect(isCardNumber("4111 1111-1111 1111")).toBe(false);
    expect(isCardNumber("9111111111111111")).toBe(false); // no network
    expect(ibanValid("GB82WEST12345698765432")).toBe(true);
    expect(ibanValid("GB82WEST12345698765433")).toBe(false);
    expect(ibanValid("GB82WEST1234569876543")).toBe(false); // wrong length for GB
  });

  it("honours an allowlist of values, patterns and whole detectors", () => {
    const text = "support@example.com, alice@example.com, AKIAIOSFODNN7EXAMPLE";
    const values = new Map([["support@example.com", "any" as const]]);
    expect(all.scan(text, { kinds: new Set(), values, patterns: [] }).map((m) => m.kind)).toEqual([
      "email",
      "aws_access_key_id",
    ]);
    const patterns = [{ kind: "email", re: /^[a-z]+@example\.com$/ }];
    expect(all.scan(text, { kinds: new Set(), values: new Map(), patterns }).map((m) => m.kind)).toEqual([
      "aws_access_key_id",
    ]);
    expect(
      all.scan(text, { kinds: new Set(["email"]), values: new Map(), patterns: [] }).map((m) => m.kind),
    ).toEqual(["aws_access_key_id"]);
  });

  it("leaves clean text alone", () => {
    expect(all.scan("The quarterly report covers revenue, churn and hiring in every region.")).toEqual([]);
  });
});
