// Token masks from a character-level acceptor (json-constraint.ts): which ids may come next.

import { type AcceptorState, completionCost, feed, isComplete, step } from './json-constraint.ts';

/** The vocabulary sorted by text, with each entry's common prefix length with the one before. */
export interface VocabIndex {
  texts: string[]; // (n,) token texts, sorted by UTF-16 code units
  ids: Int32Array; // (n,) the id of each text
  lcp: Uint16Array; // (n,) common prefix length with the previous text; 0 for the first
  plain: Uint8Array; // (n,) 1 when the text has no '"', '\\' or control character: it stays inside a JSON string
}

const indexCache = new WeakMap<ReadonlyArray<string | null>, VocabIndex>();

/** Sorted index of the non-empty texts (built once per tokenTexts array, then cached). */
export function vocabIndex(tokenTexts: ReadonlyArray<string | null>): VocabIndex {
  const cached = indexCache.get(tokenTexts);
  if (cached) return cached;
  const entries: [string, number][] = [];
  tokenTexts.forEach((t, id) => {
    if (t) entries.push([t, id]);
  });
  entries.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] - b[1]));
  const n = entries.length;
  const index: VocabIndex = { texts: entries.map((e) => e[0]), ids: new Int32Array(n), lcp: new Uint16Array(n), plain: new Uint8Array(n) };
  for (let i = 0; i < n; i++) {
    index.ids[i] = entries[i]![1];
    index.plain[i] = /["\\\u0000-\u001f]/.test(entries[i]![0]) ? 0 : 1;
    if (i === 0) continue;
    const a = entries[i - 1]![0];
    const b = entries[i]![0];
    let k = 0;
    while (k < a.length && k < b.length && a[k] === b[k] && k < 0xffff) k++;
    index.lcp[i] = k;
  }
  indexCache.set(tokenTexts, index);
  return index;
}

/**
 * (vocabSize,) 1 where the token's text keeps the acceptor alive. At a complete state only EOS;
 * if nothing fits (the vocabulary cannot continue), EOS too, so generation ends instead of failing.
 * With `budget` (tokens left, this one included), only tokens after which the value can still be
 * completed, and then ended with EOS, in the tokens that remain (completionCost <= budget - 2): a
 * constrained answer always finishes with "stop", never cut off by max_tokens.
 */
export function allowedMask(index: VocabIndex, state: AcceptorState, eosId: number, vocabSize: number, budget?: number): Uint8Array {
  const mask = new Uint8Array(vocabSize);
  if (isComplete(state)) {
    mask[eosId] = 1;
    return mask;
  }
  const costs = new Map<AcceptorState, number>(); // by identity: plain string text leaves the state object unchanged
  const fits = (s: AcceptorState): boolean => {
    if (budget === undefined) return true;
    let c = costs.get(s);
    if (c === undefined) costs.set(s, (c = completionCost(s)));
    return c <= budget - 2;
  };
  // Inside a JSON string (the common case, and the whole vocabulary is allowed): plain texts keep the
  // state as it is; only the few texts with a quote, backslash or control character are followed.
  if (state.frame.t === 'str' && state.frame.esc === 0) {
    const stay = fits(state);
    let any = false;
    for (let i = 0; i < index.texts.length; i++) {
      const ok = index.plain[i] ? stay : (() => {
        const s = feed(state, index.texts[i]!);
        return s !== null && fits(s);
      })();
      if (ok) {
        mask[index.ids[i]!] = 1;
        any = true;
      }
    }
    if (!any) mask[eosId] = 1;
    return mask;
  }
  // states[k]: the acceptor after the first k characters of the current text. Neighbours in the
  // sorted order share lcp[i] characters, so their states up to there are reused.
  const states: (AcceptorState | null)[] = [state];
  let valid = 0; // states[0..valid] belong to the previous text
  let prevFailed = false; // the previous text failed at character `valid`
  let any = false;
  for (let i = 0; i < index.texts.length; i++) {
    const text = index.texts[i]!;
    const lcp = index.lcp[i]!;
    if (prevFailed && lcp > valid) continue; // shares the failing character
    let k = Math.min(lcp, valid);
    let s = states[k]!;
    let ok = true;
    while (k < text.length) {
      const next = step(s, text[k]!);
      if (!next) {
        ok = false;
        break;
      }
      s = next;
      states[++k] = s;
    }
    valid = k;
    prevFailed = !ok;
    if (ok && !fits(s)) ok = false;
    if (ok) {
      mask[index.ids[i]!] = 1;
      any = true;
    }
  }
  if (!any) mask[eosId] = 1;
  return mask;
}

/**
 * A GenerateRequest.allowedTokens hook: follows the generated ids through the acceptor and
 * returns the mask for the next one (within `maxTokens` in all, when given). If an id outside the mask shows up (a backend that ignored
 * it), the hook gives up and returns null (no constraint) from then on.
 */
export function constrainTokens(
  start: AcceptorState,
  tokenTexts: ReadonlyArray<string | null>,
  eosId: number,
  vocabSize: number,
  maxTokens?: number,
): (generated: number[]) => Uint8Array | null {
  const index = vocabIndex(tokenTexts);
  let state: AcceptorState | null = start;
  let consumed = 0;
  return (generated) => {
    for (; consumed < generated.length && state; consumed++) {
      const text = tokenTexts[generated[consumed]!];
      if (text === undefined || text === null) {
        state = null;
        break;
      }
      let s: AcceptorState | null = state;
      for (let j = 0; s && j < text.length; j++) s = step(s, text[j]!);
      state = s;
    }
    const budget = maxTokens === undefined ? undefined : maxTokens - generated.length;
    return state ? allowedMask(index, state, eosId, vocabSize, budget) : null;
  };
}
