// Rebuilds Llama-2's Hugging Face tokenizer.json (32000 pieces, 61249 merges) offline.
//
// The data come from `llama-tokenizer-js@1.2.2`, which ships the vocabulary and merges of the
// original tokenizer.json in compressed form and decodes them when its module loads:
//   vocabById: string[32000]         piece of each id, in id order (ids 0..2 are <unk> <s> </s>,
//                                    3..258 the byte pieces <0x00>..<0xFF>)
//   merges:    Map<"a b", priority>  insertion order = merge rank, priority = 2*rank + 1
// A merge "a b" joins the adjacent pieces a and b into the piece a+b. No piece contains a plain
// space (spaces are "▁"), so the "a b" string form is unambiguous.
//
// The module is plain ESM with no Node built-ins (it uses atob and TextDecoder), so this file
// works unchanged in Node, Deno and the browser.

import llamaTokenizerJs from 'llama-tokenizer-js';
import { LLAMA2_BOS, LLAMA2_EOS, LLAMA2_UNK } from './llama2-config.ts';

export { llama2TokenizerConfigJson, LLAMA2_CHAT_TEMPLATE } from './llama2-config.ts';
export type { Llama2TokenizerConfigJson } from './llama2-config.ts';

/** Number of pieces in Llama-2's SentencePiece vocabulary. */
export const LLAMA2_VOCAB_SIZE = 32000;

/** One entry of tokenizer.json's `added_tokens` (wire spelling). */
export interface HfAddedToken {
  id: number;
  content: string;
  single_word: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
  special: boolean;
}

/** The subset of the tokenizer.json layout that Llama-2 uses (wire spelling). */
export interface Llama2TokenizerJson {
  version: string;
  truncation: null;
  padding: null;
  added_tokens: HfAddedToken[];
  normalizer: {
    type: 'Sequence';
    normalizers: [
      { type: 'Prepend'; prepend: string },
      { type: 'Replace'; pattern: { String: string }; content: string },
    ];
  };
  pre_tokenizer: null;
  post_processor: null;
  decoder: {
    type: 'Sequence';
    decoders: [
      { type: 'Replace'; pattern: { String: string }; content: string },
      { type: 'ByteFallback' },
      { type: 'Fuse' },
      { type: 'Strip'; content: string; start: number; stop: number },
    ];
  };
  model: {
    type: 'BPE';
    dropout: null;
    unk_token: string;
    continuing_subword_prefix: null;
    end_of_word_suffix: null;
    fuse_unk: boolean;
    byte_fallback: boolean;
    ignore_merges: boolean;
    /** piece -> id, 32000 entries. */
    vocab: Record<string, number>;
    /** "left right" pairs, highest priority first. */
    merges: string[];
  };
}

/**
 * Why `pieces` (a tokenizer.model's, in id order) is not Llama-2's SentencePiece vocabulary, or null
 * when it is, piece for piece.
 */
export function llama2VocabularyMismatch(pieces: readonly string[]): string | null {
  const ours = llamaTokenizerJs.vocabById;
  if (pieces.length !== ours.length) return `it has ${pieces.length} pieces, Llama-2's has ${ours.length}`;
  for (let id = 0; id < ours.length; id++) {
    if (pieces[id] !== ours[id]) return `piece ${id} is ${JSON.stringify(pieces[id])} where Llama-2's is ${JSON.stringify(ours[id])}`;
  }
  return null;
}

function specialToken(id: number, content: string): HfAddedToken {
  return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true };
}

/**
 * A fresh tokenizer.json object for Llama-2. It differs from the file in Meta's HF repos only in
 * `post_processor`: null here, because callers add BOS themselves (LlamaTokenizer.encode).
 *
 * SentencePiece semantics in HF terms: the normalizer prepends the dummy-prefix "▁" and turns every
 * space into "▁"; there is no pre-tokenizer (the whole text is one BPE word); characters missing
 * from the vocabulary fall back to their UTF-8 byte pieces. The decoder undoes that and strips
 * one leading space.
 */
export function buildLlama2TokenizerJson(): Llama2TokenizerJson {
  const pieces = llamaTokenizerJs.vocabById;
  if (pieces.length !== LLAMA2_VOCAB_SIZE) {
    throw new Error(`llama-tokenizer-js vocabulary has ${pieces.length} pieces, expected ${LLAMA2_VOCAB_SIZE}`);
  }
  // A null-prototype object so that no piece can collide with Object.prototype members.
  const vocab: Record<string, number> = Object.create(null) as Record<string, number>;
  pieces.forEach((piece, id) => {
    vocab[piece] = id;
  });
  // Sort by priority rather than trusting Map order; priorities are distinct.
  const merges = [...llamaTokenizerJs.merges.entries()].sort((a, b) => a[1] - b[1]).map(([pair]) => pair);

  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [specialToken(0, LLAMA2_UNK), specialToken(1, LLAMA2_BOS), specialToken(2, LLAMA2_EOS)],
    normalizer: {
      type: 'Sequence',
      normalizers: [
        { type: 'Prepend', prepend: '▁' },
        { type: 'Replace', pattern: { String: ' ' }, content: '▁' },
      ],
    },
    pre_tokenizer: null,
    post_processor: null,
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: '▁' }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        { type: 'Strip', content: ' ', start: 1, stop: 0 },
      ],
    },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: LLAMA2_UNK,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab,
      merges,
    },
  };
}
