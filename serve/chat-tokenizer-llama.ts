// The Llama-2 tokenizer (tokenizer/) adapted to the API's ChatTokenizer interface, and the bytes each
// token stands for (the engine's tokenBytes). Prompts use the model's own chat template when its tokenizer
// config has one (tokenizer/model-chat-template.ts), else the built-in Llama-2 format.

import type { ChatTokenizer } from '../api/chat-tokenizer.ts';
import type { LlamaTokenizer } from '../tokenizer/tokenizer.ts';
import { StreamDecoder } from '../tokenizer/stream-decoder.ts';
import { chatFormat } from '../tokenizer/model-chat-template.ts';

/** `chatTemplate`: override the tokenizer config's template (null: the built-in Llama-2 format). */
export function llamaChatTokenizer(tok: LlamaTokenizer, chatTemplate: string | null = tok.chatTemplate): ChatTokenizer {
  let texts: (string | null)[] | null = null;
  const fmt = chatFormat(tok, chatTemplate); // compiles the template now: a bad one fails the load
  return {
    formatChat: (messages) => fmt.format(messages),
    chatFormat: fmt.kind,
    createStreamDecoder: () => new StreamDecoder(tok, { continuation: true }),
    encode: (text) => tok.encode(text, { addBos: false }),
    decode: (ids) => tok.decode(ids),
    eosId: tok.eosId,
    tokenTexts() {
      if (!texts) {
        texts = [];
        for (let id = 0; id < tok.vocabSize; id++) {
          const p = tokenPiece(tok, id);
          // A lone non-ASCII byte is not text.
          texts.push(typeof p === 'number' ? (p < 0x80 ? String.fromCharCode(p) : null) : p);
        }
      }
      return texts;
    },
  };
}

const utf8 = new TextEncoder();

/** The bytes each token id stands for: its text in UTF-8, its one byte, or none for a special token. */
export function llamaTokenBytes(tok: LlamaTokenizer): (id: number) => Uint8Array {
  return (id) => {
    const p = tokenPiece(tok, id);
    return p === null ? new Uint8Array(0) : typeof p === 'number' ? Uint8Array.of(p) : utf8.encode(p);
  };
}

/** What a token id stands for: text ("▁" is a space), one byte ("<0xNN>"), or nothing (a special token). */
function tokenPiece(tok: LlamaTokenizer, id: number): string | number | null {
  if (tok.isSpecial(id)) return null;
  const piece = tok.idToPiece(id);
  const byte = /^<0x([0-9A-Fa-f]{2})>$/.exec(piece);
  return byte ? parseInt(byte[1]!, 16) : piece.replace(/\u2581/g, ' ');
}
