import { foldText } from "./normalize.js";
import {
  CONCEPTS,
  DANGEROUS_COMMANDS,
  DETERMINERS,
  LEXICON,
  SECRET_DOTFILES,
  VERB_CONCEPTS,
  type Concept,
} from "./concept-lexicon.js";

/**
 * Concept detection for prompt injection: instead of phrase patterns, one pass over the text
 * finds words that express concepts (discarding guidance, the model as addressee, credentials,
 * moving data somewhere, ...) in ten languages, and rules fire when the concepts of an attack
 * meet within a window (at most one sentence boundary apart, `WINDOW` characters). Word order is
 * free, so "ignore the previous instructions", "以前の指示はすべて無視して" and "die vorherigen
 * Anweisungen ignorieren" meet the same rule.
 *
 * Folding, per character, before words are looked up: lower case, accents removed, leetspeak
 * digits and symbols read as letters (0→o, 1→i, 3→e, 4→a, 5→s, 7→t, @→a, $→s), `l` read as `i`
 * (so `1` and `l` agree), a final `z` read as `s`. Words split by in-word punctuation
 * (`ig.nore`, `in-struc-tions`, `api_key`) are also looked up joined, and runs of single letters
 * (`i g n o r e`) are searched for lexicon words. The text it reads is already NFKC- and
 * confusable-folded and decoded by normalize.ts.
 *
 * Cost: one loop over the characters with a hash per word, a table lookup per character for
 * stems, a backward pass over words of eight or more letters for compound heads, and for each
 * CJK character a lookup of the terms that start with it. Rule checks run per concept hit and
 * touch a constant number of slots. Linear, with a small constant (test/security/concepts.test.ts
 * bounds it on generated worst cases).
 */

export type ConceptTier = "block" | "alert";

export type ConceptCategory =
  "override" | "role" | "address" | "credentials" | "exfiltration" | "shadowing" | "secrecy" | "command";

export interface ConceptFinding {
  rule: string;
  tier: ConceptTier;
  category: ConceptCategory;
}

export interface ConceptResult {
  findings: ConceptFinding[];
  /**
   * Rules that matched only in text that discusses attacks (security documentation, examples):
   * not reported, but a reason to ask a classifier when one is configured.
   */
  mentions: string[];
}

/** How far apart (characters) the concepts of one rule may be. */
const WINDOW = 150;

const NUM = CONCEPTS.length;
const ID = new Map<Concept, number>(CONCEPTS.map((c, i) => [c, i]));
const id = (c: Concept): number => ID.get(c)!;
const IS_VERB = new Uint8Array(NUM);
for (const v of VERB_CONCEPTS) IS_VERB[id(v)] = 1;

const C = Object.fromEntries(CONCEPTS.map((c) => [c, id(c)])) as Record<Concept, number>;

interface ConceptRule {
  id: string;
  tier: ConceptTier;
  category: ConceptCategory;
  /** Alternatives; each is a list of groups, and each group is satisfied by any of its concepts. */
  when: number[][][];
  /** Concepts that, within SUPPRESS_DISTANCE of a match, mean it is something else. */
  unless: number[];
  /** How far apart (characters) its concepts may be. */
  window: number;
}

/** How close (characters) a suppressing concept (own_message) must be to a match. */
const SUPPRESS_DISTANCE = 40;

function r(
  ruleId: string,
  tier: ConceptTier,
  category: ConceptCategory,
  ...alternatives: Concept[][][]
): ConceptRule {
  return {
    id: ruleId,
    tier,
    category,
    when: alternatives.map((alt) => alt.map((group) => group.map(id))),
    unless: [],
    window: WINDOW,
  };
}

function within(rule: ConceptRule, window: number): ConceptRule {
  return { ...rule, window };
}

function unless(rule: ConceptRule, ...concepts: Concept[]): ConceptRule {
  return { ...rule, unless: concepts.map(id) };
}

const RULES: readonly ConceptRule[] = [
  within(
    unless(
      r("concept.override", "block", "override", [["ignore"], ["instructions"], ["prior", "you", "ai"]]),
      "own_message",
    ),
    80,
  ),
  within(
    unless(
      r("concept.override_void", "block", "override", [["invalid"], ["instructions"], ["you", "ai"]]),
      "own_message",
    ),
    80,
  ),
  r(
    "concept.role",
    "block",
    "role",
    [["unrestricted"], ["you_are", "roleplay", "special_mode"]],
    [["unrestricted"], ["you"], ["now"]],
  ),
  r("concept.address", "block", "address", [["addressed"], ["order"]]),
  r(
    "concept.credentials",
    "block",
    "credentials",
    [["reveal"], ["secret", "system_prompt"], ["you", "me", "ai"]],
    [["reveal"], ["conversation"], ["user", "prior"], ["you", "me"]],
  ),
  r(
    "concept.exfiltration",
    "block",
    "exfiltration",
    [["send"], ["secret", "conversation", "system_prompt"], ["destination"]],
    [["attach"], ["conversation", "system_prompt"], ["destination", "parameter"]],
    [["read"], ["secret"], ["parameter"], ["attach", "send"]],
  ),
  within(
    r(
      "concept.hidden_requirement",
      "block",
      "shadowing",
      [["before"], ["read", "send", "attach", "reveal"], ["secret"], ["parameter", "destination"]],
      [["before"], ["read", "send", "attach", "reveal"], ["conversation", "system_prompt"]],
      [["before"], ["read"], ["secret"], ["attach", "send", "parameter"]],
    ),
    120,
  ),
  r("concept.other_tools", "block", "shadowing", [
    ["other_tools"],
    ["send", "attach", "order"],
    ["destination"],
  ]),
  within(
    r("concept.secrecy", "block", "secrecy", [
      ["secrecy"],
      ["send", "attach", "order", "reveal", "read", "execute"],
      ["destination", "ai", "addressed", "conversation"],
    ]),
    60,
  ),
  r("concept.shell", "block", "command", [
    ["execute"],
    ["dangerous_command"],
    ["secret", "ai", "secrecy", "now", "before", "you"],
  ]),
  r("concept.shell_command", "alert", "command", [["execute"], ["dangerous_command"]]),
];

/** For each concept, the rules that mention it. */
const RULES_BY_CONCEPT: number[][] = Array.from({ length: NUM }, () => []);
RULES.forEach((rule, i) => {
  const seen = new Set<number>();
  for (const alt of rule.when) for (const g of alt) for (const c of g) seen.add(c);
  for (const c of seen) RULES_BY_CONCEPT[c]!.push(i);
});

// ---------------------------------------------------------------- character folding

/** Folded code of a word character (0 for characters that are not part of words). */
const FOLD = new Uint16Array(0x530);
(() => {
  for (let c = 0; c < 0x530; c++) {
    const ch = String.fromCharCode(c);
    let f = 0;
    if (c >= 48 && c <= 57) f = c;
    else if (/\p{L}/u.test(ch)) {
      const base = ch.normalize("NFD")[0]!.toLowerCase();
      f = base.length === 1 ? base.charCodeAt(0) : ch.toLowerCase().charCodeAt(0);
    }
    FOLD[c] = f;
  }
  const set = (from: string, to: string) => (FOLD[from.charCodeAt(0)] = to.charCodeAt(0));
  set("ß", "s");
  set("æ", "a");
  set("Æ", "a");
  set("ø", "o");
  set("Ø", "o");
  set("œ", "o");
  set("Œ", "o");
  set("ł", "l");
  set("Ł", "l");
  set("đ", "d");
  set("ı", "i");
  // Leetspeak: digits in words read as the letters they imitate; l and 1 both read as i.
  for (const [d, l] of [
    ["0", "o"],
    ["1", "i"],
    ["3", "e"],
    ["4", "a"],
    ["5", "s"],
    ["7", "t"],
  ] as const)
    set(d, l);
  for (let c = 0; c < 0x530; c++) if (FOLD[c] === 108 /* l */) FOLD[c] = 105; /* i */
})();
/** Symbols read as letters inside a word (p@ss, $ecret, pr!nt). */
const LEET_SYMBOL = new Uint16Array(128);
LEET_SYMBOL[64] = 97; // @ a
LEET_SYMBOL[36] = 115; // $ s
LEET_SYMBOL[33] = 105; // ! i
LEET_SYMBOL[124] = 105; // | i
/** Punctuation that may sit inside a word: the parts are also looked up joined. */
const JOINER = new Uint8Array(128);
for (const c of "-_.'*`") JOINER[c.charCodeAt(0)] = 1;

function isCjk(c: number): boolean {
  return (
    (c >= 0x3040 && c <= 0x30ff) ||
    (c >= 0x3400 && c <= 0x4dbf) ||
    (c >= 0x4e00 && c <= 0x9fff) ||
    (c >= 0xac00 && c <= 0xd7af) ||
    (c >= 0x1100 && c <= 0x11ff) ||
    (c >= 0x3130 && c <= 0x318f)
  );
}

/** Folded code of `c` as a word character, or 0. */
function foldCode(c: number): number {
  return c < 0x530 ? FOLD[c]! : 0;
}

const FNV_OFFSET = 0x811c9dc5 | 0;
const FNV_PRIME = 0x01000193;
const hashStep = (h: number, c: number): number => Math.imul(h ^ c, FNV_PRIME);
const pairHash = (a: number, b: number): number => (Math.imul(a, 0x9e3779b1) ^ b) | 0;

// ---------------------------------------------------------------- lexicon tables

const MASK = 0xffff;
const wordMap = new Map<number, number[]>();
const wordFilter = new Uint8Array(MASK + 1);
const pairMap = new Map<number, number[]>();
const pairFilter = new Uint8Array(MASK + 1);
const stemMap = new Map<number, number[]>();
const stemFilter = new Uint8Array(MASK + 1);
/** Compound heads, hashed from the last letter backwards. */
const headMap = new Map<number, number[]>();
const headFilter = new Uint8Array(MASK + 1);
/** CJK terms by their first character. */
const cjkTerms = new Map<number, { term: string; concepts: number[] }[]>();
/** Latin-script words of 4+ letters, for runs of single letters: a trie of folded codes. */
interface TrieNode {
  next: Map<number, TrieNode>;
  concepts: number[] | undefined;
}
const trie: TrieNode = { next: new Map(), concepts: undefined };

function addTo(map: Map<number, number[]>, filter: Uint8Array, h: number, concept: number): void {
  const list = map.get(h);
  if (list) {
    if (!list.includes(concept)) list.push(concept);
  } else map.set(h, [concept]);
  filter[h & MASK] = 1;
}

/** Folded word codes of a lexicon word (after the same NFKC/confusable folding as the text). */
function foldedWords(term: string): number[][] {
  const words: number[][] = [];
  let cur: number[] = [];
  for (let i = 0; i < term.length; i++) {
    const c = term.charCodeAt(i);
    const f = foldCode(c);
    if (f !== 0) cur.push(f);
    else if (cur.length) {
      words.push(cur);
      cur = [];
    }
  }
  if (cur.length) words.push(cur);
  return words;
}

function hashCodes(codes: readonly number[]): number {
  let h = FNV_OFFSET;
  for (const c of codes) h = hashStep(h, c);
  return h;
}

(() => {
  for (const concept of CONCEPTS) {
    const cid = id(concept);
    for (const raw of LEXICON[concept]) {
      const term = foldText(raw.toLowerCase());
      if ([...term].some((ch) => isCjk(ch.charCodeAt(0)))) {
        const first = term.charCodeAt(0);
        const list = cjkTerms.get(first) ?? [];
        const entry = list.find((e) => e.term === term);
        if (entry) entry.concepts.push(cid);
        else list.push({ term, concepts: [cid] });
        cjkTerms.set(first, list);
        continue;
      }
      if (term.endsWith("*")) {
        const codes = foldedWords(term.slice(0, -1))[0]!;
        addTo(stemMap, stemFilter, hashCodes(codes), cid);
        continue;
      }
      if (term.startsWith("*")) {
        const codes = foldedWords(term.slice(1))[0]!;
        addTo(headMap, headFilter, hashCodes([...codes].reverse()), cid);
        continue;
      }
      const words = foldedWords(term);
      if (words.length === 1) {
        addTo(wordMap, wordFilter, hashCodes(words[0]!), cid);
        if (words[0]!.length >= 4) addToTrie(words[0]!, cid);
      } else if (words.length === 2) {
        addTo(pairMap, pairFilter, pairHash(hashCodes(words[0]!), hashCodes(words[1]!)), cid);
        // Also as one word ("apikey", "dont"), which joined and spaced-out text produces; not a
        // possessive ("user s" is not "users").
        if (words[1]!.length === 1 && words[1]![0] === 115) continue;
        const joined = [...words[0]!, ...words[1]!];
        addTo(wordMap, wordFilter, hashCodes(joined), cid);
        if (joined.length >= 4) addToTrie(joined, cid);
      } else {
        throw new Error(`lexicon term '${raw}' has more than two words`);
      }
    }
  }
})();

function addToTrie(codes: readonly number[], concept: number): void {
  let node = trie;
  for (const c of codes) {
    let n = node.next.get(c);
    if (!n) node.next.set(c, (n = { next: new Map(), concepts: undefined }));
    node = n;
  }
  node.concepts ??= [];
  if (!node.concepts.includes(concept)) node.concepts.push(concept);
}

/**
 * Dangerous command literals by what starts them: the folded hash of their first word, or "|".
 * They are checked where that word or bar occurs, in the same pass as everything else.
 */
const DANGER_BY_WORD = new Map<number, string[]>();
const DANGER_AFTER_BAR: string[] = [];
for (const literal of DANGEROUS_COMMANDS.map((d) => d.toLowerCase())) {
  if (literal.startsWith("|")) {
    DANGER_AFTER_BAR.push(literal);
    continue;
  }
  const first = foldedWords(literal)[0]!;
  const h = hashCodes(first);
  const list = DANGER_BY_WORD.get(h) ?? [];
  list.push(literal);
  DANGER_BY_WORD.set(h, list);
}

/** A bar followed (after one optional space) by a letter a piped command can start with. */
function barMayStartCommand(text: string, i: number): boolean {
  let c = text.charCodeAt(i + 1);
  if (c === 32) c = text.charCodeAt(i + 2);
  c |= 32;
  return c === 115 || c === 98 || c === 122 || c === 110; // s b z n
}

/** Whether `literal` (lower case) occurs at `at`, ASCII case-insensitively, ending a word if it ends in one. */
function commandAt(text: string, at: number, literal: string): boolean {
  if (at < 0 || at + literal.length > text.length) return false;
  for (let k = 0; k < literal.length; k++) {
    let c = text.charCodeAt(at + k);
    if (c >= 65 && c <= 90) c |= 32;
    if (c !== literal.charCodeAt(k)) return false;
  }
  return !(isWordAt(literal, literal.length - 1) && isWordAt(text, at + literal.length));
}
const DOTFILES = new Set(SECRET_DOTFILES.map((w) => hashCodes(foldedWords(w).flat())));
const DETERMINER_HASHES = new Set(DETERMINERS.map((w) => hashCodes(foldedWords(w)[0]!)));
/** Low 16 bits of the determiners' and command words' hashes: one array read rejects most words. */
const determinerFilter = new Uint8Array(MASK + 1);
for (const h of DETERMINER_HASHES) determinerFilter[h & MASK] = 1;
const commandFilter = new Uint8Array(MASK + 1);
for (const h of DANGER_BY_WORD.keys()) commandFilter[h & MASK] = 1;

// ---------------------------------------------------------------- the scan

const NEVER = -1e9;
/** Matches kept per rule for the mention check; one more counts as a finding. */
const MAX_CANDIDATES = 64;

interface Candidate {
  pos: number;
  sentence: number;
  real: boolean;
}

const NO_CONCEPTS: readonly number[] = [];

/**
 * Per-scan state: where each concept was seen last, and which rules matched. One is kept and
 * reset between scans (see takeState): a request scans several short strings, and building the
 * two typed arrays and the map each time cost about a third of scanning a short one.
 */
class ConceptState {
  readonly lastPos = new Float64Array(NUM).fill(NEVER);
  readonly lastSentence = new Float64Array(NUM).fill(NEVER);
  sentence = 0;
  lastNegEnd = NEVER;
  lastNegSentence = NEVER;
  /** The last verb hit: its concepts and end, so a following negation ("vergiss nicht") can undo it. */
  lastVerbEnd = NEVER;
  lastVerbConcepts: readonly number[] = NO_CONCEPTS;
  readonly fired = new Map<number, Candidate[]>();
  readonly metaPositions: { pos: number; sentence: number }[] = [];
  readonly ownPositions: number[] = [];
  /** Steps taken (characters, lookups, trie and CJK comparisons, rule checks): the cost, load-independent. */
  work = 0;
  /** End of the last AI word: a verb right after it is described ("make the bot reveal"), not ordered. */
  lastAiEnd = NEVER;
  /** Word codes of the current word (the first 64), reused by every word of the scan. */
  readonly codes = new Uint16Array(64);

  constructor(public text: string) {}

  /** As new, for a scan of `text`. */
  reset(text: string): void {
    this.text = text;
    this.lastPos.fill(NEVER);
    this.lastSentence.fill(NEVER);
    this.sentence = 0;
    this.lastNegEnd = NEVER;
    this.lastNegSentence = NEVER;
    this.lastVerbEnd = NEVER;
    this.lastVerbConcepts = NO_CONCEPTS;
    this.fired.clear();
    this.metaPositions.length = 0;
    this.ownPositions.length = 0;
    this.work = 0;
    this.lastAiEnd = NEVER;
  }

  near(c: number, pos: number, window: number): boolean {
    return this.lastPos[c]! >= pos - window && this.lastSentence[c]! >= this.sentence - 1;
  }

  /** Records a hit of `concepts` at [start, end); `standalone` is false for words inside code. */
  hit(concepts: readonly number[], start: number, end: number, standalone: boolean): void {
    let verbs: number[] | undefined;
    for (const c of concepts) {
      if (IS_VERB[c] === 1) {
        if (!standalone || this.described(start)) continue;
        // "email: x" is a key in code or config; "run: curl ..." still orders a command.
        if (c !== C.execute && end < this.text.length && this.text.charCodeAt(end) === 58) continue;
        if (
          c !== C.tell &&
          this.lastNegSentence === this.sentence &&
          start >= this.lastNegEnd &&
          start - this.lastNegEnd <= 12
        )
          continue;
        (verbs ??= []).push(c);
      }
      if (c === C.before && !standalone) continue;
      if (c === C.negation) this.negation(start, end);
      if (c === C.own_message) {
        if (this.ownPositions.length < 4096) this.ownPositions.push(start);
        continue;
      }
      if (c === C.ai) this.lastAiEnd = end;
      if (c === C.meta) {
        // A word of a URL or file name ("x.example", "test.js") is not discussion.
        if (partOfName(this.text, start, end)) continue;
        if (this.metaPositions.length < 4096)
          this.metaPositions.push({ pos: start, sentence: this.sentence });
        continue;
      }
      this.record(c, start);
    }
    if (verbs) {
      this.lastVerbEnd = end;
      this.lastVerbConcepts = verbs;
    }
  }

  /** "the assistant to search", "the bot reveal", "the model into ignoring": a described act. */
  private described(start: number): boolean {
    const gap = start - this.lastAiEnd;
    if (gap < 1 || gap > 6) return false;
    for (let k = this.lastAiEnd; k < start; k++) {
      const c = this.text.charCodeAt(k);
      if (c === 44 || c === 58 || c === 59 || c === 10) return false;
    }
    return true;
  }

  private negation(start: number, end: number): void {
    // A negation right after a verb undoes it ("vergiss nicht", "forget not").
    if (start >= this.lastVerbEnd && start - this.lastVerbEnd <= 2) {
      for (const v of this.lastVerbConcepts) this.lastPos[v] = NEVER;
    }
    this.lastNegEnd = end;
    this.lastNegSentence = this.sentence;
  }

  record(c: number, pos: number): void {
    if (
      c === C.tell &&
      this.lastNegSentence === this.sentence &&
      pos >= this.lastNegEnd &&
      pos - this.lastNegEnd <= 12
    )
      this.record(C.secrecy, pos);
    this.lastPos[c] = pos;
    this.lastSentence[c] = this.sentence;
    // Derived concepts: two concepts close together.
    if (c === C.lack && this.closeTo(C.limit, pos, 30)) this.record(C.unrestricted, pos);
    else if (c === C.limit && this.closeTo(C.lack, pos, 30)) this.record(C.unrestricted, pos);
    else if (c === C.developer && this.closeTo(C.mode, pos, 20)) this.record(C.special_mode, pos);
    else if (c === C.mode && this.closeTo(C.developer, pos, 20)) this.record(C.special_mode, pos);
    else if (c === C.ai && this.closeTo(C.addressing, pos, 40)) this.record(C.addressed, pos);
    else if (c === C.addressing && this.closeTo(C.ai, pos, 40)) this.record(C.addressed, pos);
    for (const ri of RULES_BY_CONCEPT[c]!) this.check(ri, pos);
  }

  private closeTo(c: number, pos: number, distance: number): boolean {
    return this.lastPos[c]! >= pos - distance && this.lastSentence[c]! >= this.sentence - 1;
  }

  private check(ri: number, pos: number): void {
    const list = this.fired.get(ri);
    if (list && list.length >= MAX_CANDIDATES) return;
    const rule = RULES[ri]!;
    this.work += 4;
    for (const alt of rule.when) {
      let ok = true;
      for (const group of alt) {
        let any = false;
        for (const c of group) {
          this.work++;
          if (this.near(c, pos, rule.window)) {
            any = true;
            break;
          }
        }
        if (!any) {
          ok = false;
          break;
        }
      }
      if (ok) {
        // Past the cap every further match counts as real: many matches cannot hide one.
        const at = { pos, sentence: this.sentence, real: (list?.length ?? 0) + 1 >= MAX_CANDIDATES };
        if (list) list.push(at);
        else this.fired.set(ri, [at]);
        return;
      }
    }
  }
}

function partOfName(text: string, start: number, end: number): boolean {
  const before = start > 0 ? text.charCodeAt(start - 1) : 32;
  return (
    before === 46 ||
    before === 47 ||
    (end < text.length && text.charCodeAt(end) === 46 && isWordAt(text, end + 1))
  );
}

function isWordAt(text: string, i: number): boolean {
  if (i < 0 || i >= text.length) return false;
  return foldCode(text.charCodeAt(i)) !== 0;
}

/** A verb inside code (`requests.post(`, `send_email`, `$run`) is not an imperative to the model. */
function standaloneAt(text: string, start: number, end: number): boolean {
  const before = start > 0 ? text.charCodeAt(start - 1) : 32;
  const after = end < text.length ? text.charCodeAt(end) : 32;
  // . _ / $ = # \ ` before, ( _ / = \ ` after.
  if (before === 46 || before === 95 || before === 47 || before === 36 || before === 61 || before === 35)
    return false;
  if (before === 92 || before === 96 || after === 92 || after === 96) return false;
  if (before === 45 || after === 45) return false;
  if (after === 40 || after === 95 || after === 47 || after === 61) return false;
  // HTML text (<b>Send</b>) and HTTP methods before a path ("POST /graphql").
  if (before === 62 || after === 60) return false;
  if (after === 32 && end + 1 < text.length && text.charCodeAt(end + 1) === 47) return false;
  if (after === 46 && isWordAt(text, end + 1)) return false;
  // A quoted word ("POST", 'send') is a value in code.
  if ((before === 34 || before === 39) && after === before) return false;
  return true;
}

/**
 * Scans one text for concept rules. The text must be a layer from normalizeForScan (NFKC and
 * confusables folded, as the lexicon is): scanInjection does that.
 */
export function scanConcepts(text: string): ConceptResult {
  const st = scan(text);
  const result = results(st);
  spareState = st;
  return result;
}

/** A state no scan holds; scans are synchronous, so one is all that is ever idle. */
let spareState: ConceptState | undefined;

/** A fresh state for `text`: the spare one reset, or a new one (the spare is in use or was never made). */
function takeState(text: string): ConceptState {
  const st = spareState;
  if (st === undefined) return new ConceptState(text);
  spareState = undefined;
  st.reset(text);
  return st;
}

function scan(text: string): ConceptState {
  const st = takeState(text);
  const n = text.length;
  const codes = st.codes;
  let i = 0;
  // The previous word, for pairs: its hash and whether only spaces/joiners separate it.
  let prevHash = 0;
  let prevStart = -1;
  let prevEnd = -1;
  // Joined run (ig.nore, api_key): hash of all parts, parts so far.
  let joinedHash = FNV_OFFSET;
  let joinedParts = 0;
  let joinedStart = -1;
  // Run of single letters (i g n o r e).
  let letterRun: number[] = [];
  let letterRunStart = -1;
  let emailAt = false;

  const flushLetterRun = () => {
    // Most words end no run: keep the empty array rather than allocate one per word.
    if (letterRun.length === 0) return;
    if (letterRun.length >= 4) searchLetterRun(st, letterRun, letterRunStart);
    letterRun = [];
    letterRunStart = -1;
  };

  st.work += n;
  while (i < n) {
    const c = text.charCodeAt(i);
    let f = foldCode(c);
    if (f === 0 && c < 128 && LEET_SYMBOL[c] !== 0 && isWordAt(text, i - 1) && isWordAt(text, i + 1))
      f = LEET_SYMBOL[c]!;
    if (f === 0) {
      if (c >= 0x3040 && isCjk(c)) {
        cjkAt(st, text, i);
        prevStart = -1;
        joinedParts = 0;
        flushLetterRun();
        i++;
        continue;
      }
      if (c === 124 && barMayStartCommand(text, i)) {
        for (const d of DANGER_AFTER_BAR) {
          st.work += d.length;
          if (commandAt(text, i, d)) {
            st.record(C.dangerous_command, i);
            break;
          }
        }
      }
      if (c === 64 && isWordAt(text, i - 1) && isWordAt(text, i + 1)) emailAt = true;
      else if (c === 46 && emailAt && isWordAt(text, i + 1)) {
        st.record(C.destination, i);
        emailAt = false;
      } else if (c === 32 || c === 10 || c === 9) emailAt = false;
      if (isSentenceEnd(text, i, c)) {
        st.sentence++;
        prevStart = -1;
        flushLetterRun();
      }
      i++;
      continue;
    }
    // A word: fold and hash it, checking stems as it grows.
    const start = i;
    let h = FNV_OFFSET;
    let len = 0;
    let beforeLast = h;
    let stemHit: number[] | undefined;
    let letters = 0;
    while (i < n) {
      const ch = text.charCodeAt(i);
      let fc = foldCode(ch);
      if (fc === 0 && ch < 128 && LEET_SYMBOL[ch] !== 0 && len > 0 && isWordAt(text, i + 1))
        fc = LEET_SYMBOL[ch]!;
      if (fc === 0) break;
      if (ch > 57 || ch < 48) letters++;
      beforeLast = h;
      h = hashStep(h, fc);
      if (len < 64) codes[len] = fc;
      len++;
      if (len >= 4 && stemHit === undefined && stemFilter[h & MASK] === 1) stemHit = stemMap.get(h);
      i++;
    }
    const end = i;
    if (letters === 0 || (len <= 3 && letters < len)) {
      // A number ("14", "2024") or a short code ("k1", "v2") is not leetspeak for a word.
      flushLetterRun();
      prevStart = -1;
      joinedParts = 0;
      continue;
    }
    const hz = len > 1 && codes[Math.min(len, 64) - 1] === 122 ? hashStep(beforeLast, 115) : h;
    // Whether the word stands alone only matters to a lexicon hit, which most words are not:
    // decide it only when a filter lets the word through.
    const mayHit =
      stemHit !== undefined ||
      (len >= 8 && len <= 64) ||
      wordFilter[h & MASK] === 1 ||
      (hz !== h && wordFilter[hz & MASK] === 1);
    const standalone =
      mayHit &&
      !(
        prevStart >= 0 &&
        start - prevEnd === 1 &&
        determinerFilter[prevHash & MASK] === 1 &&
        DETERMINER_HASHES.has(prevHash)
      ) &&
      standaloneAt(text, start, end);
    if (start > 0 && text.charCodeAt(start - 1) === 46 && !isWordAt(text, start - 2) && DOTFILES.has(h))
      st.hit([C.secret], start - 1, end, true);

    // Single letters separated by one character form a run ("i g n o r e", "i.g.n.o.r.e").
    const singleSep = prevEnd >= 0 && start - prevEnd === 1 && text.charCodeAt(prevEnd) !== 10;
    if (len === 1 && (letterRun.length === 0 || singleSep)) {
      if (letterRun.length === 0) letterRunStart = start;
      letterRun.push(codes[0]!);
    } else {
      flushLetterRun();
      if (len === 1) {
        letterRunStart = start;
        letterRun.push(codes[0]!);
      }
    }

    const commands = commandFilter[h & MASK] === 1 ? DANGER_BY_WORD.get(h) : undefined;
    if (commands) {
      // "/dev/tcp/" starts before its first word.
      for (const d of commands) {
        st.work += d.length;
        if (commandAt(text, d.startsWith("/") ? start - 1 : start, d)) {
          st.record(C.dangerous_command, start);
          break;
        }
      }
    }
    lookupWord(st, h, hz, start, end, standalone);
    if (stemHit) st.hit(stemHit, start, end, standalone);
    if (len >= 8 && len <= 64) lookupHeads(st, codes, len, start, end, standalone);

    // Pairs: the previous word separated by spaces, hyphens, apostrophes or underscores only.
    if (prevStart >= 0 && start - prevEnd <= 3 && onlyGlue(text, prevEnd, start)) {
      const p = pairHash(prevHash, hz);
      if (pairFilter[p & MASK] === 1) {
        const hit = pairMap.get(p);
        if (hit) st.hit(hit, prevStart, end, standaloneAt(text, prevStart, end));
      }
    }
    // Joined runs: parts separated by exactly one joiner.
    const possessive = len === 1 && codes[0] === 115 && text.charCodeAt(prevEnd) !== 46;
    if (joinedParts > 0 && start - prevEnd === 1 && JOINER[text.charCodeAt(prevEnd)] === 1 && !possessive) {
      for (let k = 0; k < Math.min(len, 64); k++) joinedHash = hashStep(joinedHash, codes[k]!);
      joinedParts++;
      if (wordFilter[joinedHash & MASK] === 1) {
        const hit = wordMap.get(joinedHash);
        if (hit) st.hit(hit, joinedStart, end, standaloneAt(text, joinedStart, end));
      }
    } else {
      joinedHash = h;
      joinedParts = 1;
      joinedStart = start;
    }
    prevHash = hz;
    prevStart = start;
    prevEnd = end;
  }
  flushLetterRun();
  return st;
}

function onlyGlue(text: string, from: number, to: number): boolean {
  for (let k = from; k < to; k++) {
    const c = text.charCodeAt(k);
    if (c !== 32 && c !== 45 && c !== 39 && c !== 95 && c !== 0x2019 && c !== 9) return false;
  }
  return true;
}

function isSentenceEnd(text: string, i: number, c: number): boolean {
  if (c === 0x3002 || c === 0xff01 || c === 0xff1f) return true;
  if (c === 10) return i + 1 < text.length && text.charCodeAt(i + 1) === 10;
  if (c === 46 || c === 33 || c === 63) {
    const next = i + 1 < text.length ? text.charCodeAt(i + 1) : 32;
    return next === 32 || next === 10 || next === 9;
  }
  return false;
}

function lookupWord(
  st: ConceptState,
  h: number,
  hz: number,
  start: number,
  end: number,
  standalone: boolean,
): void {
  if (wordFilter[h & MASK] === 1) {
    const hit = wordMap.get(h);
    if (hit) {
      addressedByPunctuation(st, hit, start, end);
      st.hit(hit, start, end, standalone);
      return;
    }
  }
  if (hz !== h && wordFilter[hz & MASK] === 1) {
    const hit = wordMap.get(hz);
    if (hit) st.hit(hit, start, end, standalone);
  }
}

/** "@copilot", "Claude, ...", "LLM: ...": an AI word addressed directly. */
function addressedByPunctuation(st: ConceptState, hit: readonly number[], start: number, end: number): void {
  if (!hit.includes(C.ai)) return;
  const text = st.text;
  const before = start > 0 ? text.charCodeAt(start - 1) : 32;
  const after = end < text.length ? text.charCodeAt(end) : 32;
  if (before === 64) st.record(C.addressed, start);
  else if (
    after === 58 &&
    end + 2 < text.length &&
    text.charCodeAt(end + 1) === 32 &&
    isWordAt(text, end + 2)
  )
    st.record(C.addressed, start);
  else if (after === 44 && atSentenceStart(text, start)) st.record(C.addressed, start);
}

/** Whether at most one word separates `start` from the start of its sentence or line ("AI agent, ..."). */
function atSentenceStart(text: string, start: number): boolean {
  let spaces = 0;
  for (let k = start - 1; k >= 0 && k >= start - 24; k--) {
    const c = text.charCodeAt(k);
    if (c === 10 || c === 46 || c === 33 || c === 63 || c === 58) return true;
    if (c === 32 && ++spaces > 1) return false;
  }
  return start <= 24 && spaces <= 1;
}

function lookupHeads(
  st: ConceptState,
  codes: Uint16Array,
  len: number,
  start: number,
  end: number,
  standalone: boolean,
): void {
  let h = FNV_OFFSET;
  st.work += len;
  for (let k = len - 1; k >= 1; k--) {
    h = hashStep(h, codes[k]!);
    if (len - k >= 4 && headFilter[h & MASK] === 1) {
      const hit = headMap.get(h);
      if (hit) st.hit(hit, start, end, standalone);
    }
  }
}

function searchLetterRun(st: ConceptState, run: readonly number[], start: number): void {
  for (let s = 0; s < run.length; s++) {
    let node: TrieNode | undefined = trie;
    for (let k = s; k < run.length && node; k++) {
      st.work++;
      node = node.next.get(run[k]!);
      if (node?.concepts) st.hit(node.concepts, start + 2 * s, start + 2 * (k + 1), true);
    }
  }
}

function cjkAt(st: ConceptState, text: string, i: number): void {
  const terms = cjkTerms.get(text.charCodeAt(i));
  if (!terms) return;
  for (const t of terms) {
    st.work += t.term.length;
    if (text.startsWith(t.term, i)) st.hit(t.concepts, i, i + t.term.length, true);
  }
}

function results(st: ConceptState): ConceptResult {
  const findings: ConceptFinding[] = [];
  const mentions: string[] = [];
  for (const [ri, list] of st.fired) {
    const rule = RULES[ri]!;
    const real = list.some(
      (at) =>
        at.real || (!nearMeta(st, at.pos, at.sentence) && !(rule.unless.length > 0 && nearOwn(st, at.pos))),
    );
    if (real) findings.push({ rule: rule.id, tier: rule.tier, category: rule.category });
    else mentions.push(rule.id);
  }
  return { findings, mentions };
}

function nearOwn(st: ConceptState, pos: number): boolean {
  return (
    st.ownPositions.length >= 4096 || st.ownPositions.some((p) => Math.abs(p - pos) <= SUPPRESS_DISTANCE)
  );
}

/** Whether a word of discussion (attack, example, ...) is near: metaPositions ascend, so bisect. */
function nearMeta(st: ConceptState, pos: number, sentence: number): boolean {
  const m = st.metaPositions;
  if (m.length >= 4096) return true;
  let lo = 0;
  let hi = m.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (m[mid]!.pos < pos - WINDOW) lo = mid + 1;
    else hi = mid;
  }
  for (let k = lo; k < m.length && m[k]!.pos <= pos + WINDOW; k++) {
    if (Math.abs(m[k]!.sentence - sentence) <= 1) return true;
  }
  return false;
}

/** Steps the scan of `text` takes per character (see ConceptState.work): for the cost property tests. */
export function conceptWorkPerChar(text: string): number {
  return text.length === 0 ? 0 : scan(text).work / text.length;
}

/** Where each rule matched (first match per rule, before the mention check): for tests and tuning. */
export function conceptMatches(text: string): { rule: string; at: number }[] {
  const st = scan(text);
  return [...st.fired].map(([ri, list]) => ({ rule: RULES[ri]!.id, at: list[0]!.pos }));
}

export const CONCEPT_RULE_IDS: readonly string[] = RULES.map((x) => x.id);
