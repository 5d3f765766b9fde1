/**
 * One pass over a text for many literal anchors ("ghp_", "AKIA", "-----BEGIN", "password"): the
 * DLP secret kinds register theirs here, and any other scanner (the injection keywords, for one)
 * can add its own to the same automaton, so that N detectors cost one walk over the text instead
 * of N regex passes.
 *
 * The automaton is keyed by the anchor's first three characters (hashed into a 64 Ki-entry
 * table): the walk reads each character once and does one table lookup per position; only where
 * the triple may start some anchor are the anchors of that pair compared. Handlers are called in text
 * order, and for one position in the order they were added. Anchors are at least three ASCII
 * characters; case-insensitive ones compare ASCII letters without case.
 */

/** Work counted where scanners loop (see dlp.ts ScanMeter): candidates compared, handler steps. */
export interface AnchorMeter {
  steps: number;
}

/** Called at each occurrence of an anchor: `at` is the index of its first character. */
export type AnchorHandler = (text: string, at: number, meter: AnchorMeter) => void;

interface Entry {
  anchor: string;
  caseInsensitive: boolean;
  handler: AnchorHandler;
}

function lower(c: number): number {
  return c >= 65 && c <= 90 ? c | 32 : c;
}

function startsWithIgnoringCase(text: string, at: number, anchorLower: string): boolean {
  if (at + anchorLower.length > text.length) return false;
  for (let k = 0; k < anchorLower.length; k++) {
    if (lower(text.charCodeAt(at + k)) !== anchorLower.charCodeAt(k)) return false;
  }
  return true;
}

export class AnchorAutomaton {
  /** Bucket number + 1 for each hashed triple of ASCII characters (see slot); 0: no anchor. */
  private readonly table = new Uint16Array(TABLE_SIZE);
  /** 1 for each pair of ASCII characters (first << 7 | second) that begins an anchor. */
  private readonly pairs = new Uint8Array(128 * 128);
  private readonly buckets: Entry[][] = [];
  private count = 0;
  private readonly registered: string[] = [];

  /** Anchors registered, for tests and documentation. */
  get size(): number {
    return this.count;
  }

  /** The anchors, as registered (case-insensitive ones in lower case). */
  anchors(): string[] {
    return [...this.registered];
  }

  add(anchor: string, handler: AnchorHandler, options: { caseInsensitive?: boolean } = {}): this {
    if (anchor.length < 3 || !/^[\x20-\x7e]+$/.test(anchor)) {
      throw new Error(`anchor ${JSON.stringify(anchor)}: at least three printable ASCII characters`);
    }
    const caseInsensitive = options.caseInsensitive === true;
    const entry: Entry = {
      anchor: caseInsensitive ? anchor.toLowerCase() : anchor,
      caseInsensitive,
      handler,
    };
    const forms = (k: number) => (caseInsensitive ? variants(anchor.charCodeAt(k)) : [anchor.charCodeAt(k)]);
    const keys = new Set<number>();
    for (const a of forms(0)) {
      for (const b of forms(1)) {
        this.pairs[(a << 7) | b] = 1;
        for (const c of forms(2)) keys.add(slot(a, b, c));
      }
    }
    for (const key of keys) {
      let bucket = this.table[key]!;
      if (bucket === 0) {
        this.buckets.push([]);
        bucket = this.buckets.length;
        this.table[key] = bucket;
      }
      this.buckets[bucket - 1]!.push(entry);
    }
    this.count++;
    this.registered.push(entry.anchor);
    return this;
  }

  /** Calls the handler of every anchor occurrence, in text order. */
  scan(text: string, meter: AnchorMeter): void {
    const n = text.length;
    if (n < 3 || this.count === 0) return;
    const table = this.table;
    const pairs = this.pairs;
    // Most positions end at the pair test: one table read per character.
    let c0 = text.charCodeAt(0);
    for (let i = 0; i < n - 2; i++) {
      const c1 = text.charCodeAt(i + 1);
      if ((c0 | c1) < 128 && pairs[(c0 << 7) | c1] === 1) {
        const c2 = text.charCodeAt(i + 2);
        if (c2 < 128) {
          const bucket = table[slot(c0, c1, c2)]!;
          if (bucket !== 0) this.fire(text, i, bucket - 1, meter);
        }
      }
      c0 = c1;
    }
    meter.steps += n >> 4;
  }

  private fire(text: string, at: number, bucket: number, meter: AnchorMeter): void {
    for (const e of this.buckets[bucket]!) {
      meter.steps++;
      const hit = e.caseInsensitive
        ? startsWithIgnoringCase(text, at, e.anchor)
        : text.startsWith(e.anchor, at);
      if (hit) e.handler(text, at, meter);
    }
  }
}

const TABLE_SIZE = 1 << 16;

/**
 * Table slot of three ASCII characters: the 21 bits folded to 16. Two triples may share a slot;
 * that only costs a comparison, since every anchor of the slot is compared in full.
 */
function slot(a: number, b: number, c: number): number {
  const key = (a << 14) | (b << 7) | c;
  return (key ^ (key >>> 11) ^ (key >>> 5)) & (TABLE_SIZE - 1);
}

function variants(c: number): number[] {
  const l = lower(c);
  return l >= 97 && l <= 122 ? [l, l - 32] : [c];
}
