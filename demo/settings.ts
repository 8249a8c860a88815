// The settings panel: every sampling parameter of the chat API, with the API's ranges, rendered from
// one table and read back as the request's fields (wire names). Every field is checked as it is typed:
// an invalid one is marked (aria-invalid) with its message under it. Values are saved through `onSave`
// (the page keeps them in IndexedDB with the conversations).

import type { ChatCompletionCreateParamsBase } from '../api/types.ts';

type NumberKey = 'temperature' | 'top_p' | 'top_k' | 'min_p' | 'max_tokens' | 'presence_penalty' | 'frequency_penalty' | 'repetition_penalty';

interface NumberParam {
  key: NumberKey;
  label: string;
  min: number;
  max: number;
  step: number;
  value: number; // the panel's default
  hint: string;
  slider: boolean;
}

/** Ranges as api/validate.ts LIMITS; defaults are the API's, but a bounded answer length. */
const NUMBER_PARAMS: NumberParam[] = [
  { key: 'temperature', label: 'Temperature', min: 0, max: 2, step: 0.05, value: 1, hint: '0 = greedy', slider: true },
  { key: 'top_p', label: 'Top p', min: 0.01, max: 1, step: 0.01, value: 1, hint: 'nucleus mass kept', slider: true },
  { key: 'top_k', label: 'Top k', min: 0, max: 999, step: 1, value: 0, hint: '0 = off', slider: false },
  { key: 'min_p', label: 'Min p', min: 0, max: 1, step: 0.01, value: 0, hint: 'relative to the top token', slider: true },
  { key: 'max_tokens', label: 'Max tokens', min: 1, max: 4096, step: 1, value: 256, hint: 'answer length cap', slider: false },
  { key: 'presence_penalty', label: 'Presence penalty', min: -2, max: 2, step: 0.05, value: 0, hint: 'additive', slider: true },
  { key: 'frequency_penalty', label: 'Frequency penalty', min: -2, max: 2, step: 0.05, value: 0, hint: 'additive, per count', slider: true },
  { key: 'repetition_penalty', label: 'Repetition penalty', min: 0.01, max: 5, step: 0.01, value: 1, hint: '1 = off', slider: true },
];

export type SamplingFields = Pick<ChatCompletionCreateParamsBase, NumberKey | 'seed' | 'stop'>;

/** The panel's values as typed (strings), as saved. */
export type SettingsValues = Record<string, string>;

/** Settings that do not make a valid request: one message per field id. */
export class SettingsError extends Error {
  constructor(readonly fields: Map<string, string>) {
    super(fields.size === 1 ? [...fields.values()][0]! : `${fields.size} settings need fixing: ${[...fields.values()].join(' ')}`);
    this.name = 'SettingsError';
  }
}

export class SettingsPanel {
  private readonly inputs = new Map<NumberKey, HTMLInputElement>();
  private readonly seed: HTMLInputElement;
  private readonly stop: HTMLTextAreaElement;
  /** Called with the values after every change. */
  onSave: ((values: SettingsValues) => void) | null = null;
  /** Called after every change with the number of invalid fields. */
  onValidity: ((invalid: number) => void) | null = null;

  constructor(private readonly root: HTMLElement, private readonly systemPrompt: HTMLTextAreaElement) {
    for (const p of NUMBER_PARAMS) root.append(this.numberRow(p));
    this.seed = this.textRow('seed', 'Seed', 'random', 'same seed, same answer') as HTMLInputElement;
    this.stop = this.textRow('stop', 'Stop sequences', 'one per line, up to 4 (\\n = newline)', 'never shown in the answer', true) as HTMLTextAreaElement;
    const changed = (): void => {
      this.validate();
      this.onSave?.(this.values());
    };
    root.addEventListener('input', changed);
    systemPrompt.addEventListener('input', changed);
  }

  private numberRow(p: NumberParam): HTMLElement {
    const row = document.createElement('div');
    row.className = 'param';
    const label = document.createElement('label');
    label.htmlFor = p.key;
    label.innerHTML = `<span class="param-name"></span><span class="param-hint"></span>`;
    label.querySelector('.param-name')!.textContent = p.label;
    label.querySelector('.param-hint')!.textContent = p.hint;
    const num = document.createElement('input');
    Object.assign(num, { type: 'number', id: p.key, min: String(p.min), max: String(p.max), step: String(p.step), value: String(p.value) });
    num.className = 'param-number';
    num.dataset.default = String(p.value);
    row.append(label, num);
    if (p.slider) {
      const range = document.createElement('input');
      Object.assign(range, { type: 'range', min: String(p.min), max: String(p.max), step: String(p.step), value: String(p.value) });
      range.className = 'param-range';
      range.setAttribute('aria-label', p.label);
      range.addEventListener('input', () => (num.value = range.value));
      num.addEventListener('input', () => (range.value = num.value));
      row.append(range);
      row.classList.add('has-range');
    }
    this.inputs.set(p.key, num);
    return row;
  }

  private textRow(id: string, name: string, placeholder: string, hint: string, multiline = false): HTMLInputElement | HTMLTextAreaElement {
    const row = document.createElement('div');
    row.className = 'param';
    const label = document.createElement('label');
    label.htmlFor = id;
    label.innerHTML = `<span class="param-name"></span><span class="param-hint"></span>`;
    label.querySelector('.param-name')!.textContent = name;
    label.querySelector('.param-hint')!.textContent = hint;
    const input = multiline ? document.createElement('textarea') : document.createElement('input');
    input.id = id;
    input.placeholder = placeholder;
    input.className = 'param-text';
    if (input instanceof HTMLTextAreaElement) input.rows = 2;
    else input.inputMode = 'numeric';
    row.append(label, input);
    this.root.append(row);
    return input;
  }

  private setNumber(key: NumberKey, value: string): void {
    const num = this.inputs.get(key)!;
    num.value = value;
    const range = num.parentElement!.querySelector<HTMLInputElement>('.param-range');
    if (range) range.value = value;
  }

  reset(): void {
    for (const p of NUMBER_PARAMS) this.setNumber(p.key, String(p.value));
    this.seed.value = '';
    this.stop.value = '';
    this.systemPrompt.value = '';
    this.validate();
    this.onSave?.(this.values());
  }

  values(): SettingsValues {
    const values: SettingsValues = { seed: this.seed.value, stop: this.stop.value, system: this.systemPrompt.value };
    for (const [key, input] of this.inputs) values[key] = input.value;
    return values;
  }

  /** Puts saved values back (unknown or missing keys keep their defaults). */
  restore(values: SettingsValues): void {
    for (const p of NUMBER_PARAMS) if (typeof values[p.key] === 'string' && values[p.key] !== '') this.setNumber(p.key, values[p.key]!);
    if (typeof values.seed === 'string') this.seed.value = values.seed;
    if (typeof values.stop === 'string') this.stop.value = values.stop;
    if (typeof values.system === 'string') this.systemPrompt.value = values.system;
    this.validate();
  }

  /** Marks every invalid field (and unmarks the rest); returns the request fields or the errors. */
  validate(): SamplingFields | SettingsError {
    const errors = new Map<string, string>();
    const out: SamplingFields = {};
    for (const p of NUMBER_PARAMS) {
      const raw = this.inputs.get(p.key)!.value.trim();
      if (raw === '') continue; // the API default
      const v = Number(raw);
      if (!Number.isFinite(v) || v < p.min || v > p.max) errors.set(p.key, `${p.label} must be between ${p.min} and ${p.max}.`);
      else if (p.step === 1 && !Number.isInteger(v)) errors.set(p.key, `${p.label} must be a whole number.`);
      else out[p.key] = v;
    }
    const seed = this.seed.value.trim();
    if (seed !== '') {
      if (!/^\d+$/.test(seed) || BigInt(seed) > 2n ** 63n - 1n) errors.set('seed', 'Seed must be a whole number (0 to 2^63-1), or empty for a random one.');
      else {
        const big = BigInt(seed);
        out.seed = big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
      }
    }
    // One per line; "\n" and "\t" typed as two characters stand for a newline and a tab.
    const stops = this.stop.value.split('\n').filter((s) => s !== '').map((s) => s.replace(/\\n/g, '\n').replace(/\\t/g, '\t'));
    if (stops.length > 4) errors.set('stop', 'At most 4 stop sequences.');
    else if (stops.length > 0) out.stop = stops;
    for (const id of [...this.inputs.keys(), 'seed', 'stop']) this.mark(id, errors.get(id) ?? null);
    this.onValidity?.(errors.size);
    return errors.size > 0 ? new SettingsError(errors) : out;
  }

  private mark(id: string, message: string | null): void {
    const input = this.root.querySelector<HTMLElement>(`#${id}`);
    const row = input?.closest<HTMLElement>('.param');
    if (!input || !row) return;
    let note = row.querySelector<HTMLElement>('.field-error');
    if (message === null) {
      input.removeAttribute('aria-invalid');
      row.classList.remove('invalid');
      note?.remove();
      return;
    }
    input.setAttribute('aria-invalid', 'true');
    row.classList.add('invalid');
    if (!note) {
      note = document.createElement('div');
      note.className = 'field-error';
      note.id = `${id}-error`;
      row.append(note);
      input.setAttribute('aria-describedby', note.id);
    }
    note.textContent = message;
  }

  get system(): string {
    return this.systemPrompt.value.trim();
  }

  /** The request fields; throws a SettingsError (after marking the fields) when any is invalid. */
  read(): SamplingFields {
    const r = this.validate();
    if (r instanceof SettingsError) throw r;
    return r;
  }
}
