// Rebuilds Llama-2's Hugging Face tokenizer.json (32000 pieces, 61249 merges) offline, through the one
// tokenizer.json builder (tokenizer-json.ts).
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
import { addedToken, spmTokenizerJson, vocabFromPieces, type SpmTokenizerJson } from './tokenizer-json.ts';

export { llama2TokenizerConfigJson, LLAMA2_CHAT_TEMPLATE } from './llama2-config.ts';
export type { Llama2TokenizerConfigJson } from './llama2-config.ts';

/** Number of pieces in Llama-2's SentencePiece vocabulary. */
export const LLAMA2_VOCAB_SIZE = 32000;

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

/**
 * A fresh tokenizer.json object for Llama-2 (tokenizer-json.ts). It differs from the file in Meta's HF repos
 * only in `post_processor`: null here, because callers add BOS themselves (LlamaTokenizer.encode).
 */
export function buildLlama2TokenizerJson(): SpmTokenizerJson {
  const pieces = llamaTokenizerJs.vocabById;
  if (pieces.length !== LLAMA2_VOCAB_SIZE) {
    throw new Error(`llama-tokenizer-js vocabulary has ${pieces.length} pieces, expected ${LLAMA2_VOCAB_SIZE}`);
  }
  // Sort by priority rather than trusting Map order; priorities are distinct.
  const merges = [...llamaTokenizerJs.merges.entries()].sort((a, b) => a[1] - b[1]).map(([pair]) => pair);
  return spmTokenizerJson({
    vocab: vocabFromPieces(pieces),
    merges,
    addedTokens: [addedToken(0, LLAMA2_UNK), addedToken(1, LLAMA2_BOS), addedToken(2, LLAMA2_EOS)],
    unkToken: LLAMA2_UNK,
  });
}

let llama2Text: string | null = null;

/**
 * Llama-2's tokenizer.json as text (what a model folder's tokenizer.json file holds), built once per process:
 * the built-in vocabulary of the default model, the tiny random model and a folder with only tokenizer.model.
 */
export function llama2TokenizerJsonText(): string {
  llama2Text ??= JSON.stringify(buildLlama2TokenizerJson());
  return llama2Text;
}
