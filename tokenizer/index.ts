// Public API of the tokenizer package part. It stands alone: no imports from runtime/ or api/.

export { LlamaTokenizer } from './tokenizer.ts';
export type { EncodeOptions, DecodeOptions } from './tokenizer.ts';
export { StreamDecoder } from './stream-decoder.ts';
export type { StreamDecoderOptions } from './stream-decoder.ts';
export { formatLlama2Chat, formatLlama2ChatString } from './chat-template.ts';
export type { ChatMessage, ChatRole } from './chat-template.ts';
export {
  llama2TokenizerConfigJson,
  LLAMA2_CHAT_TEMPLATE,
  LLAMA2_CHAT_TEMPLATE_META,
  LLAMA2_BOS,
  LLAMA2_EOS,
  LLAMA2_UNK,
} from './llama2-config.ts';
export type { Llama2TokenizerConfigJson } from './llama2-config.ts';
export { buildLlama2TokenizerJson, llama2TokenizerJsonText, LLAMA2_VOCAB_SIZE } from './llama2-vocab.ts';
export { spmTokenizerJson } from './tokenizer-json.ts';
export type { SpmTokenizerJson, HfAddedToken } from './tokenizer-json.ts';
export { chatFormat, compileChatTemplate, renderChatTemplate } from './model-chat-template.ts';
export type { ChatFormat, RenderedChat, TemplateVars } from './model-chat-template.ts';
