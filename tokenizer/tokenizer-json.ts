// The one builder of a SentencePiece-BPE tokenizer.json in Hugging Face's layout, as Llama-2's: used for the
// built-in Llama-2 vocabulary (llama2-vocab.ts) and for a GGUF file's vocabulary (checkpoint/gguf-tokenizer.ts).
//
// SentencePiece semantics in HF terms: the normalizer prepends the dummy-prefix "▁" (when the vocabulary
// asks for it) and turns every space into "▁"; there is no pre-tokenizer (the whole text is one BPE word);
// characters missing from the vocabulary fall back to their UTF-8 byte pieces. The decoder undoes that and
// strips the one leading space the dummy prefix made. `post_processor` is null: callers add BOS themselves
// (LlamaTokenizer.encode).

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

type Prepend = { type: 'Prepend'; prepend: string };
type Replace = { type: 'Replace'; pattern: { String: string }; content: string };

/** The subset of the tokenizer.json layout that SentencePiece-BPE vocabularies use (wire spelling). */
export interface SpmTokenizerJson {
  version: string;
  truncation: null;
  padding: null;
  added_tokens: HfAddedToken[];
  /** [Prepend "▁", Replace " " -> "▁"], or only the Replace without the dummy prefix. */
  normalizer: { type: 'Sequence'; normalizers: (Prepend | Replace)[] };
  pre_tokenizer: null;
  post_processor: null;
  /** Replace "▁" -> " ", ByteFallback, Fuse, and Strip one leading space with the dummy prefix. */
  decoder: {
    type: 'Sequence';
    decoders: (Replace | { type: 'ByteFallback' } | { type: 'Fuse' } | { type: 'Strip'; content: string; start: number; stop: number })[];
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
    /** piece -> id. */
    vocab: Record<string, number>;
    /** "left right" pairs, highest priority first. */
    merges: string[];
  };
}

/** An added token as SentencePiece's control / unknown (special) or user-defined (not special) pieces are. */
export function addedToken(id: number, content: string, special = true): HfAddedToken {
  return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special };
}

/**
 * piece -> id for pieces in id order, in a null-prototype object so that no piece can collide with
 * Object.prototype members. When a piece occurs twice (some converted vocabularies have that), the first
 * id keeps it.
 */
export function vocabFromPieces(pieces: readonly string[]): Record<string, number> {
  const vocab = Object.create(null) as Record<string, number>;
  pieces.forEach((p, id) => {
    if (!(p in vocab)) vocab[p] = id;
  });
  return vocab;
}

export interface SpmTokenizerParts {
  vocab: Record<string, number>;
  merges: string[];
  addedTokens: HfAddedToken[];
  unkToken: string;
  /** SentencePiece's dummy prefix ("▁" before the text); default true. */
  spacePrefix?: boolean;
}

/** A fresh tokenizer.json object for a SentencePiece-BPE vocabulary (see the header). */
export function spmTokenizerJson(p: SpmTokenizerParts): SpmTokenizerJson {
  const spacePrefix = p.spacePrefix ?? true;
  const replace: Replace = { type: 'Replace', pattern: { String: ' ' }, content: '▁' };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: p.addedTokens,
    normalizer: { type: 'Sequence', normalizers: spacePrefix ? [{ type: 'Prepend', prepend: '▁' }, replace] : [replace] },
    pre_tokenizer: null,
    post_processor: null,
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: '▁' }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        ...(spacePrefix ? [{ type: 'Strip' as const, content: ' ', start: 1, stop: 0 }] : []),
      ],
    },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: p.unkToken,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab: p.vocab,
      merges: p.merges,
    },
  };
}
