// The model of the GGUF-mixes fixtures (scripts/fixtures/gguf-mixes.ts records them, test/gguf-mixes.test.ts
// reads them): random weights, every matrix dimension a multiple of 256 (so llama.cpp quantizes with its
// K-quants as on Llama-2), one layer and a small vocabulary to keep the twelve files small.
import type { LlamaConfig } from '../../checkpoint/config.ts';
import { smallConfig } from './configs.ts';
import { addedToken, spmTokenizerJson, vocabFromPieces } from '../../tokenizer/tokenizer-json.ts';

export const MIXES_CONFIG: LlamaConfig = smallConfig(256, 256, 1, 4, 2, 64, { vocabSize: 288 });
export const MIXES_SEED = 20261130;
export const MIXES_PROMPT = [1, 100, 200, 150, 42, 270];
export const MIXES_TOKENS = 16;

/**
 * A SentencePiece-style tokenizer.json for the 288-token vocabulary (llama.cpp needs one to load the
 * model): <unk> <s> </s>, the 256 byte pieces, "▁", a..z, and "▁t", "he" with their merges.
 */
export function mixesTokenizerJson(): object {
  const pieces = ['<unk>', '<s>', '</s>'];
  for (let b = 0; b < 256; b++) pieces.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
  pieces.push('▁', ...'abcdefghijklmnopqrstuvwxyz', '▁t', 'he');
  if (pieces.length !== MIXES_CONFIG.vocabSize) throw new Error(`mixes vocabulary has ${pieces.length} pieces`);
  return spmTokenizerJson({
    vocab: vocabFromPieces(pieces),
    merges: ['▁ t', 'h e'],
    addedTokens: [addedToken(0, '<unk>'), addedToken(1, '<s>'), addedToken(2, '</s>')],
    unkToken: '<unk>',
  });
}
