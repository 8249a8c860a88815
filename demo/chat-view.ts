// The conversation on screen: user turns, streamed answers (Markdown) with their statistics, the actions on
// the last turn (regenerate, edit), and what is sent back to the model as history. The turns themselves are
// the stored Conversation's (store.ts), so what is shown is what survives a reload.

import type { ChatCompletionMessageParam } from '../api/types.ts';
import { formatSeconds } from './format.ts';
import { copyText, renderMarkdown } from './markdown.ts';
import type { AnswerEnd, Conversation, StoredAnswer, StoredTurn } from './store.ts';

export type { AnswerEnd };

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

function el<K extends keyof HTMLElementTagNameMap>(tag: K, className: string, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

class AnswerView {
  readonly el: HTMLElement;
  private readonly textEl: HTMLElement;
  private readonly statsEl: HTMLElement;
  readonly actions: HTMLElement;
  private renderQueued = false;
  text = '';
  stats = '';

  constructor(container: HTMLElement, stored: StoredAnswer | null) {
    this.el = el('div', 'msg assistant');
    this.textEl = el('div', 'text markdown');
    this.statsEl = el('div', 'stats');
    this.actions = el('div', 'msg-actions');
    const copy = el('button', 'link-btn copy-answer', 'Copy');
    copy.type = 'button';
    copy.addEventListener('click', () => void copyText(copy, this.text.trim()));
    this.actions.append(copy);
    this.el.append(this.textEl, this.statsEl, this.actions);
    container.append(this.el);
    if (stored) {
      this.text = stored.text;
      this.render();
      this.stats = stored.stats;
      this.statsEl.textContent = stored.stats;
      this.finish(stored.end, stored.error);
    } else {
      this.el.classList.add('streaming');
      this.statsEl.textContent = 'Waiting for the model…';
    }
  }

  private render(): void {
    // Llama-2 answers start with the space after [/INST]; the chat template strips it from history too.
    renderMarkdown(this.textEl, this.text.trimStart());
  }

  append(text: string): void {
    this.text += text;
    // One Markdown render per frame, however many pieces arrive in it.
    if (this.renderQueued) return;
    this.renderQueued = true;
    requestAnimationFrame(() => {
      this.renderQueued = false;
      this.render();
    });
  }

  /** Before the first token: how much of the prompt the model has read. */
  showPrefill(done: number, total: number): void {
    if (this.text !== '') return;
    const pct = total > 0 ? Math.min(100, Math.floor((100 * done) / total)) : 0;
    this.statsEl.textContent = `Reading the prompt: ${done} of ${total} tokens (${pct}%)`;
    this.statsEl.dataset.prefill = `${done}/${total}`;
  }

  showStats(timing: AnswerTiming, tokens: number, end: AnswerEnd | null): void {
    const parts: string[] = [];
    const ttft = timing.ttftSeconds;
    if (ttft !== null) parts.push(`TTFT ${formatSeconds(ttft)}`);
    const tps = timing.tokensPerSecond(tokens);
    if (tps !== null) parts.push(`${tps.toFixed(tps < 10 ? 2 : 1)} tok/s`);
    parts.push(`${tokens} token${tokens === 1 ? '' : 's'}`);
    if (end) parts.push(END_LABEL[end]);
    this.stats = parts.join(' · ');
    this.statsEl.textContent = this.stats;
    this.statsEl.dataset.tps = tps === null ? '' : tps.toFixed(3);
    delete this.statsEl.dataset.prefill;
  }

  finish(end: AnswerEnd, error?: string): StoredAnswer {
    this.el.classList.remove('streaming');
    this.el.dataset.end = end;
    this.render();
    if (error) this.el.insertBefore(el('div', 'msg-error', error), this.actions);
    if (this.text === '' && end !== 'error') this.textEl.textContent = '(no text)';
    return { text: this.text, stats: this.stats, end, ...(error ? { error } : {}) };
  }
}

export interface ChatActions {
  regenerate(): void;
  edit(): void;
}

export class ChatView {
  private conversation: Conversation | null = null;
  private answers: (AnswerView | null)[] = [];
  private users: HTMLElement[] = [];

  constructor(private readonly container: HTMLElement, private readonly emptyState: HTMLElement, private readonly actions: ChatActions) {}

  get turns(): StoredTurn[] {
    return this.conversation?.turns ?? [];
  }

  /** Shows `c` (its turns as stored). */
  show(c: Conversation): void {
    this.conversation = c;
    this.container.querySelectorAll('.msg').forEach((m) => m.remove());
    this.answers = [];
    this.users = [];
    for (const t of c.turns) {
      this.renderUser(t.user);
      this.answers.push(t.answer ? new AnswerView(this.container, t.answer) : null);
    }
    this.emptyState.hidden = c.turns.length > 0;
    this.setActionsEnabled(true);
    this.scroll();
  }

  private renderUser(text: string): void {
    const m = el('div', 'msg user');
    m.append(el('div', 'text', text));
    const actions = el('div', 'msg-actions');
    const edit = el('button', 'link-btn edit-btn', 'Edit');
    edit.type = 'button';
    edit.addEventListener('click', () => this.actions.edit());
    actions.append(edit);
    m.append(actions);
    this.container.append(m);
    this.users.push(m);
  }

  addUser(text: string): void {
    this.emptyState.hidden = true;
    this.turns.push({ user: text, answer: null });
    this.renderUser(text);
    this.answers.push(null);
    this.scroll();
  }

  /** A streaming answer to the last user turn. */
  addAnswer(): AnswerView {
    const view = new AnswerView(this.container, null);
    const regen = el('button', 'link-btn regenerate-btn', 'Regenerate');
    regen.type = 'button';
    regen.addEventListener('click', () => this.actions.regenerate());
    view.actions.append(regen);
    this.answers[this.answers.length - 1] = view;
    this.scroll();
    return view;
  }

  /** Records the finished answer of the last turn. */
  finishAnswer(answer: StoredAnswer): void {
    this.turns[this.turns.length - 1]!.answer = answer;
  }

  /** Drops the last turn's answer (to answer it again). */
  dropLastAnswer(): void {
    const view = this.answers[this.answers.length - 1];
    view?.el.remove();
    this.answers[this.answers.length - 1] = null;
    const last = this.turns[this.turns.length - 1];
    if (last) last.answer = null;
  }

  /** Removes the last turn (user message and answer) and returns the user's text. */
  popLastTurn(): string | null {
    const turn = this.turns.pop();
    if (!turn) return null;
    this.answers.pop()?.el.remove();
    this.users.pop()?.remove();
    this.emptyState.hidden = this.turns.length > 0;
    return turn.user;
  }

  /** Regenerate and edit act on the last turn only, and not while an answer streams. */
  setActionsEnabled(enabled: boolean): void {
    this.container.dataset.actions = enabled ? 'on' : 'off';
    const n = this.turns.length;
    this.users.forEach((u, i) => u.classList.toggle('last-turn', i === n - 1));
    this.answers.forEach((a, i) => {
      if (!a) return;
      a.el.classList.toggle('last-turn', i === n - 1);
      if (i === n - 1 && !a.el.querySelector('.regenerate-btn')) {
        const regen = el('button', 'link-btn regenerate-btn', 'Regenerate');
        regen.type = 'button';
        regen.addEventListener('click', () => this.actions.regenerate());
        a.actions.append(regen);
      }
    });
  }

  scroll(): void {
    this.container.scrollTop = this.container.scrollHeight;
  }

  /**
   * The request's messages: the system prompt, then every finished exchange, then the open user turn
   * (`draft` stands for it when given: the composer's text, for the token counter).
   * Exchanges whose answer is empty (stopped at once, failed) are left out, so roles keep alternating.
   */
  messages(system: string, draft?: string): ChatCompletionMessageParam[] {
    const out: ChatCompletionMessageParam[] = system ? [{ role: 'system', content: system }] : [];
    const turns = draft === undefined ? this.turns : [...this.turns, { user: draft, answer: null }];
    turns.forEach((t, i) => {
      const last = i === turns.length - 1;
      if (last) out.push({ role: 'user', content: t.user });
      else if (t.answer && t.answer.text !== '') out.push({ role: 'user', content: t.user }, { role: 'assistant', content: t.answer.text });
    });
    return out;
  }
}
