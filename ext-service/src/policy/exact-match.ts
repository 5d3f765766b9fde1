import { GATEWAY_CREDENTIAL_KIND, MIN_EXACT_SECRET_LENGTH, type DlpMatch } from "./dlp.js";

/**
 * One credential the gateway sent upstream for a single exchange (an exchanged per-agent token),
 * found verbatim in what the server answers. The held static credentials are compiled into the
 * DLP scanner once per config; a per-request value cannot be, so it is searched for on its own,
 * with Knuth-Morris-Pratt: linear in the text whatever the server writes.
 */
export class HeldValue {
  /** fail[i]: length of the longest proper border of value[0..i]. */
  private readonly fail: Int32Array;

  constructor(readonly value: string) {
    const fail = new Int32Array(value.length);
    for (let i = 1, k = 0; i < value.length; i++) {
      while (k > 0 && value[i] !== value[k]) k = fail[k - 1]!;
      if (value[i] === value[k]) k++;
      fail[i] = k;
    }
    this.fail = fail;
  }

  /** Values shorter than DLP's exact-match minimum would turn up in ordinary text. */
  static of(value: string): HeldValue | undefined {
    return value.length >= MIN_EXACT_SECRET_LENGTH ? new HeldValue(value) : undefined;
  }

  /** Non-overlapping occurrences in `text`, in order, as DLP matches of `gateway_credential`. */
  find(text: string): DlpMatch[] {
    const out: DlpMatch[] = [];
    const { value, fail } = this;
    if (text.length < value.length) return out;
    for (let i = 0, k = 0; i < text.length; i++) {
      while (k > 0 && text[i] !== value[k]) k = fail[k - 1]!;
      if (text[i] === value[k]) k++;
      if (k === value.length) {
        out.push({ kind: GATEWAY_CREDENTIAL_KIND, category: "secret", start: i + 1 - k, end: i + 1 });
        k = 0; // non-overlapping: start afresh after a match
      }
    }
    return out;
  }
}

/**
 * DLP's matches with the held values' added: in text order, without overlaps (the earlier match
 * wins; at one start, the longer).
 */
export function withHeldValues(matches: DlpMatch[], text: string, held: readonly HeldValue[]): DlpMatch[] {
  if (held.length === 0) return matches;
  const found = held.flatMap((h) => h.find(text));
  if (found.length === 0) return matches;
  const all = [...matches, ...found].sort((a, b) => a.start - b.start || b.end - a.end);
  const out: DlpMatch[] = [];
  for (const m of all) {
    if (out.length > 0 && m.start < out[out.length - 1]!.end) continue;
    out.push(m);
  }
  return out;
}
