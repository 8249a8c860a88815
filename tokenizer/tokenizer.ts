// LlamaTokenizer: Llama-2 (SentencePiece BPE) encode/decode over @huggingface/tokenizers.
//
// Encoding follows Meta's reference (sentencepiece `encode(s, bos, eos=False)`): BOS (id 1) first
// when asked, the text gets SentencePiece's dummy-prefix "▁" from the tokenizer.json normalizer,
// and no EOS. Strings such as "<s>" in the text are plain text by default, as in sentencepiece
// (a user cannot inject control tokens); `parseSpecial: true` gives the HF behaviour instead.
//
// Decoding runs the tokenizer.json decoder (for Llama-2: "▁" -> " ", byte pieces -> UTF-8, fuse,
// strip one leading space) with HF's "clean up tokenization spaces" always off, as sentencepiece.

import { Tokenizer } from '@huggingface/tokenizers';
import { llama2TokenizerConfigJson } from './llama2-config.ts';

export interface EncodeOptions {
  /** Put BOS first. Default: tokenizer_config's add_bos_token, else true. */
  addBos?: boolean;
  /** Turn added-token strings in the text ("<s>", "</s>") into their ids, like HF. Default false. */
  parseSpecial?: boolean;
}

export interface DecodeOptions {
  /** Drop special tokens (<unk>, <s>, </s>). Default true. */
  skipSpecial?: boolean;
  /**
   * The ids continue earlier text (e.g. generated after a prompt): keep the space of a leading
   * "▁word" piece instead of stripping it. Default false (plain HF/sentencepiece decode).
   */
  continuation?: boolean;
}

/** tokenizer_config.json fields this class reads (wire spelling). */
interface ConfigFields {
  bos_token?: unknown;
  eos_token?: unknown;
  unk_token?: unknown;
  add_bos_token?: unknown;
  additional_special_tokens?: unknown;
  chat_template?: unknown;
}

function parseJsonObject(value: object | string, what: string): Record<string, unknown> {
  const parsed: unknown = typeof value === 'string' ? JSON.parse(value) : value;
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new TypeError(`${what} must be a JSON object`);
  }
  return parsed as Record<string, unknown>;
}

/** A special token in tokenizer_config.json is a string or an AddedToken object {content}. */
function tokenContent(value: unknown, fallback: string): string {
  if (typeof value === 'string') return value;
  if (value !== null && typeof value === 'object' && typeof (value as { content?: unknown }).content === 'string') {
    return (value as { content: string }).content;
  }
  return fallback;
}

/**
 * tokenizer_config.json's chat_template: a string, or (newer files) a list of {name, template} of which
 * the one named "default" is the chat template, as transformers picks it. Null when there is none.
 */
function chatTemplateOf(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) {
    const named = value.find((t) => t !== null && typeof t === 'object' && (t as { name?: unknown }).name === 'default') as { template?: unknown } | undefined;
    if (typeof named?.template === 'string') return named.template;
  }
  return null;
}

/** An added token that text may be split on (tokenizer.json added_tokens with normalized: false). */
interface SplitToken {
  content: string;
  id: number;
  lstrip: boolean;
  rstrip: boolean;
}

/** `text` cut before every "▁" that follows another character ("▁a▁▁b▁c" -> "▁a", "▁▁b", "▁c"). */
function splitBeforeWords(text: string): string[] {
  const words: string[] = [];
  let start = 0;
  for (let i = 1; i < text.length; i++) {
    if (text.charCodeAt(i) === 0x2581 && text.charCodeAt(i - 1) !== 0x2581) {
      words.push(text.slice(start, i));
      start = i;
    }
  }
  words.push(text.slice(start));
  return words;
}

/** Pieces tried, in order, as the non-space sentinel that makes `continuation` decoding exact. */
const SENTINEL_CANDIDATES = ['a', 'e', 't', 'x', 'A', '0'];

export class LlamaTokenizer {
  /** Beginning-of-sequence id (1 for Llama-2). */
  readonly bosId: number;
  /** End-of-sequence id (2 for Llama-2). */
  readonly eosId: number;
  /** Unknown-piece id (0 for Llama-2); out-of-range ids decode as this piece. */
  readonly unkId: number;
  /** Number of ids, added tokens included (32000 for Llama-2). */
  readonly vocabSize: number;
  /** tokenizer_config.json's add_bos_token (default true): encode() and chat prompts start with BOS. */
  readonly addsBos: boolean;
  /** The model's Jinja chat template (tokenizer_config.json chat_template), or null. */
  readonly chatTemplate: string | null;

  private readonly hf: Tokenizer;
  /** Ids that `skipSpecial` drops: special added tokens and config's additional_special_tokens. */
  private readonly specialIds: ReadonlySet<number>;
  /** Added tokens by first character, longest first: what encodeMarked splits trusted text on. */
  private readonly splitTokens: Map<string, SplitToken[]>;
  /** Id of a one-character, non-space, non-special piece; see decode's `continuation`. */
  private readonly sentinel: { id: number; text: string } | undefined;
  /**
   * No piece has "▁" after another character (true of Llama-2's vocabulary), so no token can span the
   * boundary before a word's "▁": encode() can run BPE word by word, with the same ids. One BPE over a
   * whole long text is superlinear (54 KiB of English: 4 s, word by word: 0.1 s).
   */
  private readonly wordSplit: boolean;

  private constructor(tokenizerJson: Record<string, unknown>, config: Record<string, unknown>) {
    // Our decode applies SentencePiece rules; force the HF clean-up off whatever the config says.
    this.hf = new Tokenizer(tokenizerJson, { ...config, clean_up_tokenization_spaces: false });
    const fields = config as ConfigFields;
    const model = this.hf.model;
    if (model === null) throw new Error('tokenizer.json has no model');
    this.vocabSize = model.vocab.length;

    const idOf = (piece: string, what: string): number => {
      const id = this.hf.token_to_id(piece);
      if (id === undefined) throw new Error(`${what} token ${JSON.stringify(piece)} is not in the vocabulary`);
      return id;
    };
    this.bosId = idOf(tokenContent(fields.bos_token, '<s>'), 'bos');
    this.eosId = idOf(tokenContent(fields.eos_token, '</s>'), 'eos');
    this.unkId = idOf(tokenContent(fields.unk_token, '<unk>'), 'unk');
    this.addsBos = typeof fields.add_bos_token === 'boolean' ? fields.add_bos_token : true;
    this.chatTemplate = chatTemplateOf(fields.chat_template);

    const special = new Set<number>();
    const split = new Map<string, SplitToken[]>();
    for (const [id, token] of this.hf.get_added_tokens_decoder()) {
      if (token.special) special.add(id);
      if (token.normalized || token.content.length === 0) continue; // matched only after normalization by HF; never split on here
      const first = token.content[0]!;
      if (!split.has(first)) split.set(first, []);
      split.get(first)!.push({ content: token.content, id, lstrip: token.lstrip, rstrip: token.rstrip });
    }
    for (const list of split.values()) list.sort((a, b) => b.content.length - a.content.length);
    this.splitTokens = split;
    if (Array.isArray(fields.additional_special_tokens)) {
      for (const t of fields.additional_special_tokens) {
        const id = typeof t === 'string' ? this.hf.token_to_id(t) : undefined;
        if (id !== undefined) special.add(id);
      }
    }
    this.specialIds = special;

    let sentinel: { id: number; text: string } | undefined;
    for (const c of SENTINEL_CANDIDATES) {
      const id = this.hf.token_to_id(c);
      if (id !== undefined && !special.has(id) && this.hf.decode([id], { skip_special_tokens: false }) === c) {
        sentinel = { id, text: c };
        break;
      }
    }
    this.sentinel = sentinel;
    this.wordSplit = !(model.vocab as unknown[]).some((piece) => typeof piece === 'string' && /[^\u2581]\u2581/.test(piece));
  }

  /**
   * Builds a tokenizer from the tokenizer.json and tokenizer_config.json of a model (objects or
   * their JSON text). Without a config, Llama-2's is used.
   */
  static fromJson(tokenizerJson: object | string, tokenizerConfig?: object | string): LlamaTokenizer {
    const json = parseJsonObject(tokenizerJson, 'tokenizer.json');
    const config =
      tokenizerConfig === undefined
        ? (llama2TokenizerConfigJson() as unknown as Record<string, unknown>)
        : parseJsonObject(tokenizerConfig, 'tokenizer_config.json');
    return new LlamaTokenizer(json, config);
  }

  /** Token ids of `text`: [BOS] + pieces of "▁" + text with spaces as "▁". Never adds EOS. */
  encode(text: string, opts: EncodeOptions = {}): number[] {
    const ids: number[] = [];
    if (opts.addBos ?? this.addsBos) ids.push(this.bosId);
    if (text.length === 0) return ids;
    if (opts.parseSpecial === true) {
      // HF path: split on added-token strings, normalize and BPE each section; no post-processor.
      for (const id of this.hf.encode(text, { add_special_tokens: false }).ids) ids.push(id); // no spread: unbounded
      return ids;
    }
    // Literal path: the HF pipeline minus the added-token splitter.
    this.encodeSection(text, 0, ids);
    return ids;
  }

  /** Appends the ids of one text section (no added-token splitting): normalize, pre-tokenize, BPE. */
  private encodeSection(text: string, sectionIndex: number, ids: number[]): void {
    const normalized = this.hf.normalizer === null ? text : this.hf.normalizer(text);
    if (normalized.length === 0) return;
    const words =
      this.hf.pre_tokenizer !== null
        ? this.hf.pre_tokenizer(normalized, { section_index: sectionIndex })
        : this.wordSplit
          ? splitBeforeWords(normalized)
          : [normalized];
    const model = this.hf.model;
    if (model === null) throw new Error('tokenizer.json has no model');
    for (const piece of model(words)) ids.push(this.hf.token_to_id(piece) ?? this.unkId);
  }

  /**
   * Ids of `text` (no BOS) where added-token strings ("<s>", "</s>", ...) become their ids only where
   * they lie wholly in trusted characters (`untrusted[i]` = 0); inside untrusted characters (what a
   * user typed) they stay text. The text between the tokens is encoded section by section exactly as
   * the HF tokenizer does with special-token parsing (leftmost-longest split, lstrip/rstrip, a dummy
   * prefix per section), so with nothing untrusted this equals encode(text, {parseSpecial: true}).
   */
  encodeMarked(text: string, untrusted: Uint8Array): number[] {
    if (untrusted.length !== text.length) throw new RangeError('encodeMarked: the mask must have one entry per UTF-16 unit of the text');
    const sections: (string | SplitToken)[] = [];
    let start = 0;
    let i = 0;
    while (i < text.length) {
      const match = untrusted[i] ? undefined : this.splitTokens.get(text[i]!)?.find((t) => text.startsWith(t.content, i) && !untrusted.subarray(i, i + t.content.length).some((u) => u !== 0));
      if (!match) {
        i++;
        continue;
      }
      if (i > start) sections.push(text.slice(start, i));
      sections.push(match);
      i += match.content.length;
      start = i;
    }
    if (start < text.length) sections.push(text.slice(start));
    // lstrip / rstrip of an added token eat the whitespace before / after it (HF's encode_text).
    sections.forEach((s, k) => {
      if (typeof s === 'string') return;
      if (s.lstrip && typeof sections[k - 1] === 'string') sections[k - 1] = (sections[k - 1] as string).trimEnd();
      if (s.rstrip && typeof sections[k + 1] === 'string') sections[k + 1] = (sections[k + 1] as string).trimStart();
    });
    const ids: number[] = [];
    sections.forEach((s, k) => {
      if (typeof s !== 'string') ids.push(s.id);
      else if (s.length > 0) this.encodeSection(s, k, ids);
    });
    return ids;
  }

  /** Text of `ids`. Ids outside [0, vocabSize) decode as <unk>; non-integers throw. */
  decode(ids: readonly number[], opts: DecodeOptions = {}): string {
    const skipSpecial = opts.skipSpecial ?? true;
    const list: number[] = [];
    for (const raw of ids) {
      const id = this.checkId(raw);
      if (!(skipSpecial && this.specialIds.has(id))) list.push(id);
    }
    if (list.length === 0) return ''; // the HF decode throws on an empty list
    const hfOpts = { skip_special_tokens: false, clean_up_tokenization_spaces: false };
    if (opts.continuation !== true) return this.hf.decode(list, hfOpts);
    // The decoder strips one leading space of the whole text. A sentinel piece in front keeps the
    // text from starting with a space, and is a normal (non-byte) piece, so it leaves the
    // byte-fallback runs after it unchanged; its text is removed afterwards.
    if (this.sentinel === undefined) {
      throw new Error('continuation decoding needs a one-letter piece ("a", "e", ...) in the vocabulary');
    }
    return this.hf.decode([this.sentinel.id, ...list], hfOpts).slice(this.sentinel.text.length);
  }

  /** Piece string of an id ("▁Hello", "<0x0A>", "<s>"). Throws RangeError outside the vocabulary. */
  idToPiece(id: number): string {
    const piece = Number.isInteger(id) ? this.hf.id_to_token(id) : undefined;
    if (piece === undefined) throw new RangeError(`token id ${id} is outside the vocabulary [0, ${this.vocabSize})`);
    return piece;
  }

  /** Id of a piece string, or undefined when the vocabulary lacks it. */
  pieceToId(piece: string): number | undefined {
    return this.hf.token_to_id(piece);
  }

  /** True for the ids that decode's `skipSpecial` drops. */
  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }

  /** The id decode uses for `id`: itself, or unkId when outside the vocabulary. */
  checkId(id: number): number {
    if (!Number.isInteger(id)) throw new RangeError(`token id ${id} is not an integer`);
    return id >= 0 && id < this.vocabSize ? id : this.unkId;
  }
}
