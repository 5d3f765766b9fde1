import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  DLP_KINDS,
  DlpScanner,
  NO_ALLOW,
  isCardNumber,
  type ScanMeter,
} from "../../ext-service/src/policy/dlp.js";
import { scanInjection } from "../../ext-service/src/policy/injection.js";
import { loadCorpus, materialise } from "./corpus.js";
import { makeEngine, registryOf, request, roundTrip, toolCall } from "./helpers.js";

/**
 * Security review F2: every DLP detector and the injection scanner cost a small, bounded amount
 * per character on adversarial input, not only "no catastrophic backtracking" (redos.test.ts).
 * Two measures:
 * - work counted by the detectors themselves (ScanMeter: regex calls, candidates validated,
 *   characters stepped over), bounded per character: deterministic, whatever the machine's load;
 * - time per character on generated worst cases (repeated digit groups, separators, near-matches
 *   of every detector, confusables), bounded relative to a linear baseline measured in the same
 *   test: the whole DLP scan (or the injection scan) of benign text of the same length. The
 *   payment-card detector of 89c830b cost about 900 times its baseline on "12 12 12 ...".
 */

const LENGTH = 8_192;
/**
 * Times the baseline a detector may cost: generous, since timings on a shared machine vary a few
 * times over. Measured here: about 20 to 40 at worst; 89c830b's card detector about 900.
 */
const BOUND = 100;
const fill = (unit: string) => unit.repeat(Math.ceil(LENGTH / unit.length)).slice(0, LENGTH);

const benignText = (() => {
  const texts = loadCorpus("benign").map(materialise);
  let out = "";
  for (let i = 0; out.length < LENGTH; i++) out += texts[i % texts.length] + "\n";
  return out.slice(0, LENGTH);
})();

/** The fastest of a few runs (the others carry GC pauses and the machine's other work). */
function bestMs(run: () => void, times = 3): number {
  let best = Infinity;
  for (let i = 0; i < times; i++) {
    const t0 = performance.now();
    run();
    best = Math.min(best, performance.now() - t0);
  }
  return best;
}

const NEAR_MATCHES = [
  "eyJ-",
  "eyJa.",
  ".eyJ",
  "eyJhbGciOiJI.eyJzdWIi.",
  "-----BEGIN PRIVATE KEY-----!",
  "-----BEGIN ",
  "-----END ",
  "AKIA",
  "AKIA-",
  "ghp_",
  "github_pat_",
  "xoxb-",
  "glpat-",
  "sk_live_",
  "whsec_",
  "AIza-",
  "8Q~-",
  "AccountKey=",
  "a@",
  "a@b.",
  "a.b@c",
  "GB82 ",
  "GB82WEST",
  "://",
  "a://b:c",
  "a://bb:cccccc@",
  "password=",
  "secret_key=",
  "token: aB3",
  "Bearer ",
  "Bearer aB3.",
  "https://hooks.slack.com/services/T",
  "+1 ",
  "(555) ",
  "123-45-",
  "AB 12 ",
  "AB12",
];
/**
 * Every anchor of the secret kinds' walk, alone, followed by a character of a token body, and
 * doubled: the shapes that start a kind's matcher at every few characters.
 */
const ANCHORS = [...new Set(new DlpScanner().anchors)].flatMap((a) => [a, `${a}a`, `${a}0-`, `${a}${a}`]);
const CONFUSABLES = ["\u0456", "\u0430", "\u200b", "\uff49", "\u{1d422}", "\u202e", "\u00ad", "%69", "\\x69"];
const DIGIT_GROUPS = ["1", "12", "41", "4", "36", "34", "4111", "5500", "6011", "0"];
const SEPARATORS = [" ", "-", "  ", ".", ",", "/", ""];

/** Units repeated to LENGTH characters: the shapes that make detectors retry. */
const adversarialUnit = fc.oneof(
  fc
    .array(fc.tuple(fc.constantFrom(...DIGIT_GROUPS), fc.constantFrom(...SEPARATORS)), {
      minLength: 1,
      maxLength: 4,
    })
    .map((parts) => parts.map(([g, s]) => g + s).join("")),
  fc.array(fc.constantFrom(...NEAR_MATCHES), { minLength: 1, maxLength: 3 }).map((p) => p.join("")),
  fc.array(fc.constantFrom(...ANCHORS), { minLength: 1, maxLength: 3 }).map((p) => p.join("")),
  fc
    .tuple(fc.constantFrom(...CONFUSABLES), fc.constantFrom("ignore ", "a", "previous ", "", "1 "))
    .map(([c, w]) => c + w),
);
const KNOWN_WORST = [
  "12 ",
  "1 ",
  "41 ",
  "4 ",
  "eyJ-",
  "-----BEGIN PRIVATE KEY-----!",
  "GB82 ",
  "a@",
  "AZDO",
  "sk-proj-sk-proj-",
  "password=password=",
];

// The bounds are ratios and step counts, not times: a loaded machine only makes them slower, so the
// time limit is wide (two of them took 23 s and 34 s at load average 20; 8 s alone).
describe("security review F2: scan cost per character on adversarial input", { timeout: 90_000 }, () => {
  const scanners = DLP_KINDS.map((kind) => ({ kind, scanner: new DlpScanner([kind]) }));

  it("every DLP detector counts a bounded amount of work per character", () => {
    fc.assert(
      fc.property(adversarialUnit, (unit) => {
        const text = fill(unit);
        for (const { kind, scanner } of scanners) {
          const meter: ScanMeter = { steps: 0 };
          scanner.scan(text, NO_ALLOW, undefined, meter);
          expect(meter.steps, `${kind} on ${JSON.stringify(unit)}`).toBeLessThanOrEqual(48 * LENGTH);
        }
      }),
      { numRuns: 60, examples: KNOWN_WORST.map((u) => [u]) },
    );
  });

  it("the whole DLP scan counts a bounded amount of work per character on every anchor repeated", () => {
    const all = new DlpScanner();
    let worst = { steps: 0, unit: "" };
    for (const unit of ANCHORS) {
      const meter: ScanMeter = { steps: 0 };
      all.scan(fill(unit), NO_ALLOW, undefined, meter);
      if (meter.steps > worst.steps) worst = { steps: meter.steps, unit };
      expect(meter.steps, JSON.stringify(unit)).toBeLessThanOrEqual(48 * LENGTH);
    }
    console.log(
      `DLP work: worst ${(worst.steps / LENGTH).toFixed(1)} steps/char on ${JSON.stringify(worst.unit)}`,
    );
  });

  it("every DLP detector stays within 100 times the whole DLP scan of benign text", () => {
    const all = new DlpScanner();
    for (let i = 0; i < 3; i++) all.scan(benignText); // warm up the compiled code
    const baseline = bestMs(() => all.scan(benignText), 5);
    let worst = { ratio: 0, what: "" };
    fc.assert(
      fc.property(adversarialUnit, (unit) => {
        const text = fill(unit);
        for (const { kind, scanner } of scanners) {
          const ratio = bestMs(() => scanner.scan(text)) / baseline;
          if (ratio > worst.ratio) worst = { ratio, what: `${kind} on ${JSON.stringify(unit)}` };
          // The first pass compiles: re-measure before failing.
          if (ratio > BOUND)
            expect(bestMs(() => scanner.scan(text), 5) / baseline, worst.what).toBeLessThan(BOUND);
        }
      }),
      { numRuns: 25, examples: KNOWN_WORST.map((u) => [u]) },
    );
    console.log(
      `DLP baseline ${((baseline * 1000) / LENGTH).toFixed(4)} us/char; worst ${worst.ratio.toFixed(1)}x: ${worst.what}`,
    );
  });

  it("the injection scanner stays within 100 times its scan of benign text", () => {
    for (let i = 0; i < 3; i++) scanInjection(benignText);
    const baseline = bestMs(() => scanInjection(benignText), 5);
    let worst = { ratio: 0, what: "" };
    fc.assert(
      fc.property(adversarialUnit, (unit) => {
        const text = fill(unit);
        const ratio = bestMs(() => scanInjection(text)) / baseline;
        if (ratio > worst.ratio) worst = { ratio, what: JSON.stringify(unit) };
        if (ratio > BOUND) expect(bestMs(() => scanInjection(text), 5) / baseline, unit).toBeLessThan(BOUND);
      }),
      { numRuns: 25, examples: KNOWN_WORST.map((u) => [u]) },
    );
    console.log(
      `injection baseline ${((baseline * 1000) / LENGTH).toFixed(4)} us/char; worst ${worst.ratio.toFixed(1)}x: ${worst.what}`,
    );
  });
});

/** The payment-card search of 89c830b (a candidate regex, then every prefix of groups): the model. */
function cardsByCandidates(text: string): [number, number][] {
  const candidate = /(?<![0-9A-Za-z.,/_-])[0-9][0-9 -]{11,30}[0-9](?![0-9A-Za-z_])/g;
  const out: [number, number][] = [];
  let m: RegExpExecArray | null;
  while ((m = candidate.exec(text)) !== null) {
    const groups: number[] = [];
    const re = /[0-9]+/g;
    let g: RegExpExecArray | null;
    while ((g = re.exec(m[0])) !== null) groups.push(g.index + g[0].length);
    let found = false;
    for (let j = groups.length - 1; j >= 0; j--) {
      if (isCardNumber(m[0].slice(0, groups[j]))) {
        out.push([m.index, m.index + groups[j]!]);
        candidate.lastIndex = m.index + groups[j]!;
        found = true;
        break;
      }
    }
    if (!found) candidate.lastIndex = m.index + groups[0]!;
  }
  return out;
}

/** The JWT regex of 89c830b: the model of the linear JWT search. */
function jwtsByRegex(text: string): [number, number][] {
  const re = /\beyJ[A-Za-z0-9_-]{10,4096}\.eyJ[A-Za-z0-9_-]{10,16384}\.[A-Za-z0-9_-]{10,4096}/g;
  return [...text.matchAll(re)].map((m) => [m.index, m.index + m[0].length]);
}

describe("the linear detectors find what the searches they replaced found", () => {
  const cards = new DlpScanner(["payment_card"]);
  const jwts = new DlpScanner(["jwt"]);
  const spans = (scanner: DlpScanner, text: string) =>
    scanner.scan(text).map((m) => [m.start, m.end] as [number, number]);

  it("payment cards: one pass over digit groups = every prefix of every candidate", () => {
    const piece = fc.constantFrom(
      "4111",
      "1111",
      "4111 1111 1111 1111",
      "4111-1111-1111-1111",
      "378282246310005",
      "5500 0000 0000 0004",
      "6011",
      "36",
      "1",
      "12",
      "0",
      " ",
      "-",
      "  ",
      "a",
      ".",
      ",",
      "/",
      "_",
      "x",
      "qty 2 ",
      "\n",
    );
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 24 }), (parts) => {
        const text = parts.join("");
        expect(spans(cards, text), JSON.stringify(text)).toEqual(cardsByCandidates(text));
      }),
      { numRuns: 3000 },
    );
  });

  it("JWTs: the scan from each '.eyJ' = the regex", () => {
    const piece = fc.constantFrom(
      "eyJ",
      "eyJhbGciOiJIUzI1NiJ9",
      "abcdefghij",
      "-",
      "_",
      ".",
      " ",
      "x",
      "eyJzdWIiOiIxMjM0NTY3ODkwIn0",
      "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
    );
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 16 }), (parts) => {
        const text = parts.join("");
        expect(spans(jwts, text), JSON.stringify(text)).toEqual(jwtsByRegex(text));
      }),
      { numRuns: 3000 },
    );
  });
});

describe("security review F2: the scan budget of one message", () => {
  const many = Object.fromEntries(
    Array.from({ length: 150 }, (_, i) => [`k${i}`, `value ${i} `.repeat(500)]),
  );
  const tools = [{ name: "store", description: "Stores values.", inputSchema: { type: "object" } }];

  it("refuses a request whose strings take longer than scanBudgetMs, audited as scan_budget_exceeded", async () => {
    const engine = makeEngine({
      security: { scanBudgetMs: 0.001 },
      registry: registryOf([{ name: "kb", tools }]),
    });
    const { forwarded, reply, exchange } = await request(engine, toolCall(1, "store", many));
    expect(forwarded).toBe(false);
    expect((reply as { error: { data: { reason: string } } }).error.data.reason).toBe("scan_budget_exceeded");
    expect(exchange.reasons).toContain("scan_budget_exceeded");
    expect(exchange.decision).toBe("deny");
  });

  it("refuses a request with more than maxScanChars characters of text", async () => {
    const engine = makeEngine({
      security: { maxScanChars: 10_000 },
      registry: registryOf([{ name: "kb", tools }]),
    });
    const { reply } = await request(engine, toolCall(1, "store", many));
    expect((reply as { error: { data: { reason: string } } }).error.data.reason).toBe("scan_budget_exceeded");
  });

  it("replaces a server answer whose strings take longer than scanBudgetMs", async () => {
    const engine = makeEngine({
      security: { scanBudgetMs: 0.001 },
      registry: registryOf([{ name: "kb", tools }]),
    });
    const content = Object.values(many).map((text) => ({ type: "text", text }));
    const { out, exchange } = await roundTrip(engine, toolCall(1, "store", {}), {
      jsonrpc: "2.0",
      id: 1,
      result: { content },
    });
    expect((out as { error: { data: { reason: string } } }).error.data.reason).toBe("scan_budget_exceeded");
    expect(exchange.reasons).toContain("scan_budget_exceeded");
  });
});
