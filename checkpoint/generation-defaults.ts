// A model's own sampling defaults: Hugging Face generation_config.json (temperature, top_p, top_k,
// repetition_penalty) or the GGUF keys llama.cpp reads for the same purpose (general.sampling.temp,
// .top_p, .top_k, .penalty_repeat). They apply to requests that leave those parameters out (the
// engine, the server, `generate`); what a request sets always wins.
//
// HF semantics kept: `do_sample: false` (written explicitly) means greedy decoding, so the default
// temperature becomes 0; `top_k: 0` means no top-k, as here. Values outside the API's ranges are
// ignored with a warning rather than refusing the model.

import type { GgufValue } from './gguf.ts';

/** Sampling defaults in the sampler's names; a field is present only when the model sets it. */
export interface SamplingDefaults {
  temperature?: number;
  topP?: number;
  topK?: number;
  repetitionPenalty?: number;
}

export interface ModelSamplingDefaults {
  defaults: SamplingDefaults;
  /** Where they came from ("generation_config.json", "GGUF general.sampling.*"), null when none. */
  source: string | null;
  /** Values that were present but unusable, as sentences for the load log. */
  warnings: string[];
}

// The API's ranges (api/validate.ts LIMITS); top_p's lower bound is open.
const RANGES: Record<keyof SamplingDefaults, { wire: string; min: number; max: number; integer?: boolean; openMin?: boolean }> = {
  temperature: { wire: 'temperature', min: 0, max: 2 },
  topP: { wire: 'top_p', min: 0, max: 1, openMin: true },
  topK: { wire: 'top_k', min: 0, max: 999, integer: true },
  repetitionPenalty: { wire: 'repetition_penalty', min: 0.01, max: 5 },
};

function accept(out: ModelSamplingDefaults, key: keyof SamplingDefaults, value: unknown, where: string): void {
  if (value === undefined || value === null) return;
  const r = RANGES[key];
  const ok = typeof value === 'number' && Number.isFinite(value) && value <= r.max && (r.openMin ? value > r.min : value >= r.min) && (!r.integer || Number.isInteger(value));
  if (!ok) {
    out.warnings.push(`${where}: ${JSON.stringify(value)} is outside ${r.wire}'s range ${r.openMin ? '(' : '['}${r.min}, ${r.max}]${r.integer ? ' (an integer)' : ''}; ignored`);
    return;
  }
  out.defaults[key] = value;
}

/** Defaults from a generation_config.json object (null: none). `file` names it in warnings. */
export function samplingDefaultsFromGenerationConfig(json: Record<string, unknown> | null, file = 'generation_config.json'): ModelSamplingDefaults {
  const out: ModelSamplingDefaults = { defaults: {}, source: null, warnings: [] };
  if (!json) return out;
  accept(out, 'temperature', json.temperature, `${file} temperature`);
  accept(out, 'topP', json.top_p, `${file} top_p`);
  accept(out, 'topK', json.top_k, `${file} top_k`);
  accept(out, 'repetitionPenalty', json.repetition_penalty, `${file} repetition_penalty`);
  if (json.do_sample === false) out.defaults.temperature = 0; // HF: greedy whatever the temperature says
  if (Object.keys(out.defaults).length > 0) out.source = file;
  return out;
}

/** Defaults from GGUF metadata (general.sampling.*, as llama.cpp's common/ reads them). */
export function samplingDefaultsFromGguf(md: ReadonlyMap<string, GgufValue>, where = 'GGUF'): ModelSamplingDefaults {
  const out: ModelSamplingDefaults = { defaults: {}, source: null, warnings: [] };
  const f32 = (v: GgufValue | undefined): unknown => (typeof v === 'number' ? Number(Math.fround(v).toPrecision(7)) : v); // 0.6f, not 0.6000000238
  accept(out, 'temperature', f32(md.get('general.sampling.temp')), `${where} general.sampling.temp`);
  accept(out, 'topP', f32(md.get('general.sampling.top_p')), `${where} general.sampling.top_p`);
  accept(out, 'topK', md.get('general.sampling.top_k'), `${where} general.sampling.top_k`);
  accept(out, 'repetitionPenalty', f32(md.get('general.sampling.penalty_repeat')), `${where} general.sampling.penalty_repeat`);
  if (Object.keys(out.defaults).length > 0) out.source = 'GGUF general.sampling.*';
  return out;
}

/** One line for the load log: "sampling defaults from generation_config.json: temperature 0.6, top_p 0.9". */
export function describeSamplingDefaults(m: ModelSamplingDefaults): string | null {
  if (m.source === null) return null;
  // generation_config.json's keys, which are also the API's parameter names
  const parts = (Object.keys(RANGES) as (keyof SamplingDefaults)[]).filter((k) => m.defaults[k] !== undefined).map((k) => `${RANGES[k].wire} ${m.defaults[k]}`);
  return `sampling defaults from ${m.source}: ${parts.join(', ')} (requests that set them win)`;
}
