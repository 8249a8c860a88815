// The tokenizer inside a GGUF file, to and from Hugging Face's tokenizer.json, for SentencePiece-BPE
// vocabularies (`tokenizer.ggml.model` = "llama", as Llama-2).
//
// GGUF keeps SentencePiece's own description (llama.cpp's llama-vocab.cpp reads it):
//   tokenizer.ggml.tokens      string[n]  piece of each id ("▁the", "<0x0A>", "<s>")
//   tokenizer.ggml.scores      f32[n]     merge priority of each piece: higher merges first
//   tokenizer.ggml.token_type  i32[n]     1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte
// SentencePiece-BPE (and llama.cpp's SPM tokenizer) repeatedly joins the adjacent pair whose
// concatenation is the vocabulary piece of highest score, leftmost first. HF's BPE model instead
// ranks explicit merges "left right". The two agree when merges are ranked by the score of the piece
// they produce, which is how HF's converter (SentencePieceExtractor) derives them: every split of a
// piece into two pieces of the vocabulary is a merge, ordered by that piece's score (descending),
// ties by the ids of the left then the right part (the converter's order when Llama-2's
// tokenizer.json was made: Llama-2's whitespace pieces "▁▁", "▁▁▁▁", ... share one score).
// Going the other way, a piece's score is minus the rank of the first merge that produces it.

import type { GgufEntry, GgufValue } from './gguf.ts';
import { addedToken, spmTokenizerJson, vocabFromPieces, type HfAddedToken } from '../tokenizer/tokenizer-json.ts';

export const TOKEN_TYPE = { normal: 1, unknown: 2, control: 3, userDefined: 4, unused: 5, byte: 6 } as const;

const BYTE_PIECE = /^<0x[0-9A-Fa-f]{2}>$/;

/** An added token as read from a tokenizer.json (`special` may be absent). */
type HfAdded = Pick<HfAddedToken, 'id' | 'content'> & { special?: boolean };

function fail(why: string): never {
  throw new Error(`tokenizer.json -> GGUF: ${why}`);
}

/** Splits an HF merge, either "left right" (one space) or ["left", "right"] (newer tokenizers). */
function mergePair(m: unknown, rank: number): [string, string] {
  if (Array.isArray(m) && m.length === 2 && typeof m[0] === 'string' && typeof m[1] === 'string') return [m[0], m[1]];
  if (typeof m === 'string') {
    const i = m.indexOf(' ');
    if (i > 0 && m.indexOf(' ', i + 1) < 0) return [m.slice(0, i), m.slice(i + 1)];
  }
  return fail(`merge #${rank} ${JSON.stringify(m)} is not "left right" or [left, right]`);
}

/** Does the HF pipeline put SentencePiece's dummy-prefix "▁" in front of the text? */
function addsSpacePrefix(json: Record<string, unknown>): boolean {
  const parts = (n: unknown): Record<string, unknown>[] => {
    if (n === null || typeof n !== 'object') return [];
    const o = n as Record<string, unknown>;
    if (o.type === 'Sequence') return [...((o.normalizers ?? o.pretokenizers ?? []) as unknown[])].flatMap(parts);
    return [o];
  };
  if (parts(json.normalizer).some((p) => p.type === 'Prepend' && p.prepend === '▁')) return true;
  return parts(json.pre_tokenizer).some((p) => p.type === 'Metaspace' && (p.prepend_scheme === 'always' || p.prepend_scheme === 'first' || p.add_prefix_space === true));
}

/**
 * GGUF tokenizer metadata (tokenizer.ggml.*) for a SentencePiece-style HF tokenizer.json: a BPE model
 * with byte_fallback, as Llama-2's. BOS/EOS ids come from the model config.
 */
export function ggufTokenizerEntries(tokenizerJson: object, ids: { bos: number; eos: number }, chatTemplate?: string): GgufEntry[] {
  const json = tokenizerJson as Record<string, unknown>;
  const model = json.model as Record<string, unknown> | undefined;
  if (!model || model.type !== 'BPE') fail(`model type ${JSON.stringify(model?.type)} is not supported (only SentencePiece-style BPE)`);
  if (model.byte_fallback !== true) fail('the BPE model has no byte_fallback: not a SentencePiece-style vocabulary');
  const vocab = model.vocab as Record<string, number>;
  const added = (Array.isArray(json.added_tokens) ? json.added_tokens : []) as HfAdded[];
  const unkPiece = typeof model.unk_token === 'string' ? model.unk_token : null;

  let n = 0;
  for (const id of Object.values(vocab)) n = Math.max(n, id + 1);
  for (const a of added) n = Math.max(n, a.id + 1);
  const tokens: (string | undefined)[] = new Array<string | undefined>(n);
  for (const [piece, id] of Object.entries(vocab)) tokens[id] = piece;
  const addedById = new Map<number, HfAdded>();
  for (const a of added) {
    if (tokens[a.id] !== undefined && tokens[a.id] !== a.content) fail(`added token ${a.id} ${JSON.stringify(a.content)} collides with vocabulary piece ${JSON.stringify(tokens[a.id])}`);
    tokens[a.id] = a.content;
    addedById.set(a.id, a);
  }
  const hole = tokens.findIndex((t) => t === undefined);
  if (hole >= 0) fail(`no piece has id ${hole}; GGUF needs ids 0..${n - 1} without holes`);

  const merges = Array.isArray(model.merges) ? model.merges : [];
  const firstRank = new Map<string, number>();
  merges.forEach((m, rank) => {
    const [l, r] = mergePair(m, rank);
    if (!firstRank.has(l + r)) firstRank.set(l + r, rank);
  });

  const types = new Int32Array(n);
  const scores = new Float32Array(n);
  for (let id = 0; id < n; id++) {
    const piece = tokens[id]!;
    const a = addedById.get(id);
    let t: number = TOKEN_TYPE.normal;
    if (piece === unkPiece) t = TOKEN_TYPE.unknown;
    else if (a) t = a.special === false ? TOKEN_TYPE.userDefined : TOKEN_TYPE.control;
    else if (BYTE_PIECE.test(piece)) t = TOKEN_TYPE.byte;
    types[id] = t;
    // Pieces no merge produces (single characters) still get distinct scores, ordered by id.
    if (t === TOKEN_TYPE.normal) scores[id] = -(firstRank.get(piece) ?? merges.length + id);
  }

  const entries: GgufEntry[] = [
    { key: 'tokenizer.ggml.model', type: 'string', value: 'llama' },
    { key: 'tokenizer.ggml.tokens', type: 'array', of: 'string', value: tokens as string[] },
    { key: 'tokenizer.ggml.scores', type: 'array', of: 'f32', value: scores },
    { key: 'tokenizer.ggml.token_type', type: 'array', of: 'i32', value: types },
    { key: 'tokenizer.ggml.bos_token_id', type: 'u32', value: ids.bos },
    { key: 'tokenizer.ggml.eos_token_id', type: 'u32', value: ids.eos },
    { key: 'tokenizer.ggml.add_bos_token', type: 'bool', value: true },
    { key: 'tokenizer.ggml.add_eos_token', type: 'bool', value: false },
    { key: 'tokenizer.ggml.add_space_prefix', type: 'bool', value: addsSpacePrefix(json) },
  ];
  const unkId = unkPiece === null ? undefined : vocab[unkPiece];
  if (unkId !== undefined) entries.push({ key: 'tokenizer.ggml.unknown_token_id', type: 'u32', value: unkId });
  if (chatTemplate !== undefined) entries.push({ key: 'tokenizer.chat_template', type: 'string', value: chatTemplate });
  return entries;
}

export interface GgufTokenizer {
  tokenizerJson: string; // HF tokenizer.json text
  tokenizerConfigJson: string; // HF tokenizer_config.json text (special tokens, add_bos_token, chat template)
}

/**
 * An HF tokenizer.json (tokenizer/tokenizer-json.ts's builder, as for the built-in Llama-2) from a GGUF file's
 * SentencePiece vocabulary, or null when the file has none or another kind ("gpt2" byte-level BPE,
 * ...): the caller then needs a tokenizer.json beside the file. `where` names the file in errors.
 */
export function tokenizerFromGguf(md: Map<string, GgufValue>, where: string): GgufTokenizer | null {
  const kind = md.get('tokenizer.ggml.model');
  const tokens = md.get('tokenizer.ggml.tokens');
  if (kind !== 'llama' || !Array.isArray(tokens)) return null;
  const bad = (why: string): Error => new Error(`${where}: tokenizer metadata: ${why}`);
  if (!tokens.every((t) => typeof t === 'string')) throw bad('tokenizer.ggml.tokens is not an array of strings');
  const pieces = tokens as string[];
  const n = pieces.length;
  const scoresV = md.get('tokenizer.ggml.scores');
  const typesV = md.get('tokenizer.ggml.token_type');
  const numbers = (v: GgufValue | undefined, key: string): ArrayLike<number> | undefined => {
    if (v === undefined) return undefined;
    if (!ArrayBuffer.isView(v) || v instanceof BigInt64Array || v instanceof BigUint64Array || (v as ArrayLike<number>).length !== n) {
      throw bad(`${key} must be a numeric array of ${n} values`);
    }
    return v as ArrayLike<number>;
  };
  const scores = numbers(scoresV, 'tokenizer.ggml.scores') ?? new Float32Array(n);
  const types = numbers(typesV, 'tokenizer.ggml.token_type') ?? Int32Array.from(pieces, (p) => (BYTE_PIECE.test(p) ? TOKEN_TYPE.byte : TOKEN_TYPE.normal));
  const idOf = (key: string): number | undefined => {
    const v = md.get(key);
    return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < n ? v : undefined;
  };

  const vocab = vocabFromPieces(pieces);
  const unkId = idOf('tokenizer.ggml.unknown_token_id') ?? Array.prototype.findIndex.call(types, (t: number) => t === TOKEN_TYPE.unknown);
  const unk = unkId !== undefined && unkId >= 0 ? pieces[unkId]! : '<unk>';

  const added: HfAddedToken[] = [];
  for (let id = 0; id < n; id++) {
    const t = types[id]!;
    if (t === TOKEN_TYPE.control || t === TOKEN_TYPE.unknown || t === TOKEN_TYPE.userDefined) added.push(addedToken(id, pieces[id]!, t !== TOKEN_TYPE.userDefined));
  }

  // Merges from scores (see the header): every split of a normal piece into two vocabulary pieces.
  const found: { l: number; r: number; id: number; score: number }[] = [];
  for (let id = 0; id < n; id++) {
    if (types[id] !== TOKEN_TYPE.normal || vocab[pieces[id]!] !== id) continue;
    const chars = [...pieces[id]!]; // split on code points, never inside a surrogate pair
    let left = '';
    for (let k = 0; k < chars.length - 1; k++) {
      left += chars[k];
      const l = vocab[left];
      const r = vocab[pieces[id]!.slice(left.length)];
      if (l !== undefined && r !== undefined) found.push({ l, r, id, score: scores[id]! });
    }
  }
  found.sort((a, b) => b.score - a.score || a.l - b.l || a.r - b.r);
  const merges = found.map((m) => `${pieces[m.l]} ${pieces[m.r]}`);

  const json = spmTokenizerJson({ vocab, merges, addedTokens: added, unkToken: unk, spacePrefix: md.get('tokenizer.ggml.add_space_prefix') !== false });

  const bos = idOf('tokenizer.ggml.bos_token_id');
  const eos = idOf('tokenizer.ggml.eos_token_id');
  const template = md.get('tokenizer.chat_template');
  const config: Record<string, unknown> = {
    tokenizer_class: 'LlamaTokenizer',
    bos_token: bos === undefined ? null : pieces[bos],
    eos_token: eos === undefined ? null : pieces[eos],
    unk_token: unk,
    pad_token: null,
    add_bos_token: md.get('tokenizer.ggml.add_bos_token') !== false,
    add_eos_token: md.get('tokenizer.ggml.add_eos_token') === true,
    clean_up_tokenization_spaces: false,
  };
  if (typeof template === 'string') config.chat_template = template;
  return { tokenizerJson: JSON.stringify(json), tokenizerConfigJson: JSON.stringify(config) };
}
