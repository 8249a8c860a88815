// The buffers a loaded model allocates on each device besides its weights and KV cache, described once:
// forward.ts allocates its run state from runStateSizes, model.ts its read-back staging from stagingSizes,
// and the planner adds up the same two lists before anything is allocated.

import type { LlamaConfig } from '../checkpoint/config.ts';
import { ATTENTION_SPLIT_LEN, attentionPartFloats } from '../kernels/attention.ts';
import { RUNTIME_DEFAULTS } from './defaults.ts';

/** What sizes a device's buffers: the model's config and the step shape the model was loaded with. */
export interface StepShape {
  maxRows: number; // token rows per step (the prefill chunk)
  maxOut: number; // rows of logits per step
  nSlots: number; // sequences holding KV cache at once
  blockSize: number; // KV positions per cache block
  maxBlocksPerSeq: number; // blocks of one sequence's context
}

const F32 = 4;

/** A buffer's size as storageBuffer (kernels/common.ts) allocates it: 16-byte multiples, at least 16. */
export const paddedBytes = (bytes: number): number => Math.max(16, Math.ceil(bytes / 16) * 16);

/** Decode rows that split attention holds partial results for. */
export const splitAttentionRows = (s: Pick<StepShape, 'maxRows' | 'nSlots'>): number => Math.min(s.maxRows, Math.max(1, s.nSlots));

/** Splits of ATTENTION_SPLIT_LEN positions a row of `context` positions needs. */
export const attentionMaxSplits = (context: number): number => Math.max(1, Math.ceil(context / ATTENTION_SPLIT_LEN));

/** Bytes of each run-state buffer (forward.ts RunState, without the KV cache), as requested (before padding). */
export function runStateSizes(c: LlamaConfig, s: StepShape) {
  const T = s.maxRows, O = s.maxOut;
  const qDim = c.nHeads * c.headDim;
  const kvDim = c.nKvHeads * c.headDim;
  const context = s.maxBlocksPerSeq * s.blockSize;
  const splits = attentionMaxSplits(context);
  return {
    step: 16, // the Step uniform
    ids: T * 4, pos: T * 4, slot: T * 4,
    blockTable: s.nSlots * s.maxBlocksPerSeq * 4,
    ropeCs: Math.max(context, 1) * c.headDim * F32, // (context, headDim / 2) cos/sin pairs
    x: T * c.dim * F32, xb: T * c.dim * F32,
    qkv: T * (qDim + 2 * kvDim) * F32, att: T * qDim * F32,
    hb: T * c.hiddenDim * F32, hb2: T * 2 * c.hiddenDim * F32, // hb2: gate | up
    xOut: O * c.dim * F32, xOutNorm: O * c.dim * F32,
    logits: O * c.vocabSize * F32, best: O * 4,
    // split (flash-decoding) attention's partial results: (decode rows, nHeads, splits, 4 + headDim) f32
    attPart: splits > 1 ? attentionPartFloats(splitAttentionRows(s), c.nHeads, c.headDim, splits) * F32 : 16,
  };
}

export type RunStateName = keyof ReturnType<typeof runStateSizes>;

/**
 * Bytes of model.ts's read-back staging on one device: the residual stream leaving every stage, logits and
 * greedy ids on the head (16-byte stubs elsewhere), and the ring of two buffers a single-device model reads
 * resident decode runs' tokens through.
 */
export function stagingSizes(c: LlamaConfig, s: StepShape, stage: { head: boolean; devices: number }) {
  const rs = runStateSizes(c, s);
  const ids = stage.devices === 1 ? RUNTIME_DEFAULTS.residentSteps * paddedBytes(rs.best) : 16;
  return {
    x: paddedBytes(rs.x),
    logits: stage.head ? paddedBytes(rs.logits) : 16,
    best: stage.head ? paddedBytes(rs.best) : 16,
    ids: [ids, ids],
  };
}

/** All the bytes of one device's run state and staging. */
export function scratchBytes(c: LlamaConfig, s: StepShape, stage: { head: boolean; devices: number }): number {
  const st = stagingSizes(c, s, stage);
  return Object.values(runStateSizes(c, s)).reduce((a, b) => a + paddedBytes(b), 0) + st.x + st.logits + st.best + st.ids[0]! + st.ids[1]!;
}
