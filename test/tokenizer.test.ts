// Tokenizer tests: the rebuilt Llama-2 tokenizer.json against known ids and against
// llama-tokenizer-js's own encoder (an independent BPE implementation over the same data),
// streaming decode against decode(), and the chat format against Meta's reference layout.

import { beforeAll, describe, expect, it } from 'vitest';
import llamaTokenizerJs from 'llama-tokenizer-js';
import {
  buildLlama2TokenizerJson,
  formatLlama2Chat,
  formatLlama2ChatString,
  llama2TokenizerConfigJson,
  LlamaTokenizer,
  StreamDecoder,
  type ChatMessage,
} from '../tokenizer/index.ts';

/** Reference encoder: llama-tokenizer-js, with BOS, with the SentencePiece dummy prefix. */
function refEncode(text: string, bos = true): number[] {
  return llamaTokenizerJs.encode(text, bos, true);
}

/** mulberry32: a small seeded PRNG so the random cases are the same on every run. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Hand-picked strings: ASCII prose, punctuation, whitespace runs, digits, code, accents, CJK,
// emoji (incl. ZWJ sequences and flags), RTL scripts, control-ish characters, special-token text.
const HAND_CASES = [
  'Hello world',
  'Hello, my dog is cute',
  'grabbed',
  ' grabbed',
  '           grabbed',
  '\n',
  ' \n',
  '\ttabs\t\t\t\tout here',
  'ax\n####\nboo',
  '镇',
  '🦙',
  '🦙Ꙋ',
  'Ꙋ🦙',
  'The quick brown fox jumps over the lazy dog.',
  "I can't believe it's not butter! Isn't it?",
  '  leading and trailing spaces  ',
  'multiple     spaces     inside',
  'line one\nline two\r\nline three\n\n\nend',
  '1234567890 3.14159 -42 1e10 0x1F 1,000,000',
  'function add(a, b) {\n  return a + b;\n}\n',
  'def f(x):\n    """Docstring."""\n    return [i**2 for i in range(x) if i % 2 == 0]\n',
  '#include <stdio.h>\nint main(void) { printf("%d\\n", 42); return 0; }',
  '<div class="a">&amp; &lt;tag&gt;</div>',
  'SELECT * FROM users WHERE id = 7 AND name LIKE \'%bob%\';',
  'naïve café résumé façade coöperate Ångström Ærøskøbing',
  'Straße Größe Übermaß',
  'Привет, мир! Как дела?',
  'Γειά σου Κόσμε',
  'こんにちは世界。今日はいい天気ですね。',
  '你好，世界！我爱自然语言处理。',
  '안녕하세요 세계',
  'مرحبا بالعالم',
  'שלום עולם',
  'नमस्ते दुनिया',
  'สวัสดีชาวโลก',
  '😀😃😄😁 👍🏽 👨‍👩‍👧‍👦 🇫🇷🇯🇵 ❤️',
  '∀x∈ℝ: x² ≥ 0 ∑ ∫ √ ∞ ≈ ≠',
  '€100 £50 ¥1000 ₹20 ₿',
  'emoji🙂inside🙃words',
  '<s>',
  '</s>',
  '<unk>',
  'text with <s> and </s> inside',
  '[INST] <<SYS>>\nsys\n<</SYS>>\n\nhi [/INST]',
  '▁already▁has▁metaspace',
  'a',
  ' ',
  '  ',
  '\u00a0non-breaking\u00a0space',
  'zero\u200bwidth\u200djoiner',
  '\u0000\u0001\u001f\u007f',
  'tab\there',
  'https://example.com/path?query=1&other=two#frag',
  'user@example.com',
  'CamelCaseIdentifier snake_case_identifier kebab-case-identifier',
  '!!!???...,,,;;;:::',
  '((()))[[[]]]{{{}}}',
  'ÀÁÂÃÄÅàáâãäå',
  '𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕄𝕒𝕥𝕙',
  'ｆｕｌｌｗｉｄｔｈ　ｓｐａｃｅ',
];

// Pieces for random strings; drawn with replacement and concatenated.
const FRAGMENTS = [
  'the', ' the', 'ing', ' ', '  ', '   ', '\n', '\t', '\r\n', 'a', 'Z', '0', '7', '42', '2024', '.',
  ',', '!', '?', "'", '"', '(', ')', '{', '}', '<', '>', '/', '\\', '_', '-', '=', '+', '*', '#',
  'é', 'ß', 'ñ', 'ø', 'ж', 'λ', '中', '文', '日本', '語', '한', '🦙', '😀', '👍🏽', '€', '∑', '→',
  '\u00a0', '\u200b', 'Ꙋ', '𝔘', 'Hello', 'World', 'llama', ' Llama', 'token', 'izer', 'GPU',
  'const ', 'let x = ', '=> ', 'return', ';', '<s>', '</s>', '[INST]', '▁',
];

function randomStrings(count: number, seed: number): string[] {
  const next = rng(seed);
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    const n = 1 + Math.floor(next() * 24);
    let s = '';
    for (let j = 0; j < n; j++) s += FRAGMENTS[Math.floor(next() * FRAGMENTS.length)];
    out.push(s);
  }
  return out;
}

let tok: LlamaTokenizer;

beforeAll(() => {
  tok = LlamaTokenizer.fromJson(buildLlama2TokenizerJson(), llama2TokenizerConfigJson());
});

describe('buildLlama2TokenizerJson', () => {
  it('carries the full vocabulary, merges and SentencePiece pipeline', () => {
    const json = buildLlama2TokenizerJson();
    expect(Object.keys(json.model.vocab).length).toBe(32000);
    expect(json.model.vocab['<unk>']).toBe(0);
    expect(json.model.vocab['<s>']).toBe(1);
    expect(json.model.vocab['</s>']).toBe(2);
    expect(json.model.vocab['<0x0A>']).toBe(13);
    expect(json.model.vocab['▁Hello']).toBe(15043);
    expect(json.model.merges.length).toBe(61249);
    expect(json.model.merges.slice(0, 3)).toEqual(['▁ t', 'e r', 'i n']);
    expect(json.model.byte_fallback).toBe(true);
    expect(json.model.fuse_unk).toBe(true);
    expect(json.post_processor).toBeNull();
    expect(json.added_tokens.map((t) => [t.id, t.content, t.special])).toEqual([
      [0, '<unk>', true],
      [1, '<s>', true],
      [2, '</s>', true],
    ]);
    // Round-trips through JSON text (as a file on disk would).
    const fromText = LlamaTokenizer.fromJson(JSON.stringify(json), JSON.stringify(llama2TokenizerConfigJson()));
    expect(fromText.encode('Hello world')).toEqual([1, 15043, 3186]);
  });

  it('builds the tokenizer_config.json', () => {
    const cfg = llama2TokenizerConfigJson();
    expect(cfg.bos_token).toBe('<s>');
    expect(cfg.eos_token).toBe('</s>');
    expect(cfg.unk_token).toBe('<unk>');
    expect(cfg.add_bos_token).toBe(true);
    expect(cfg.add_eos_token).toBe(false);
    expect(cfg.model_max_length).toBe(4096);
    expect(cfg.chat_template).toContain("bos_token + '[INST] ' + content.strip() + ' [/INST]'");
    expect(cfg.chat_template).toContain("'<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n'");
  });
});

describe('LlamaTokenizer', () => {
  it('has Llama-2 ids for the special tokens', () => {
    expect([tok.bosId, tok.eosId, tok.unkId, tok.vocabSize]).toEqual([1, 2, 0, 32000]);
    expect(tok.idToPiece(15043)).toBe('▁Hello');
    expect(tok.idToPiece(13)).toBe('<0x0A>');
    expect(tok.pieceToId('▁world')).toBe(3186);
    expect(tok.pieceToId('not-a-piece-xyz')).toBeUndefined();
    expect(() => tok.idToPiece(32000)).toThrow(RangeError);
    expect(() => tok.idToPiece(-1)).toThrow(RangeError);
    expect([0, 1, 2, 3].map((id) => tok.isSpecial(id))).toEqual([true, true, true, false]);
  });

  it('encodes the known examples', () => {
    expect(tok.encode('Hello world')).toEqual([1, 15043, 3186]);
    expect(tok.encode('Hello world', { addBos: false })).toEqual([15043, 3186]);
    expect(tok.encode('Hello, my dog is cute')).toEqual([1, 15043, 29892, 590, 11203, 338, 274, 1082]);
    // llama-tokenizer-js's own regression cases (ids from its test suite).
    expect(tok.encode(' grabbed')).toEqual([1, 29871, 2646, 1327, 287]);
    expect(tok.encode('           grabbed')).toEqual([1, 9651, 2646, 1327, 287]);
    expect(tok.encode(' \n')).toEqual([1, 259, 13]);
    expect(tok.encode('ax\n####\nboo')).toEqual([1, 4853, 13, 4136, 13, 833, 29877]);
    expect(tok.encode('🦙Ꙋ')).toEqual([1, 29871, 243, 162, 169, 156, 237, 156, 141]);
    expect(tok.encode('')).toEqual([1]);
    expect(tok.encode('', { addBos: false })).toEqual([]);
  });

  it('treats special-token text literally unless parseSpecial', () => {
    // "▁<", "s", ">" as sentencepiece does; BOS only from the flag.
    expect(tok.encode('<s>')).toEqual([1, 529, 29879, 29958]);
    expect(tok.encode('<s>', { parseSpecial: true })).toEqual([1, 1]);
    expect(tok.encode('a</s>', { addBos: false, parseSpecial: true })).toEqual([263, 2]);
  });

  it('matches llama-tokenizer-js on hand-picked and random strings', () => {
    const cases = [...HAND_CASES, ...randomStrings(300, 1234)];
    const mismatches: string[] = [];
    for (const s of cases) {
      const got = tok.encode(s);
      const want = refEncode(s);
      if (JSON.stringify(got) !== JSON.stringify(want)) mismatches.push(JSON.stringify(s));
    }
    expect(cases.length).toBeGreaterThan(350);
    expect(mismatches).toEqual([]);
  });

  it('decodes back to the input text', () => {
    // "▁" typed in the input decodes as a space (sentencepiece does the same), so leave it out.
    const cases = [...HAND_CASES, ...randomStrings(200, 99)].filter((s) => !s.includes('▁'));
    for (const s of cases) expect(tok.decode(tok.encode(s))).toBe(s);
  });

  it('decodes special tokens, continuations and broken UTF-8', () => {
    expect(tok.decode([1, 15043, 3186])).toBe('Hello world');
    expect(tok.decode([1, 15043, 3186, 2], { skipSpecial: false })).toBe('<s> Hello world</s>');
    expect(tok.decode([15043, 3186])).toBe('Hello world');
    expect(tok.decode([15043, 3186], { continuation: true })).toBe(' Hello world');
    expect(tok.decode([29871, 13, 15043], { continuation: true })).toBe(' \n Hello');
    expect(tok.decode([29871, 13, 15043])).toBe('\n Hello');
    expect(tok.decode([])).toBe('');
    expect(tok.decode([1, 2])).toBe('');
    expect(tok.decode([243, 162, 169, 156])).toBe('🦙'); // <0xF0><0x9F><0xA6><0x99>
    expect(tok.decode([243, 162])).toBe('\uFFFD'); // truncated 4-byte sequence
    expect(tok.decode([258, 15043])).toBe('\uFFFD Hello'); // <0xFF> is never valid UTF-8
    // Out-of-range ids decode as <unk>, which skipSpecial drops.
    expect(tok.decode([15043, 40000])).toBe('Hello');
    expect(tok.decode([15043, 40000], { skipSpecial: false })).toBe('Hello<unk>');
    expect(() => tok.decode([1.5])).toThrow(RangeError);
  });
});

describe('StreamDecoder', () => {
  function stream(ids: number[], opts?: { skipSpecial?: boolean; continuation?: boolean }): string[] {
    const dec = new StreamDecoder(tok, opts);
    const out = ids.map((id) => dec.push(id));
    out.push(dec.flush());
    return out;
  }

  it('holds byte pieces until the character is complete', () => {
    // "€" = E2 82 AC; byte piece ids are byte + 3.
    expect(stream([0xe2 + 3, 0x82 + 3, 0xac + 3])).toEqual(['', '', '€', '']);
    // "🦙" then " Hello": four bytes, then a normal piece.
    expect(stream([243, 162, 169, 156, 15043])).toEqual(['', '', '', '🦙', ' Hello', '']);
  });

  it('keeps the leading space of a continuation, strips it otherwise', () => {
    expect(stream([15043, 3186])).toEqual([' Hello', ' world', '']);
    expect(stream([15043, 3186], { continuation: false })).toEqual(['Hello', ' world', '']);
    // The strip applies once, to the first text that comes out.
    expect(stream([0xe2 + 3, 29871, 15043], { continuation: false })).toEqual(['', '\uFFFD ', ' Hello', '']);
  });

  it('turns unfinished or invalid UTF-8 into U+FFFD', () => {
    expect(stream([0xe2 + 3, 0x82 + 3])).toEqual(['', '', '\uFFFD']);
    expect(stream([0xe2 + 3, 0x82 + 3, 15043])).toEqual(['', '', '\uFFFD Hello', '']);
    expect(stream([258, 0xe2 + 3])).toEqual(['\uFFFD', '', '\uFFFD']);
  });

  it('skips special tokens without breaking a byte run, or prints them', () => {
    expect(stream([0xe2 + 3, 2, 0x82 + 3, 0xac + 3])).toEqual(['', '', '', '€', '']);
    // Printed, </s> ends the run: E2 alone and then 82, AC (stray continuation bytes) are invalid.
    const ids = [0xe2 + 3, 2, 0x82 + 3, 0xac + 3];
    expect(stream(ids, { skipSpecial: false })).toEqual(['', '\uFFFD</s>', '\uFFFD', '\uFFFD', '']);
    expect(tok.decode(ids, { skipSpecial: false })).toBe('\uFFFD</s>\uFFFD\uFFFD');
  });

  it('streams encoded text back exactly', () => {
    for (const s of [...HAND_CASES, ...randomStrings(100, 7)].filter((x) => !x.includes('▁'))) {
      const ids = tok.encode(s, { addBos: false });
      expect(stream(ids, { continuation: false }).join('')).toBe(s);
      expect(stream(ids).join('')).toBe(tok.decode(ids, { continuation: true }));
    }
  });

  it('equals decode() on random id sequences', () => {
    const next = rng(42);
    // Pool: specials, "▁" pieces, words, bytes of valid characters (incl. a UTF-8 BOM), stray bytes.
    const bytes = (hex: number[]): number[] => hex.map((b) => b + 3);
    const pool: number[][] = [
      [0], [1], [2], [29871], [259], [13], [15043], [3186], [29892], [263], [30411],
      bytes([0xe2, 0x82, 0xac]), bytes([0xf0, 0x9f, 0xa6, 0x99]), bytes([0xef, 0xbb, 0xbf]),
      bytes([0xc3]), bytes([0xa9]), bytes([0xff]), bytes([0x80]), bytes([0x20]), bytes([0x0a]),
    ];
    for (let trial = 0; trial < 300; trial++) {
      const ids: number[] = [];
      const n = Math.floor(next() * 12);
      for (let i = 0; i < n; i++) ids.push(...pool[Math.floor(next() * pool.length)]!);
      for (const skipSpecial of [true, false]) {
        for (const continuation of [true, false]) {
          const parts = stream(ids, { skipSpecial, continuation });
          expect(parts.join(''), JSON.stringify({ ids, skipSpecial, continuation })).toBe(
            tok.decode(ids, { skipSpecial, continuation }),
          );
          // No part ends inside a UTF-16 surrogate pair.
          for (const p of parts) expect(/[\uD800-\uDBFF]$/.test(p)).toBe(false);
        }
      }
    }
  });
});

describe('Llama-2 chat format', () => {
  /** Meta's layout, tokenized per turn by llama-tokenizer-js. */
  function expectedIds(turns: [string, string | undefined][]): number[] {
    const ids: number[] = [];
    for (const [user, answer] of turns) {
      if (answer === undefined) ids.push(...refEncode(`[INST] ${user} [/INST]`));
      else ids.push(...refEncode(`[INST] ${user} [/INST] ${answer} `), 2);
    }
    return ids;
  }

  it('encodes one user message with the known [INST] ids', () => {
    const ids = formatLlama2Chat(tok, [{ role: 'user', content: 'hi' }]);
    // "▁[", "INST", "]", "▁hi", "▁[", "/", "INST", "]"
    expect(ids).toEqual([1, 518, 25580, 29962, 7251, 518, 29914, 25580, 29962]);
  });

  it('merges the system prompt into the first user turn', () => {
    const msgs: ChatMessage[] = [
      { role: 'system', content: 'You are a helpful assistant.' },
      { role: 'user', content: '  What is 2+2?  ' },
    ];
    expect(formatLlama2ChatString(msgs)).toBe(
      '<s>[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\n  What is 2+2? [/INST]',
    );
    expect(formatLlama2Chat(tok, msgs)).toEqual(
      expectedIds([['<<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\n  What is 2+2?', undefined]]),
    );
  });

  it('encodes a 3-turn conversation with one BOS/EOS per completed pair', () => {
    const msgs: ChatMessage[] = [
      { role: 'system', content: 'Answer briefly.' },
      { role: 'user', content: 'Name a color.' },
      { role: 'assistant', content: ' Blue. ' },
      { role: 'user', content: 'Another one?' },
      { role: 'assistant', content: 'Green.' },
      { role: 'user', content: '\nAnd a third?\n' },
    ];
    expect(formatLlama2ChatString(msgs)).toBe(
      '<s>[INST] <<SYS>>\nAnswer briefly.\n<</SYS>>\n\nName a color. [/INST] Blue. </s>' +
        '<s>[INST] Another one? [/INST] Green. </s><s>[INST] And a third? [/INST]',
    );
    const ids = formatLlama2Chat(tok, msgs);
    expect(ids).toEqual(
      expectedIds([
        ['<<SYS>>\nAnswer briefly.\n<</SYS>>\n\nName a color.', 'Blue.'],
        ['Another one?', 'Green.'],
        ['And a third?', undefined],
      ]),
    );
    expect(ids.filter((id) => id === 1).length).toBe(3);
    expect(ids.filter((id) => id === 2).length).toBe(2);
    // HF's way (render the template text, parse "<s>"/"</s>" as special) gives the same ids.
    expect(tok.encode(formatLlama2ChatString(msgs), { addBos: false, parseSpecial: true })).toEqual(ids);
  });

  it('encodes unicode content and keeps typed "<s>" as text', () => {
    const msgs: ChatMessage[] = [
      { role: 'user', content: '日本語で答えて 🦙 <s>' },
      { role: 'assistant', content: 'はい、ラマです。€5' },
      { role: 'user', content: 'Ꙋ naïve café' },
    ];
    const ids = formatLlama2Chat(tok, msgs);
    expect(ids).toEqual(
      expectedIds([
        ['日本語で答えて 🦙 <s>', 'はい、ラマです。€5'],
        ['Ꙋ naïve café', undefined],
      ]),
    );
    expect(ids.filter((id) => id === 1).length).toBe(2);
  });

  it('rejects bad role orders', () => {
    const u = (content: string): ChatMessage => ({ role: 'user', content });
    const a = (content: string): ChatMessage => ({ role: 'assistant', content });
    const s = (content: string): ChatMessage => ({ role: 'system', content });
    expect(() => formatLlama2Chat(tok, [])).toThrow(/no messages/);
    expect(() => formatLlama2Chat(tok, [s('x')])).toThrow(/followed by a user/);
    expect(() => formatLlama2Chat(tok, [a('x'), u('y')])).toThrow(/message 0 has role "assistant"/);
    expect(() => formatLlama2Chat(tok, [u('x'), u('y')])).toThrow(/message 1 has role "user"/);
    expect(() => formatLlama2Chat(tok, [u('x'), a('y')])).toThrow(/last message must have role "user"/);
    expect(() => formatLlama2Chat(tok, [u('x'), s('y'), u('z')])).toThrow(/message 1 has role "system"/);
    expect(() => formatLlama2ChatString([s('x'), s('y'), u('z')])).toThrow(/message 1 has role "system"/);
  });
});
