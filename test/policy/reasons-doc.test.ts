import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Reasons } from "../../ext-service/src/policy/reasons.js";

/** Rows of the tables in docs/REASONS.md: `| \`code\` | status | json-rpc code | meaning | action |`. */
function documented(): Map<string, { status: number; code: number; meaning: string; action: string }> {
  const text = readFileSync(join(import.meta.dirname, "../../docs/REASONS.md"), "utf8");
  const rows = new Map<string, { status: number; code: number; meaning: string; action: string }>();
  for (const line of text.split("\n")) {
    const cells = line.split("|").map((c) => c.trim());
    const m = /^`([a-z0-9_]+)`$/.exec(cells[1] ?? "");
    if (!m || cells.length !== 7) continue;
    expect(rows.has(m[1]!), `${m[1]} documented twice`).toBe(false);
    rows.set(m[1]!, {
      status: Number(cells[2]),
      code: Number(cells[3]),
      meaning: cells[4]!,
      action: cells[5]!,
    });
  }
  return rows;
}

describe("docs/REASONS.md", () => {
  const rows = documented();

  it("documents every reason code, and only those", () => {
    expect([...rows.keys()].sort()).toEqual(Object.keys(Reasons).sort());
  });

  it("gives each code's HTTP status and JSON-RPC code as reasons.ts does", () => {
    for (const [reason, info] of Object.entries(Reasons)) {
      expect(rows.get(reason), reason).toMatchObject({ status: info.status, code: info.code });
    }
  });

  it("says what each code means and what to do", () => {
    for (const [reason, row] of rows) {
      expect(row.meaning.length, reason).toBeGreaterThan(10);
      expect(row.action.length, reason).toBeGreaterThan(10);
    }
  });
});
