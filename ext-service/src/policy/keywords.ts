/**
 * A keyword index for the injection rules' prefilter: one linear pass over the text finds where
 * anchor words (and word pairs) occur, so each rule only runs in windows around its anchors.
 *
 * Anchor syntax (lower case):
 *   "word"            a whole word ([a-z0-9_]+)
 *   "word next"       a word followed (after whitespace) by another word or one punctuation mark
 *   anything else     a literal searched case-insensitively anywhere ("<|", "![", ".ssh", "p.s")
 *
 * The scan hashes each token while reading it (FNV-1a over lower-cased ASCII) and looks words and
 * adjacent pairs up in 64 Ki-entry filters, so it allocates nothing for ordinary text. That is
 * several times cheaper than a large case-insensitive alternation regex, the naive prefilter.
 * A hash collision only widens the windows a rule runs in; it cannot hide a match.
 */

export type KeywordHits = Map<string, number[]>;

/** The FNV-1a offset basis as a signed 32-bit integer, so hashes stay small integers. */
const FNV_OFFSET = 0x811c9dc5 | 0;
const FNV_PRIME = 0x01000193;

const OTHER = 0;
const SPACE = 1;
const WORD = 2;
/** Classes of ASCII characters for the scan loop (U+00A0 is whitespace too). */
const CLASS = new Uint8Array(128);
/** ASCII with letters lower-cased. */
const FOLD = new Uint8Array(128);
for (let c = 0; c < 128; c++) {
  CLASS[c] = isWordCode(c) ? WORD : isSpaceCode(c) ? SPACE : OTHER;
  FOLD[c] = foldCode(c);
}

function isWordCode(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57) || c === 95;
}

function isSpaceCode(c: number): boolean {
  return c === 32 || c === 9 || c === 10 || c === 13 || c === 12 || c === 11 || c === 160;
}

function foldCode(c: number): number {
  return c >= 65 && c <= 90 ? c | 32 : c;
}

/** FNV-1a of a token, ASCII letters lower-cased (must match the scan loop). */
function hashToken(token: string): number {
  let h = FNV_OFFSET;
  for (let i = 0; i < token.length; i++) h = Math.imul(h ^ foldCode(token.charCodeAt(i)), FNV_PRIME);
  return h;
}

function pairHash(first: number, second: number): number {
  return (Math.imul(first, 0x9e3779b1) ^ second) | 0;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

export class KeywordIndex {
  private readonly singles = new Map<number, string>();
  private readonly pairs = new Map<number, string>();
  /** Low 16 bits of single-word and pair hashes: one array read rejects most tokens. */
  private readonly singleFilter = new Uint8Array(65536);
  private readonly pairFilter = new Uint8Array(65536);
  private readonly special: RegExp | undefined;
  /** Non-word literals by their first character. */
  private readonly specialsAt = new Map<number, string[]>();
  /** Keys whose hits do not count towards `maxHits` (start words: see find). */
  private readonly uncounted = new Set<string>();

  /**
   * `starts` are further words whose positions are reported like anchors' but, being common,
   * do not count towards the "all" limit: a rule only uses them once its own anchors were found.
   */
  constructor(anchors: Iterable<string>, starts: Iterable<string> = []) {
    const specials: string[] = [];
    const anchorSet = new Set([...anchors].map((a) => a.toLowerCase()));
    for (const w of starts) {
      const a = w.toLowerCase();
      if (!/^[a-z0-9_]+$/.test(a)) throw new Error(`start word '${w}' is not a word`);
      if (!anchorSet.has(a)) this.uncounted.add(a);
    }
    for (const raw of [...anchorSet, ...this.uncounted]) {
      const a = raw.toLowerCase();
      const pair = /^([a-z0-9_]+) ([a-z0-9_]+|[^a-z0-9_\s])$/.exec(a);
      if (/^[a-z0-9_]+$/.test(a)) {
        const h = hashToken(a) | 0;
        this.singles.set(h, a);
        this.singleFilter[h & 0xffff] = 1;
      } else if (pair) {
        const h = pairHash(hashToken(pair[1]!), hashToken(pair[2]!));
        this.pairs.set(h, a);
        this.pairFilter[h & 0xffff] = 1;
      } else specials.push(a);
    }
    const literals = [...new Set(specials)];
    for (const a of literals) {
      const at = a.charCodeAt(0);
      const list = this.specialsAt.get(at);
      if (list) list.push(a);
      else this.specialsAt.set(at, [a]);
    }
    this.special = literals.length
      ? new RegExp(
          literals
            .sort((x, y) => y.length - x.length)
            .map(escapeRegExp)
            .join("|"),
          "gi",
        )
      : undefined;
  }

  /**
   * Anchor keys found in `text` with their positions. Returns "all" when more than `maxHits`
   * occurrences are seen (windows would cover the text anyway), undefined when there are none.
   */
  find(text: string, maxHits = 2048): KeywordHits | "all" | undefined {
    const hits: KeywordHits = new Map();
    let total = 0;
    const n = text.length;
    // Locals: the loop calls into Map code, after which fields would be reloaded.
    const singleFilter = this.singleFilter;
    const pairFilter = this.pairFilter;
    let prevHash = 0;
    let prevStart = -1;
    let i = 0;
    while (i < n) {
      let c = text.charCodeAt(i);
      const cls = c < 128 ? CLASS[c]! : c === 160 ? SPACE : OTHER;
      if (cls === SPACE) {
        i++;
        continue;
      }
      const start = i;
      let h = FNV_OFFSET;
      if (cls === WORD) {
        do {
          h = Math.imul(h ^ FOLD[c]!, FNV_PRIME);
          i++;
        } while (i < n && (c = text.charCodeAt(i)) < 128 && CLASS[c] === WORD);
        if (singleFilter[h & 0xffff] === 1) {
          const key = this.singles.get(h);
          if (key !== undefined && add(hits, key, start) && !this.uncounted.has(key) && ++total > maxHits)
            return "all";
        }
      } else {
        // One punctuation mark (or any other character) is a token of its own.
        h = Math.imul(h ^ c, FNV_PRIME);
        i++;
      }
      if (prevStart >= 0) {
        const p = pairHash(prevHash, h);
        if (pairFilter[p & 0xffff] === 1) {
          const key = this.pairs.get(p);
          if (key !== undefined && add(hits, key, prevStart) && ++total > maxHits) return "all";
        }
      }
      prevHash = h;
      prevStart = start;
    }
    if (this.special) {
      const re = this.special;
      re.lastIndex = 0;
      let m: RegExpExecArray | null;
      // The regex reports one literal per position; resuming one character on and checking every
      // literal with that first character finds overlapping and nested occurrences too.
      while ((m = re.exec(text)) !== null) {
        const q = m.index;
        for (const key of this.specialsAt.get(foldCode(text.charCodeAt(q))) ?? []) {
          if (literalAt(text, q, key) && add(hits, key, q) && ++total > maxHits) {
            re.lastIndex = 0;
            return "all";
          }
        }
        re.lastIndex = q + 1;
      }
      re.lastIndex = 0;
    }
    // Start words alone do not make a rule run.
    return total === 0 ? undefined : hits;
  }

  /** The literal regex for non-word anchors (for the backtracking tests). */
  get specialPattern(): RegExp | undefined {
    return this.special;
  }
}

/** Whether `literal` (lower case) occurs at `start`, ASCII letters compared case-insensitively. */
function literalAt(text: string, start: number, literal: string): boolean {
  if (start + literal.length > text.length) return false;
  for (let j = 0; j < literal.length; j++) {
    if (foldCode(text.charCodeAt(start + j)) !== literal.charCodeAt(j)) return false;
  }
  return true;
}

function add(hits: KeywordHits, key: string, at: number): true {
  let list = hits.get(key);
  if (!list) hits.set(key, (list = []));
  list.push(at);
  return true;
}
