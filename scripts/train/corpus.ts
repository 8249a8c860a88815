// Builds the training corpus of the default model from the King James Bible (public domain; Debian's
// `bible-kjv` package): one verse per line as "Book C:V text", books named in full. Whole books are held out
// for evaluation. Writes, under OUT (default models/kjv-corpus/):
//   train.txt, heldout.txt      the text, one verse per line
//   train.bin, heldout.bin      per verse: u32 count, then the verse's token ids as it starts a text
//                               (SentencePiece's dummy "▁" prefix), then u32 count and the ids it has after
//                               a newline inside a text (no prefix); u16 ids, Llama-2's 32000-token vocabulary
// Run: npx vite-node scripts/train/corpus.ts [OUT]
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LlamaTokenizer } from '../../tokenizer/tokenizer.ts';
import { buildLlama2TokenizerJson, llama2TokenizerConfigJson } from '../../tokenizer/llama2-vocab.ts';

/** bible-kjv's abbreviations, in canonical order, with the names the corpus uses. */
const BOOKS: Record<string, string> = {
  Ge: 'Genesis', Exo: 'Exodus', Lev: 'Leviticus', Num: 'Numbers', Deu: 'Deuteronomy', Josh: 'Joshua',
  Jdgs: 'Judges', Ruth: 'Ruth', '1Sm': '1 Samuel', '2Sm': '2 Samuel', '1Ki': '1 Kings', '2Ki': '2 Kings',
  '1Chr': '1 Chronicles', '2Chr': '2 Chronicles', Ezra: 'Ezra', Neh: 'Nehemiah', Est: 'Esther', Job: 'Job',
  Psa: 'Psalms', Prv: 'Proverbs', Eccl: 'Ecclesiastes', SSol: 'Song of Solomon', Isa: 'Isaiah', Jer: 'Jeremiah',
  Lam: 'Lamentations', Eze: 'Ezekiel', Dan: 'Daniel', Hos: 'Hosea', Joel: 'Joel', Amos: 'Amos', Obad: 'Obadiah',
  Jonah: 'Jonah', Mic: 'Micah', Nahum: 'Nahum', Hab: 'Habakkuk', Zep: 'Zephaniah', Hag: 'Haggai', Zec: 'Zechariah',
  Mal: 'Malachi', Mat: 'Matthew', Mark: 'Mark', Luke: 'Luke', John: 'John', Acts: 'Acts', Rom: 'Romans',
  '1Cor': '1 Corinthians', '2Cor': '2 Corinthians', Gal: 'Galatians', Eph: 'Ephesians', Phi: 'Philippians',
  Col: 'Colossians', '1Th': '1 Thessalonians', '2Th': '2 Thessalonians', '1Tim': '1 Timothy', '2Tim': '2 Timothy',
  Titus: 'Titus', Phmn: 'Philemon', Heb: 'Hebrews', Jas: 'James', '1Pet': '1 Peter', '2Pet': '2 Peter',
  '1Jn': '1 John', '2Jn': '2 John', '3Jn': '3 John', Jude: 'Jude', Rev: 'Revelation',
};
/** Held out for evaluation: four whole books, narrative, prophecy, epistle (~1.3% of verses). */
export const HELDOUT_BOOKS = ['Ruth', 'Jonah', 'Galatians', '1 John'];

const out = process.argv[2] ?? 'models/kjv-corpus';
mkdirSync(out, { recursive: true });
const raw = execFileSync('bible', ['-f', 'Gen1:1-Rev22:21'], { maxBuffer: 64 << 20 }).toString('utf8');
const tok = LlamaTokenizer.fromJson(buildLlama2TokenizerJson(), llama2TokenizerConfigJson());
const split: Record<'train' | 'heldout', { lines: string[]; ids: number[] }> = { train: { lines: [], ids: [] }, heldout: { lines: [], ids: [] } };
for (const line of raw.split('\n')) {
  if (!line.trim()) continue;
  const m = /^(\d?[A-Za-z]+)(\d+:\d+) (.*)$/.exec(line);
  if (!m || !BOOKS[m[1]!]) throw new Error(`unexpected line: ${line.slice(0, 60)}`);
  const book = BOOKS[m[1]!]!;
  const verse = `${book} ${m[2]} ${m[3]!.trim()}`;
  const s = HELDOUT_BOOKS.includes(book) ? split.heldout : split.train;
  s.lines.push(verse);
  const first = tok.encode(verse, { addBos: false });
  const after = tok.encode('\n' + verse, { addBos: false });
  if (after[0] !== 29871 || after[1] !== 13) throw new Error(`newline did not encode as ▁ <0x0A>: ${after.slice(0, 3)}`);
  const cont = after.slice(2);
  s.ids.push(first.length, ...first, cont.length, ...cont);
}
for (const [name, s] of Object.entries(split)) {
  writeFileSync(join(out, `${name}.txt`), s.lines.join('\n') + '\n');
  const buf = new Uint16Array(s.ids.length);
  for (let i = 0; i < s.ids.length; i++) {
    if (s.ids[i]! > 65535) throw new Error('count over u16');
    buf[i] = s.ids[i]!;
  }
  writeFileSync(join(out, `${name}.bin`), new Uint8Array(buf.buffer));
  console.log(`${name}: ${s.lines.length} verses, ${s.ids.length} u16 values`);
}
