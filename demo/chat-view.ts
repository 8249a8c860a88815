// The conversation: what is shown (user turns, streamed answers with their statistics) and what is
// sent back to the model as history.

import type { ChatCompletionMessageParam } from '../api/types.ts';
import { formatSeconds } from './format.ts';

export type AnswerEnd = 'stop' | 'length' | 'tool_calls' | 'stopped' | 'error';

/** Timing of one answer: time to first token and decode speed. */
export class AnswerTiming {
  private readonly tSent = performance.now();
  private tFirst: number | null = null;
  private tLast = 0;
  /** Text pieces received; each is one token except where a character spans several. */
  pieces = 0;

  piece(): void {
    const now = performance.now();
    if (this.tFirst === null) this.tFirst = now;
    this.tLast = now;
    this.pieces++;
  }

  get ttftSeconds(): number | null {
    return this.tFirst === null ? null : (this.tFirst - this.tSent) / 1000;
  }

  /** Tokens per second after the first one (decode speed): (n - 1) / (t_last - t_first). */
  tokensPerSecond(tokens: number): number | null {
    if (this.tFirst === null || tokens < 2 || this.tLast <= this.tFirst) return null;
    return (tokens - 1) / ((this.tLast - this.tFirst) / 1000);
  }
}

const END_LABEL: Record<AnswerEnd, string> = {
  stop: 'finished',
  length: 'max tokens reached',
  tool_calls: 'tool call',
  stopped: 'stopped',
  error: 'failed',
};

export class AnswerView {
  readonly el: HTMLElement;
  private readonly textEl: HTMLElement;
  private readonly statsEl: HTMLElement;
  text = '';

  constructor(container: HTMLElement) {
    this.el = document.createElement('div');
    this.el.className = 'msg assistant streaming';
    this.textEl = document.createElement('div');
    this.textEl.className = 'text';
    this.statsEl = document.createElement('div');
    this.statsEl.className = 'stats';
    this.statsEl.textContent = 'Thinking…';
    this.el.append(this.textEl, this.statsEl);
    container.append(this.el);
  }

  append(text: string): void {
    this.text += text;
    // Llama-2 answers start with the space after [/INST]; the chat template strips it from history too.
    this.textEl.textContent = this.text.trimStart();
  }

  showStats(timing: AnswerTiming, tokens: number, end: AnswerEnd | null): void {
    const parts: string[] = [];
    const ttft = timing.ttftSeconds;
    if (ttft !== null) parts.push(`TTFT ${formatSeconds(ttft)}`);
    const tps = timing.tokensPerSecond(tokens);
    if (tps !== null) parts.push(`${tps.toFixed(tps < 10 ? 2 : 1)} tok/s`);
    parts.push(`${tokens} token${tokens === 1 ? '' : 's'}`);
    if (end) parts.push(END_LABEL[end]);
    this.statsEl.textContent = parts.join(' · ');
    this.statsEl.dataset.tps = tps === null ? '' : tps.toFixed(3);
  }

  finish(end: AnswerEnd, error?: string): void {
    this.el.classList.remove('streaming');
    this.el.dataset.end = end;
    if (error) {
      const e = document.createElement('div');
      e.className = 'msg-error';
      e.textContent = error;
      this.el.append(e);
    }
    if (this.text === '' && end !== 'error') this.textEl.textContent = '(no text)';
  }
}

interface Turn {
  user: string;
  answer: AnswerView | null;
}

export class ChatView {
  private turns: Turn[] = [];

  constructor(private readonly container: HTMLElement, private readonly emptyState: HTMLElement) {}

  addUser(text: string): void {
    this.emptyState.hidden = true;
    const el = document.createElement('div');
    el.className = 'msg user';
    const t = document.createElement('div');
    t.className = 'text';
    t.textContent = text;
    el.append(t);
    this.container.append(el);
    this.turns.push({ user: text, answer: null });
    this.scroll();
  }

  addAnswer(): AnswerView {
    const view = new AnswerView(this.container);
    this.turns[this.turns.length - 1]!.answer = view;
    this.scroll();
    return view;
  }

  scroll(): void {
    this.container.scrollTop = this.container.scrollHeight;
  }

  clear(): void {
    this.turns = [];
    this.container.querySelectorAll('.msg').forEach((m) => m.remove());
    this.emptyState.hidden = false;
  }

  /**
   * The request's messages: the system prompt, then every finished exchange, then the open user turn.
   * Exchanges whose answer is empty (stopped at once, failed) are left out, so roles keep alternating.
   */
  messages(system: string): ChatCompletionMessageParam[] {
    const out: ChatCompletionMessageParam[] = system ? [{ role: 'system', content: system }] : [];
    this.turns.forEach((t, i) => {
      const last = i === this.turns.length - 1;
      if (last) out.push({ role: 'user', content: t.user });
      else if (t.answer && t.answer.text !== '') out.push({ role: 'user', content: t.user }, { role: 'assistant', content: t.answer.text });
    });
    return out;
  }
}
