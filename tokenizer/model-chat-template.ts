// The model's own chat template (tokenizer_config.json chat_template, or GGUF tokenizer.chat_template),
// rendered with @huggingface/jinja (the Jinja engine transformers.js uses, with transformers'
// trim_blocks / lstrip_blocks), then tokenized without letting user text become control ids.
//
// Rendering. The template gets what transformers' apply_chat_template passes: `messages` [{role,
// content}], `bos_token`, `eos_token`, `unk_token`, `add_generation_prompt: true` (the prompt ends
// where the assistant's answer starts), and `raise_exception`. A template that raises on a system
// message (some have no system role) is rendered again with the system text put in front of the first
// user message, separated by a blank line.
//
// Safety. HF tokenizes the rendered string with special-token parsing on, so a user who types "</s>"
// or "<|im_start|>" would inject control ids. Here every message content is rendered wrapped in two
// sentinel characters (private-use code points that occur nowhere in the template or the messages),
// placed inside the content's leading/trailing whitespace so that strip()/trim still act on the
// whitespace as on the plain text. The sentinel render, with the sentinels removed, must equal the
// plain render (else the template did something with the content that cannot be traced, such as
// taking its length, and the prompt is refused). Characters between sentinels, and whitespace runs
// touching them, are the user's: added-token strings there stay text. Everything else is the
// template's own text, where added-token strings become their ids. The text between control tokens
// is tokenized section by section as HF does (LlamaTokenizer.encodeMarked), so a conversation
// without special strings gets exactly the ids of HF's tokenization of the rendered text.
//
// BOS. When the tokenizer adds BOS (add_bos_token, default true) and the rendered prompt does not
// already start with it, BOS is put first, as llama.cpp and transformers' text-generation pipeline do
// for templates without bos_token (TinyLlama-Chat's zephyr template, for one).
//
// Without a template, or with Llama-2's own, the built-in Llama-2 format (chat-template.ts) is used:
// it builds the same ids directly and strips exactly as Meta's Python code does.

import { Template } from '@huggingface/jinja';

/** A compiled chat template (@huggingface/jinja's Template; our own name keeps its types out of our declarations). */
export interface CompiledTemplate {
  render(vars: Record<string, unknown>): string;
}
import { formatLlama2Chat, type ChatMessage } from './chat-template.ts';
import { LLAMA2_CHAT_TEMPLATE, LLAMA2_CHAT_TEMPLATE_META } from './llama2-config.ts';
import type { LlamaTokenizer } from './tokenizer.ts';

export interface ChatFormat {
  /** "model": the model's own chat_template; "llama-2": the built-in Llama-2 format. */
  readonly kind: 'model' | 'llama-2';
  /** Prompt ids of a conversation (an optional system message, then user/assistant, ending with user). */
  format(messages: readonly ChatMessage[]): number[];
}

/** A rendered prompt: its text, and per UTF-16 unit 1 where the text is the user's (message contents). */
export interface RenderedChat {
  text: string;
  untrusted: Uint8Array;
}

export interface TemplateVars {
  bos_token: string;
  eos_token: string;
  unk_token: string;
}

const WS = /\s/; // the characters JS trim() (and so the Jinja engine's strip/trim) removes

/** Two characters from the private-use area that occur in none of `texts`. */
function pickSentinels(texts: readonly string[]): [string, string] {
  const used = new Set<number>();
  for (const t of texts) for (let i = 0; i < t.length; i++) if (t.charCodeAt(i) >= 0xe000) used.add(t.charCodeAt(i));
  const free: string[] = [];
  for (let c = 0xe000; free.length < 2; c++) if (!used.has(c)) free.push(String.fromCharCode(c));
  return [free[0]!, free[1]!];
}

/** content with the sentinels around its non-whitespace core ("  a b \n" -> "  [a b] \n"). */
function wrap(content: string, open: string, close: string): string {
  if (content.length === 0) return content;
  const m = /^(\s*)([\s\S]*?)(\s*)$/.exec(content)!;
  return m[1]! + open + m[2]! + close + m[3]!;
}

function renderWith(template: CompiledTemplate, messages: readonly ChatMessage[], vars: TemplateVars): string {
  return template.render({ ...vars, messages: messages.map((m) => ({ role: m.role, content: m.content })), add_generation_prompt: true });
}

/**
 * Renders `messages` with a compiled template and marks the user's characters (see the header).
 * Throws when the template raises, or when it transforms contents in a way the marking cannot follow.
 */
export function renderChatTemplate(template: CompiledTemplate, source: string, messages: readonly ChatMessage[], vars: TemplateVars): RenderedChat {
  const [open, close] = pickSentinels([source, ...messages.map((m) => m.content), vars.bos_token, vars.eos_token, vars.unk_token]);
  const plain = renderWith(template, messages, vars);
  const marked = renderWith(template, messages.map((m) => ({ role: m.role, content: wrap(m.content, open, close) })), vars);

  const chars: string[] = [];
  const flags: number[] = [];
  const edges = new Set<number>(); // output offsets where a sentinel stood
  let depth = 0;
  for (const ch of marked) {
    if (ch === open || ch === close) {
      depth += ch === open ? 1 : -1;
      if (depth < 0 || depth > 1) break;
      edges.add(flags.length);
      continue;
    }
    chars.push(ch);
    for (let k = 0; k < ch.length; k++) flags.push(depth);
  }
  const text = chars.join('');
  if (depth !== 0 || text !== plain) {
    throw new Error('chat template: the template transforms message contents in a way whose user text cannot be traced (e.g. it measures or splits them); it is not supported');
  }
  const untrusted = Uint8Array.from(flags);
  // Whitespace touching the user's text counts as the user's (it may be the content's own).
  for (let i = 0; i < text.length; i++) if (WS.test(text[i]!) && (edges.has(i) || (i > 0 && untrusted[i - 1]))) untrusted[i] = 1;
  for (let i = text.length - 1; i >= 0; i--) if (WS.test(text[i]!) && (edges.has(i + 1) || untrusted[i + 1])) untrusted[i] = 1;
  return { text, untrusted };
}

/** Compiles a chat template; throws naming where it came from. */
export function compileChatTemplate(source: string): CompiledTemplate {
  try {
    return new Template(source);
  } catch (e) {
    throw new Error(`chat_template: not a template this Jinja engine can parse (${(e as Error).message})`);
  }
}

/**
 * The prompt format of a tokenizer's model: its own chat template when it has one other than Llama-2's,
 * else the built-in Llama-2 format. `template` overrides the tokenizer's (null: force the built-in).
 */
export function chatFormat(tok: LlamaTokenizer, template: string | null = tok.chatTemplate): ChatFormat {
  // Llama-2's own template (as we write it or as Meta's repos carry it): the built-in format, whose
  // strip() is Python's (the Jinja engine's is JS trim(), which differs on a few exotic spaces).
  if (template === null || template.trim() === '' || template === LLAMA2_CHAT_TEMPLATE || template === LLAMA2_CHAT_TEMPLATE_META) {
    return { kind: 'llama-2', format: (messages) => formatLlama2Chat(tok, messages) };
  }
  const compiled = compileChatTemplate(template);
  const vars: TemplateVars = { bos_token: tok.idToPiece(tok.bosId), eos_token: tok.idToPiece(tok.eosId), unk_token: tok.idToPiece(tok.unkId) };
  const render = (messages: readonly ChatMessage[]): RenderedChat => {
    try {
      return renderChatTemplate(compiled, template, messages, vars);
    } catch (e) {
      // A template without a system role: the system text goes in front of the first user message.
      if (messages.length < 2 || messages[0]!.role !== 'system' || messages[1]!.role !== 'user') throw e;
      const merged = [{ role: 'user' as const, content: `${messages[0]!.content}\n\n${messages[1]!.content}` }, ...messages.slice(2)];
      return renderChatTemplate(compiled, template, merged, vars);
    }
  };
  const fmt: ChatFormat = {
    kind: 'model',
    format(messages) {
      if (messages.length === 0) throw new Error('chat: no messages');
      let r: RenderedChat;
      try {
        r = render(messages);
      } catch (e) {
        const msg = (e as Error).message;
        throw new Error(msg.startsWith('chat template') ? msg : `chat template: ${msg}`);
      }
      const ids = tok.encodeMarked(r.text, r.untrusted);
      if (tok.addsBos && ids[0] !== tok.bosId) ids.unshift(tok.bosId);
      return ids;
    },
  };
  // A template whose user text cannot be traced fails every request: refuse it now (at load). Other
  // errors of this probe (a template that wants other roles) are left to the requests that cause them.
  const probe: ChatMessage[] = [
    { role: 'system', content: 'You are helpful.' }, { role: 'user', content: 'Hello' }, { role: 'assistant', content: 'Hi!' }, { role: 'user', content: 'Bye' },
  ];
  try {
    fmt.format(probe);
  } catch (e) {
    if ((e as Error).message.includes('cannot be traced')) throw e;
  }
  return fmt;
}
