// Token samplers for tests that drive a model or the scheduler directly.

import type { TokenSampler } from '../../runtime/generation-types.ts';

/** Greedy: the highest logit, the lowest id among ties; no penalties, so nothing to accept. */
export function greedySampler(): TokenSampler {
  return {
    greedy: true,
    sample(logits) {
      let best = 0;
      for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
      return best;
    },
    accept: () => undefined,
  };
}
