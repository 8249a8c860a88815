// The model's sampling defaults (read from its files by checkpoint/generation-defaults.ts) applied to a
// validated request: each of temperature, top_p, top_k and repetition_penalty that the request leaves out
// (absent or null) takes the model's value instead of the API's default. What the request sets always wins.

import type { SamplingParams } from '../runtime/generation-types.ts';
import type { ValidatedChatRequest } from './validate.ts';

/** Sampling defaults a model sets, in the sampler's names; a field is present only when the model sets it. */
export type SamplingDefaults = Partial<Pick<SamplingParams, 'temperature' | 'topP' | 'topK' | 'repetitionPenalty'>>;

const WIRE: Record<keyof SamplingDefaults, string> = { temperature: 'temperature', topP: 'top_p', topK: 'top_k', repetitionPenalty: 'repetition_penalty' };

export function applySamplingDefaults(req: ValidatedChatRequest, body: unknown, defaults: SamplingDefaults | undefined): ValidatedChatRequest {
  if (!defaults) return req;
  const given = body as Record<string, unknown>;
  const sampling = { ...req.sampling };
  for (const key of Object.keys(WIRE) as (keyof SamplingDefaults)[]) {
    const v = defaults[key];
    if (v !== undefined && (given[WIRE[key]] === undefined || given[WIRE[key]] === null)) sampling[key] = v;
  }
  return { ...req, sampling };
}

/** The defaults in the API's wire names ({temperature: 0.6, top_p: 0.9}), for /v1/models. */
export function samplingDefaultsWire(d: SamplingDefaults): Record<string, number> {
  const out: Record<string, number> = {};
  for (const key of Object.keys(WIRE) as (keyof SamplingDefaults)[]) if (d[key] !== undefined) out[WIRE[key]] = d[key]!;
  return out;
}
