// The Llama-2 tokenizer (tokenizer/) adapted to the API's ChatTokenizer interface. Prompts use the
// model's own chat template when its tokenizer config has one (tokenizer/model-chat-template.ts), else
// the built-in Llama-2 format.

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
          if (tok.isSpecial(id)) {
            texts.push(null);
            continue;
          }
          const piece = tok.idToPiece(id);
          const byte = /^<0x([0-9A-Fa-f]{2})>$/.exec(piece);
          if (byte) {
            const v = parseInt(byte[1]!, 16);
            texts.push(v < 0x80 ? String.fromCharCode(v) : null); // a lone non-ASCII byte is not text
          } else texts.push(piece.replace(/\u2581/g, ' '));
        }
      }
      return texts;
    },
  };
}
