// Llama-2's tokenizer_config.json (Hugging Face layout) and its special-token names.
//
// Kept apart from llama2-vocab.ts so that loading a tokenizer.json from a model directory does
// not pull in the 670 KB vocabulary module.

/** Special-token pieces of the Llama-2 SentencePiece model; ids 0, 1, 2 in its vocabulary. */
export const LLAMA2_UNK = '<unk>';
export const LLAMA2_BOS = '<s>';
export const LLAMA2_EOS = '</s>';

/**
 * The Llama-2-chat Jinja template as shipped in Meta's Hugging Face repos. It renders the same
 * text as Meta's `chat_completion` (llama/generation.py): per (user, assistant) pair
 * `<s>[INST] {user.strip()} [/INST] {assistant.strip()} </s>`, the last user turn left open after
 * ` [/INST]`, and the system prompt wrapped in `<<SYS>>\n...\n<</SYS>>\n\n` in front of the first
 * user message (the strip applies to the merged text). `\\n` is a Jinja string escape, so the JSON
 * file holds a backslash and an `n`. chat-template.ts builds the same thing directly as token ids.
 */
export const LLAMA2_CHAT_TEMPLATE =
  "{% if messages[0]['role'] == 'system' %}" +
  "{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}" +
  '{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}' +
  '{% for message in loop_messages %}' +
  "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}" +
  "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}" +
  '{% endif %}' +
  '{% if loop.index0 == 0 and system_message != false %}' +
  "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}" +
  "{% else %}{% set content = message['content'] %}{% endif %}" +
  "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}" +
  "{% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + ' ' + eos_token }}" +
  '{% endif %}{% endfor %}';

/**
 * The same template as the files in meta-llama/Llama-2-{7,13,70}b-chat-hf carry it: it differs from
 * LLAMA2_CHAT_TEMPLATE only by a second space before one `+` (no difference in what it renders).
 */
export const LLAMA2_CHAT_TEMPLATE_META = LLAMA2_CHAT_TEMPLATE.replace("{{ ' ' + content.strip()", "{{ ' '  + content.strip()");

/** The tokenizer_config.json fields of Llama-2 (wire spelling kept). */
export interface Llama2TokenizerConfigJson {
  tokenizer_class: 'LlamaTokenizer';
  bos_token: string;
  eos_token: string;
  unk_token: string;
  pad_token: null;
  add_bos_token: boolean;
  add_eos_token: boolean;
  /** Context length of Llama-2, in tokens. */
  model_max_length: number;
  /** SentencePiece decoding never rewrites " ." to "."; the HF default (true) would. */
  clean_up_tokenization_spaces: boolean;
  legacy: boolean;
  padding_side: 'right';
  chat_template: string;
}

/** A fresh copy of Llama-2's tokenizer_config.json as an object. */
export function llama2TokenizerConfigJson(): Llama2TokenizerConfigJson {
  return {
    tokenizer_class: 'LlamaTokenizer',
    bos_token: LLAMA2_BOS,
    eos_token: LLAMA2_EOS,
    unk_token: LLAMA2_UNK,
    pad_token: null,
    add_bos_token: true,
    add_eos_token: false,
    model_max_length: 4096,
    clean_up_tokenization_spaces: false,
    legacy: true,
    padding_side: 'right',
    chat_template: LLAMA2_CHAT_TEMPLATE,
  };
}
