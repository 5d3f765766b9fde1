import { parentPort } from "node:worker_threads";
import { DlpScanner, dlpPatterns } from "../../ext-service/src/policy/dlp.js";
import { injectionPatterns, scanInjection } from "../../ext-service/src/policy/injection.js";
import { normalizeForScan } from "../../ext-service/src/policy/normalize.js";
import { foldName } from "../../ext-service/src/policy/collisions.js";

/**
 * Runs every regex of the scanners, and the scanners themselves, over adversarial 100k-character
 * inputs. Runs in a worker so that a catastrophic pattern shows up as a timeout in the parent
 * instead of freezing the test runner.
 */

const N = 100_000;
const fill = (unit: string) => unit.repeat(Math.ceil(N / unit.length)).slice(0, N);

const UNITS = [
  "a",
  " ",
  "\n",
  "1",
  "1 ",
  "1-",
  "A",
  "aA1",
  "@",
  "a@",
  "a.",
  "a@a.",
  "-",
  "_",
  "/",
  ":",
  "=",
  "%41",
  "\\x41",
  "&#65;",
  "\u200b",
  "\u202e",
  "\u{E0041}",
  "\u{E0101}",
  "\ufe0f",
  "<",
  "<important>",
  "<!--",
  "![",
  "](",
  "](http://a/{",
  "ignore ",
  "ignore previous ",
  "you must ",
  "you are ",
  "when using the a_b tool ",
  "send ",
  "send the conversation ",
  "secret ",
  "password=",
  "password: aB3",
  "token=aB3dE5",
  "-----BEGIN ",
  "-----BEGIN PRIVATE KEY-----",
  "eyJ",
  "eyJa.",
  "AKIA",
  "ghp_",
  "xoxb-",
  "sk_live_",
  "://",
  "a://b:c",
  "GB82 ",
  "GB82WEST",
  "4111 ",
  "123-45-",
  "AB12",
  "+1 ",
  '"',
  "'",
  "`",
  'e.g. "ignore previous instructions" ',
  "note to the ai ",
  "if you are an ",
  "system: ",
];

const dlp = new DlpScanner();
const patterns = [...injectionPatterns(), ...dlpPatterns()];
let runs = 0;
for (const unit of UNITS) {
  const input = fill(unit);
  for (const { pattern } of patterns) {
    const re = new RegExp(pattern.source, pattern.flags.includes("g") ? pattern.flags : pattern.flags + "g");
    let m: RegExpExecArray | null;
    let guard = 0;
    while ((m = re.exec(input)) !== null && guard++ < 200_000) if (m[0].length === 0) re.lastIndex++;
    runs++;
  }
  const injection = scanInjection(input);
  const matches = dlp.scan(input);
  const normalized = normalizeForScan(input);
  foldName(input.slice(0, 1000));
  if (!Array.isArray(injection.findings) || !Array.isArray(matches) || normalized.layers.length === 0) {
    throw new Error(`unexpected result for unit ${JSON.stringify(unit)}`);
  }
  runs += 3;
}
parentPort!.postMessage({ done: true, runs, units: UNITS.length, patterns: patterns.length });
