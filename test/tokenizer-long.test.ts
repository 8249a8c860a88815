// Long texts: encode() runs BPE word by word (no Llama-2 piece has "▁" after another character, so no token
// spans a word boundary) and must give exactly the ids of an independent encoder over the whole text, fast.
import llamaTokenizerJs from 'llama-tokenizer-js';
import { expect, it } from 'vitest';
import { buildLlama2TokenizerJson, llama2TokenizerConfigJson, LlamaTokenizer } from '../tokenizer/index.ts';

const tok = LlamaTokenizer.fromJson(buildLlama2TokenizerJson(), llama2TokenizerConfigJson());

it('long mixed texts: the same ids as llama-tokenizer-js on the whole text', () => {
  const parts = ['The quick brown fox', '  jumps', '\n\n  over\tthe', ' lazy dog.', ' Съешь же ещё', ' 日本語のテキスト', '    indented()', '🦙🦙 emoji', ' a  b   c    d', ' ', 'x'];
  let s = 1;
  const pick = () => parts[(s = (s * 1103515245 + 12345) >>> 0) % parts.length]!;
  for (const len of [200, 2000, 8000]) {
    let text = '';
    while (text.length < len) text += pick();
    expect(tok.encode(text, { addBos: true }), `length ${len}`).toEqual(llamaTokenizerJs.encode(text, true, true));
  }
});

it('54 KiB of text (a prompt just under the size check at context 2048) tokenizes in well under a second', () => {
  const text = 'All work and no play makes Jack a dull boy. The quick brown fox, 12345! '.repeat(800).slice(0, 54 * 1024);
  tok.encode(text.slice(0, 1000)); // warm up
  const t0 = performance.now();
  const ids = tok.encode(text);
  const ms = performance.now() - t0;
  console.log(`54 KiB: ${ids.length} tokens in ${ms.toFixed(0)} ms`);
  expect(ids.length).toBeGreaterThan(10000);
  expect(ms).toBeLessThan(1000); // one BPE over the whole text took about 4 s here
});
