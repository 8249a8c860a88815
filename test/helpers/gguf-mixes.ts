// The model of the GGUF-mixes fixtures (scripts/fixtures/gguf-mixes.ts records them, test/gguf-mixes.test.ts
// reads them): random weights, every matrix dimension a multiple of 256 (so llama.cpp quantizes with its
// K-quants as on Llama-2), one layer and a small vocabulary to keep the twelve files small.
import type { LlamaConfig } from '../../checkpoint/config.ts';

export const MIXES_CONFIG: LlamaConfig = {
  dim: 256,
  hiddenDim: 256,
  nLayers: 1,
  nHeads: 4,
  nKvHeads: 2,
  headDim: 64,
  vocabSize: 288,
  maxSeqLen: 256,
  normEps: 1e-5,
  ropeTheta: 10000,
  bosTokenId: 1,
  eosTokenId: 2,
  tieWordEmbeddings: false,
};
export const MIXES_SEED = 20261130;
export const MIXES_PROMPT = [1, 100, 200, 150, 42, 270];
export const MIXES_TOKENS = 16;

/**
 * A SentencePiece-style tokenizer.json for the 288-token vocabulary (llama.cpp needs one to load the
 * model): <unk> <s> </s>, the 256 byte pieces, "▁", a..z, and "▁t", "he" with their merges.
 */
export function mixesTokenizerJson(): object {
  const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  const pieces = ['<unk>', '<s>', '</s>'];
  for (let b = 0; b < 256; b++) pieces.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
  pieces.push('▁', ...'abcdefghijklmnopqrstuvwxyz', '▁t', 'he');
  if (pieces.length !== MIXES_CONFIG.vocabSize) throw new Error(`mixes vocabulary has ${pieces.length} pieces`);
  const vocab: Record<string, number> = Object.create(null) as Record<string, number>;
  pieces.forEach((p, id) => (vocab[p] = id));
  return {
    version: '1.0', truncation: null, padding: null,
    added_tokens: [special(0, '<unk>'), special(1, '<s>'), special(2, '</s>')],
    normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '▁' }, { type: 'Replace', pattern: { String: ' ' }, content: '▁' }] },
    pre_tokenizer: null, post_processor: null,
    decoder: { type: 'Sequence', decoders: [{ type: 'Replace', pattern: { String: '▁' }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 0 }] },
    model: {
      type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: true, byte_fallback: true, ignore_merges: false, vocab, merges: ['▁ t', 'h e'],
    },
  };
}
