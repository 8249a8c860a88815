// The model's sampling defaults (checkpoint/generation-defaults.ts) applied to a validated request: each
// of temperature, top_p, top_k and repetition_penalty that the request leaves out (absent or null)
// takes the model's value instead of the API's default. What the request sets always wins.

import type { SamplingDefaults } from '../checkpoint/generation-defaults.ts';
import type { ValidatedChatRequest } from './validate.ts';

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
