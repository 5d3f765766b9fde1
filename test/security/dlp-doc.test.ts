import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { DLP_KINDS } from "../../ext-service/src/policy/dlp.js";
import { END, SECURITY_MD, START, withTable } from "./dlp-kinds-table.js";

describe("docs/SECURITY.md DLP kinds table", () => {
  it("is the table the detector list makes (npx tsx test/security/dlp-kinds-table.ts rewrites it)", async () => {
    const doc = readFileSync(SECURITY_MD, "utf8");
    const expected = await withTable(doc);
    const section = (text: string) => text.slice(text.indexOf(START), text.indexOf(END));
    expect(section(doc)).toBe(section(expected));
  });

  it("lists every kind once", () => {
    const doc = readFileSync(SECURITY_MD, "utf8");
    const listed = [...doc.slice(doc.indexOf(START), doc.indexOf(END)).matchAll(/^\| `([a-z0-9_]+)`/gm)].map(
      (m) => m[1],
    );
    expect(listed).toEqual([...DLP_KINDS]);
  });
});
