// What the API needs from a tokenizer. The real Llama-2 tokenizer (tokenizer/) is adapted to this
// by the caller, so api/ does not depend on a tokenizer implementation.

export interface TemplateMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface ChatStreamDecoder {
  /** Text completed by this id; never ends inside a UTF-8 character (may be ""). */
  push(id: number): string;
  /** Whatever is still held (an unfinished character becomes U+FFFD). */
  flush(): string;
}

export interface ChatTokenizer {
  /**
   * Prompt ids in the model's chat format (its own chat template, else Llama-2's), control tokens as
   * ids and user text never parsed for them. Messages are an optional system message first, then
   * user/assistant alternating, starting and ending with user (the engine ensures it).
   */
  formatChat(messages: TemplateMessage[]): number[];
  /** Which format formatChat uses: "model" (the model's chat_template) or "llama-2" (built in). */
  chatFormat?: 'model' | 'llama-2';
  /** A decoder for generated ids that continue a prompt (keeps the first piece's leading space). */
  createStreamDecoder(): ChatStreamDecoder;
  encode(text: string): number[];
  decode(ids: number[]): string;
  eosId: number;
  /**
   * Optional, for constrained tool calls: the text each id appends when it follows other text
   * ("▁" as a space), indexed by id; null for ids that are not plain text (special and byte-fallback
   * tokens). Without it, a forced tool call is only asked for in the prompt, not enforced.
   */
  tokenTexts?(): ReadonlyArray<string | null>;
}
