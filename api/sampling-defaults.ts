// The model's sampling defaults (read by checkpoint/generation-defaults.ts) in the API: applied to a
// validated request, where each of temperature, top_p, top_k and repetition_penalty that the request leaves
// out (absent or null) takes the model's value instead of the API's default (what the request sets always
// wins), and listed under their wire names.

import type { SamplingDefaults } from '../checkpoint/generation-defaults.ts';
import type { ValidatedChatRequest } from './validate.ts';

const WIRE: Record<keyof SamplingDefaults, string> = { temperature: 'temperature', topP: 'top_p', topK: 'top_k', repetitionPenalty: 'repetition_penalty' };

/** The defaults in the API's wire names ({temperature: 0.6, top_p: 0.9}), for /v1/models. */
export function samplingDefaultsWire(d: SamplingDefaults): Record<string, number> {
  const out: Record<string, number> = {};
  for (const key of Object.keys(WIRE) as (keyof SamplingDefaults)[]) if (d[key] !== undefined) out[WIRE[key]] = d[key]!;
  return out;
}

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
