// The Llama-2-chat prompt format, built directly as token ids.
//
// Reference: Meta's `Llama.chat_completion` (llama/generation.py). With
//   B_INST, E_INST = "[INST]", "[/INST]";  B_SYS, E_SYS = "<<SYS>>\n", "\n<</SYS>>\n\n"
// an optional system message is merged into the first user message as
// B_SYS + system + E_SYS + user, then every (user, assistant) pair is encoded as
//   encode(f"{B_INST} {user.strip()} {E_INST} {assistant.strip()} ", bos=True, eos=True)
// and the final user message as
//   encode(f"{B_INST} {user.strip()} {E_INST}", bos=True, eos=False).
// Each pair is ONE sentencepiece encode (one dummy-prefix "▁"); BOS/EOS are ids, never text, so
// "<s>" typed by a user stays text. HF's chat_template (LLAMA2_CHAT_TEMPLATE) renders the same
// string, and HF's tokenizer then gives the same ids.

import type { LlamaTokenizer } from './tokenizer.ts';

export type ChatRole = 'system' | 'user' | 'assistant';

export interface ChatMessage {
  role: ChatRole;
  content: string;
}

const B_INST = '[INST]';
const E_INST = '[/INST]';
const B_SYS = '<<SYS>>\n';
const E_SYS = '\n<</SYS>>\n\n';

// Python's str.strip() removes the characters for which str.isspace() is true; JS trim() differs
// (it also removes U+FEFF and keeps U+001C..U+001F and U+0085).
const PY_SPACE = '\\t\\n\\v\\f\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const PY_STRIP = new RegExp(`^[${PY_SPACE}]+|[${PY_SPACE}]+$`, 'g');

/** Python's `s.strip()`. */
function pyStrip(s: string): string {
  return s.replace(PY_STRIP, '');
}

interface Turn {
  user: string;
  /** Undefined for the final, open user turn. */
  assistant: string | undefined;
}

/**
 * Checks the role order and pairs the messages: an optional system message first, then
 * user/assistant alternating, starting and ending with user. Throws an Error otherwise.
 */
function toTurns(messages: readonly ChatMessage[]): Turn[] {
  if (messages.length === 0) throw new Error('Llama-2 chat: no messages');
  let dialog = messages;
  let system: string | undefined;
  if (dialog[0]!.role === 'system') {
    system = dialog[0]!.content;
    dialog = dialog.slice(1);
  }
  if (dialog.length === 0) throw new Error('Llama-2 chat: a system message must be followed by a user message');
  dialog.forEach((m, i) => {
    const want = i % 2 === 0 ? 'user' : 'assistant';
    if (m.role !== want) {
      const where = system === undefined ? i : i + 1;
      throw new Error(
        `Llama-2 chat: message ${where} has role "${m.role}" but "${want}" was expected; roles must be ` +
          'an optional "system" first, then "user" and "assistant" alternating, starting with "user"',
      );
    }
  });
  if (dialog.length % 2 === 0) throw new Error('Llama-2 chat: the last message must have role "user"');

  const turns: Turn[] = [];
  for (let i = 0; i < dialog.length; i += 2) {
    let user = dialog[i]!.content;
    if (i === 0 && system !== undefined) user = B_SYS + system + E_SYS + user;
    turns.push({ user, assistant: dialog[i + 1]?.content });
  }
  return turns;
}

/** Text of one turn, without BOS/EOS: "[INST] user [/INST] answer " or "[INST] user [/INST]". */
function turnText(turn: Turn): string {
  const head = `${B_INST} ${pyStrip(turn.user)} ${E_INST}`;
  return turn.assistant === undefined ? head : `${head} ${pyStrip(turn.assistant)} `;
}

/**
 * Prompt ids of a Llama-2-chat conversation, ending after the last " [/INST]" so the model
 * continues with the answer. Per completed pair: BOS, the pair's pieces, EOS.
 */
export function formatLlama2Chat(tok: LlamaTokenizer, messages: readonly ChatMessage[]): number[] {
  const ids: number[] = [];
  for (const turn of toTurns(messages)) {
    ids.push(tok.bosId);
    for (const id of tok.encode(turnText(turn), { addBos: false })) ids.push(id); // no spread: a long turn would overflow the stack
    if (turn.assistant !== undefined) ids.push(tok.eosId);
  }
  return ids;
}

/** The same prompt as text with "<s>"/"</s>" markers (for display and debugging). */
export function formatLlama2ChatString(messages: readonly ChatMessage[]): string {
  return toTurns(messages)
    .map((turn) => `<s>${turnText(turn)}${turn.assistant === undefined ? '' : '</s>'}`)
    .join('');
}
