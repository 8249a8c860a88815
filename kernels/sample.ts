// The token picker of a GPU-resident decode loop: runtime/sampler.ts's processors and seeded draw, on the GPU,
// so that consecutive decode steps need nothing from the host (the host writes a slot's parameters once per
// sequence; the kernel keeps the token counts and the generator state in GPU buffers and updates them).
//
// Grid: (rows); one workgroup of 256 per logits row. Row r uses slot slotOf[r] (its parameters, token counts
// and generator state). Each invocation owns one contiguous chunk of ceil(vocab / 256) ids for the whole kernel.
//
// Bindings:
//   0 uniform  Params { vocab, zero (0: see opaque()) }
//   1 logits   (rows, vocab) f32                    read
//   2 slotOf   (rows) u32                           read
//   3 params   (slots) SlotParams (96 bytes)        read, see packSlotParams()
//   4 counts   (slots, vocab) u32: bit 31 = in the prompt, bits 0-30 = times generated
//   5 prng     (slots) vec4<u32>: xoshiro128** state (seeded on the host by prngState())
//   6 scratch  (maxRows, 2, vocab) u32: the row's logits after the penalties and the temperature (f32 bits),
//              then their fixed-point masses
//   7 out      (rows) u32: the chosen id (0xffffffff when every logit is -inf/NaN)
//
// One row, in the CPU sampler's order (createSampler in runtime/sampler.ts):
//   1. penalties and temperature, each value rounded to f32 as the CPU rounds its f64 result (see below);
//      greedy (temperature 0): argmax after the penalties, ties to the lowest id; the generator does not advance
//   2. top-k: the k-th largest value by an exact 4-pass radix select over the values' order-preserving bits
//      (counts in workgroup atomics); values >= it stay (ties at the boundary stay)
//   3. top-p: the smallest prefix in (value desc, id asc) order whose mass reaches top_p * Z, by the same radix
//      select over masses, then over ids among equal values; this is the set the CPU's binned algorithm keeps
//   4. min-p: drop y - ymax < ln(min_p), compared in double-f32
//   5. draw: u from two xoshiro128** outputs exactly as createPrng() makes it (53 bits); the first id, in
//      ascending order, whose cumulative mass exceeds u * Z
//   then out[r] = id, counts[slot][id] += 1 (every token, greedy included) and the slot's state is advanced.
// Masses are fixed point: w = exp(y - ymax) in f32 (the difference kept exact as two f32), times 2^31, rounded to
// an integer; sums are exact 64-bit integers (u32 pairs), so they do not depend on the order of summation.
//
// Equivalence with the CPU sampler (same seed, prompt, earlier tokens and logits; runtime/sampler.ts):
// - The generator: u is the same number at every step (same 53 bits, one draw per sampled token, none for
//   greedy ones), and counts[slot] holds what accept() has recorded.
// - Step 1 gives the CPU's f32 values bit for bit: the temperature division and the repetition penalty's
//   product or quotient are rounded exactly as the CPU's f64 operation followed by f32 (kernels/exact-round.ts).
//   One exception: presence/frequency (x - pres - freq * n, three f64 roundings on the CPU) may be 1 ulp away
//   when the exact value lies within 0.75 f64 ulp of a halfway point between two f32s: 1 in 14,000 values with
//   decimal penalties (e.g. x + 2 - 0.7 * 5 for x = 0.2901819348335266); test/gpu-sampler.test.ts checks that
//   each such value is one.
// - Greedy, top-k and min-p decisions are therefore the CPU's (min-p compares y - ymax with ln(min_p) to ~2^-48;
//   the CPU compares exp(y - ymax) with min_p in f64).
// - Top-p and the draw compare masses: the GPU's w = exp(y - ymax) is f32 exp (on lavapipe: within 1.9e-7 of
//   the f64 value, relative to the largest w) quantized to 2^-31, and its sums are exact; the CPU's are f64.
//   Measured cumulative error: at most 7e-8 of Z. The token can differ only when u * Z lies within that error
//   of a cumulative boundary (the GPU then returns the neighbouring id), or top_p * Z does of the nucleus edge
//   (one edge token is in one set and not in the other). Ids with w < 2^-32 (more than 22.2 below the max after
//   temperature) have mass 0 and are never drawn; the CPU draws them with probability below vocab * 2^-32 in
//   all (7.5e-6 for 32000). The tests saw no such case in 800 random single steps and 384 chained steps, nor in
//   2,000 flat 32000-id distributions; they accept one only where the CPU reaches the GPU's id with u or top_p
//   moved by at most 1e-5.
// - Logits must be finite or -inf; NaN counts as removed (as on the CPU), and so does +inf (where the CPU's
//   greedy pick would take it and its sampling would compute NaN weights).

import { packParams } from './common.ts';
import { exactRoundWgsl, f64Parts2, f64Parts3 } from './exact-round.ts';

export const SAMPLE_WG = 256;

/** Bits of SlotParams.flags. */
export const SAMPLE_FLAGS = { greedy: 1, repetition: 2, presenceFrequency: 4, topP: 8, minP: 16 } as const;

export const SAMPLE_WGSL = /* wgsl */ `
const WG: u32 = ${SAMPLE_WG}u;
struct Params { vocab: u32, zero: u32 }
struct SlotParams {
  flags: u32,       // SAMPLE_FLAGS
  topK: u32,        // 0 = off
  topPLo: u32,      // top_p * 2^53 as an integer: low 32 bits
  topPHi: u32,      //   high 21 bits
  rep: vec4<f32>,   // f64 parameters as three f32s whose sum is the f64 exactly (w unused)
  temp: vec4<f32>,
  pres: vec4<f32>,
  freq: vec4<f32>,
  lnMinP: vec2<f32>, // ln(min_p) as f32 hi + lo (to ~2^-48)
  _pad: vec2<u32>,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;           // (rows, vocab)
@group(0) @binding(2) var<storage, read> slotOf: array<u32>;           // (rows)
@group(0) @binding(3) var<storage, read> params: array<SlotParams>;    // (slots)
@group(0) @binding(4) var<storage, read_write> counts: array<u32>;     // (slots, vocab)
@group(0) @binding(5) var<storage, read_write> prng: array<vec4<u32>>; // (slots)
@group(0) @binding(6) var<storage, read_write> scratch: array<u32>;    // (maxRows, 2, vocab): f32 bits of y, mass
@group(0) @binding(7) var<storage, read_write> outIds: array<u32>;     // (rows)

var<workgroup> redV: array<f32, WG>;
var<workgroup> redI: array<u32, WG>;
var<workgroup> redN: array<u32, WG>;
var<workgroup> sumLo: array<u32, WG>;
var<workgroup> sumHi: array<u32, WG>;
var<workgroup> histLo: array<atomic<u32>, 256>;
var<workgroup> histHi: array<atomic<u32>, 256>;
var<workgroup> tieCount: atomic<u32>;
var<workgroup> bc: vec4<u32>;     // broadcast from invocation 0
var<workgroup> uDraw: vec2<u32>;  // this step's u * 2^53 (lo, hi)
var<workgroup> segLo: array<u32, 16>;
var<workgroup> segHi: array<u32, 16>;
var<workgroup> wTotal: vec2<u32>;

// Per-invocation copies of workgroup-uniform values used by the element predicates.
var<private> rowBase: u32;
var<private> yBase: u32; // this row's values in scratch
var<private> mBase: u32; // this row's masses in scratch
var<private> chunk: u32;
var<private> ymax: f32;
var<private> topKOn: bool;
var<private> tauK: u32;
var<private> topPOn: bool;
var<private> tauP: u32;
var<private> idP: u32;
var<private> minPOn: bool;
var<private> lnMinP: vec2<f32>;


// ---- 64-bit unsigned integers as vec2<u32>(lo, hi) ----
fn add64(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
  let lo = a.x + b.x;
  return vec2<u32>(lo, a.y + b.y + select(0u, 1u, lo < a.x));
}
fn sub64(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
  return vec2<u32>(a.x - b.x, a.y - b.y - select(0u, 1u, a.x < b.x));
}
fn ge64(a: vec2<u32>, b: vec2<u32>) -> bool { return a.y > b.y || (a.y == b.y && a.x >= b.x); }
// Full 32 x 32 -> 64-bit product.
fn mul32(a: u32, b: u32) -> vec2<u32> {
  let a0 = a & 0xffffu; let a1 = a >> 16u; let b0 = b & 0xffffu; let b1 = b >> 16u;
  let p00 = a0 * b0; let p01 = a0 * b1; let p10 = a1 * b0; let p11 = a1 * b1;
  let mid = (p00 >> 16u) + (p01 & 0xffffu) + (p10 & 0xffffu);
  return vec2<u32>((p00 & 0xffffu) | (mid << 16u), p11 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u));
}
// floor(f * z / 2^53) for a 53-bit fraction f (lo, hi) and z < 2^64 with a result below 2^64.
fn mulFrac53(f: vec2<u32>, z: vec2<u32>) -> vec2<u32> {
  let t0 = mul32(f.x, z.x); let t1 = mul32(f.x, z.y); let t2 = mul32(f.y, z.x); let t3 = mul32(f.y, z.y);
  let l1 = add64(add64(vec2<u32>(t0.y, 0u), vec2<u32>(t1.x, 0u)), vec2<u32>(t2.x, 0u));
  let l2 = add64(add64(add64(vec2<u32>(l1.y, 0u), vec2<u32>(t1.y, 0u)), vec2<u32>(t2.y, 0u)), vec2<u32>(t3.x, 0u));
  let l3 = t3.y + l2.y;
  return vec2<u32>((l1.x >> 21u) | (l2.x << 11u), (l2.x >> 21u) | (l3 << 11u));
}

${exactRoundWgsl('p.zero')}
// Order-preserving bits of a finite f32 (larger value, larger key; -0 = +0).
fn orderKey(y: f32) -> u32 {
  var b = bitcast<u32>(y);
  if ((b & 0x7fffffffu) == 0u) { b = 0u; }
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}
// Fixed-point mass: exp(y - ymax) * 2^31, y - ymax kept exact as two f32.
fn mass(y: f32) -> u32 {
  let d = twoSum(y, -ymax);
  let e = exp(d.x);
  let w = min(e + e * d.y, 1.0);
  return u32(round(w * 2147483648.0));
}
fn keptK(y: f32) -> bool { return isFin(y) && (!topKOn || orderKey(y) >= tauK); }
fn keptP(i: u32, y: f32) -> bool {
  if (!keptK(y)) { return false; }
  if (!topPOn) { return true; }
  let k = orderKey(y);
  return k > tauP || (k == tauP && i <= idP);
}
fn kept(i: u32, y: f32) -> bool {
  if (!keptP(i, y)) { return false; }
  if (!minPOn) { return true; }
  let d = twoSum(y, -ymax);
  return !(((d.x - lnMinP.x) + (d.y - lnMinP.y)) < 0.0); // CPU: drop when exp(y - ymax) < min_p
}

// ---- xoshiro128** (Blackman & Vigna 2018), as createPrng() in runtime/sampler.ts ----
fn rotl(x: u32, k: u32) -> u32 { return (x << k) | (x >> (32u - k)); }
fn next32(s: ptr<function, vec4<u32>>) -> u32 {
  let r = rotl((*s).y * 5u, 7u) * 9u;
  let t = (*s).y << 9u;
  (*s).z ^= (*s).x;
  (*s).w ^= (*s).y;
  (*s).y ^= (*s).z;
  (*s).x ^= (*s).w;
  (*s).z ^= t;
  (*s).w = rotl((*s).w, 11u);
  return r;
}

fn histAdd(bin: u32, w: vec2<u32>) {
  let old = atomicAdd(&histLo[bin], w.x);
  atomicAdd(&histHi[bin], w.y + select(0u, 1u, old > 0xffffffffu - w.x));
}

// Radix select over the elements kept so far, by descending 32-bit key: the smallest prefix whose weight
// reaches goal. mode 0: key = value, weight 1 (finite values); mode 1: key = value, weight = mass (top-k
// survivors); mode 2: among top-k survivors whose value key is tauP, key = ~id (ascending id), weight = mass.
// Returns (key of the last element of the prefix, weight still needed from elements with that key (lo, hi)).
fn radixSelect(mode: u32, goal: vec2<u32>, lid: u32) -> vec3<u32> {
  var prefix = 0u;
  var msk = 0u;
  var rem = goal;
  let c0 = min(lid * chunk, p.vocab);
  let c1 = min(c0 + chunk, p.vocab);
  for (var round = 0u; round < 4u; round++) {
    let shift = 24u - 8u * round;
    atomicStore(&histLo[lid], 0u);
    atomicStore(&histHi[lid], 0u);
    workgroupBarrier();
    var curBin = 256u;
    var acc = vec2<u32>(0u, 0u);
    for (var i = c0; i < c1; i++) {
      let y = bitcast<f32>(scratch[yBase + i]);
      if (!keptK(y)) { continue; }
      var k = orderKey(y);
      if (mode == 2u) {
        if (k != tauP) { continue; }
        k = ~i;
      }
      if ((k & msk) != prefix) { continue; }
      let w = select(1u, scratch[mBase + i], mode != 0u);
      let bin = (k >> shift) & 255u;
      // Runs of one bin are added locally first: in the first rounds most values share a bin, and
      // atomics on one address serialize.
      if (bin != curBin) {
        if (curBin < 256u) { histAdd(curBin, acc); }
        curBin = bin;
        acc = vec2<u32>(0u, 0u);
      }
      acc = add64(acc, vec2<u32>(w, 0u));
    }
    if (curBin < 256u) { histAdd(curBin, acc); }
    workgroupBarrier();
    // Entry lid is bin 255 - lid: running sums in descending key order; the bin where they reach rem.
    let b = 255u - lid;
    let c = crossing(lid, vec2<u32>(atomicLoad(&histLo[b]), atomicLoad(&histHi[b])), rem);
    prefix |= (255u - min(c.x, 255u)) << shift; // (c.x is never 0xffffffff: the bins' total is >= rem)
    msk |= 255u << shift;
    rem = sub64(rem, c.yz);
  }
  return vec3<u32>(prefix, rem);
}

// The first entry, in invocation order, at which the running sum of one 64-bit value per invocation reaches
// goal: (index, the sum before it (lo, hi), 1), or (0xffffffff, 0, 0, 0) when the total stays below goal.
// The total is left in wTotal. 16 segments of 16 entries: 3 barriers and at most 48 serial steps.
fn crossing(lid: u32, v: vec2<u32>, goal: vec2<u32>) -> vec4<u32> {
  sumLo[lid] = v.x;
  sumHi[lid] = v.y;
  workgroupBarrier();
  if (lid == 0u) { bc = vec4<u32>(0xffffffffu, 0u, 0u, 0u); }
  if (lid < 16u) {
    var t = vec2<u32>(0u, 0u);
    for (var j = 16u * lid; j < 16u * lid + 16u; j++) { t = add64(t, vec2<u32>(sumLo[j], sumHi[j])); }
    segLo[lid] = t.x;
    segHi[lid] = t.y;
  }
  workgroupBarrier();
  if (lid < 16u) {
    var excl = vec2<u32>(0u, 0u);
    for (var j = 0u; j < lid; j++) { excl = add64(excl, vec2<u32>(segLo[j], segHi[j])); }
    let incl = add64(excl, vec2<u32>(segLo[lid], segHi[lid]));
    if (lid == 15u) { wTotal = incl; }
    if (!ge64(excl, goal) && ge64(incl, goal)) {
      var cum = excl;
      for (var j = 16u * lid; j < 16u * lid + 16u; j++) {
        let next = add64(cum, vec2<u32>(sumLo[j], sumHi[j]));
        if (ge64(next, goal)) {
          bc = vec4<u32>(j, cum.x, cum.y, 1u);
          break;
        }
        cum = next;
      }
    }
  }
  return workgroupUniformLoad(&bc);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let V = p.vocab;
  let row = wid.x;
  let slot = slotOf[row];
  let sp = params[slot];
  let greedy = (sp.flags & 1u) != 0u;
  rowBase = row * V;
  yBase = 2u * row * V;
  mBase = yBase + V;
  let cBase = slot * V;
  chunk = (V + WG - 1u) / WG;
  let c0 = min(lid * chunk, V);
  let c1 = min(c0 + chunk, V);

  if (!greedy && lid == 0u) {
    var s = prng[slot];
    let a = next32(&s) >> 5u; // 27 bits
    let b = next32(&s) >> 6u; // 26 bits
    prng[slot] = s;
    uDraw = vec2<u32>((a << 26u) | b, a >> 6u); // u * 2^53 = a * 2^26 + b
  }

  // 1. Penalties and temperature -> scratch; the maximum (lowest id on ties) and the count of finite values.
  let repOn = (sp.flags & 2u) != 0u;
  let pfOn = (sp.flags & 4u) != 0u;
  var bestV = 0.0;
  var bestI = 0xffffffffu;
  var nFin = 0u;
  for (var i = c0; i < c1; i++) {
    var x = logits[rowBase + i];
    if (isFin(x)) {
      let c = counts[cBase + i];
      if (repOn && c != 0u) { x = select(mulRound(x, sp.rep), divRound(x, sp.rep), x > 0.0); }
      let n = c & 0x7fffffffu;
      if (pfOn && n != 0u) { x = presFreq(x, sp.pres, sp.freq, n); }
      if (!greedy) { x = divRound(x, sp.temp); }
    }
    if (isFin(x)) {
      if (bestI == 0xffffffffu || x > bestV) { bestV = x; bestI = i; }
      nFin++;
      scratch[yBase + i] = bitcast<u32>(x);
    } else {
      scratch[yBase + i] = 0xff800000u; // -inf: removed
    }
  }
  redV[lid] = bestV;
  redI[lid] = bestI;
  redN[lid] = nFin;
  storageBarrier();
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      let ov = redV[lid + s];
      let oi = redI[lid + s];
      if (oi != 0xffffffffu && (redI[lid] == 0xffffffffu || ov > redV[lid] || (ov == redV[lid] && oi < redI[lid]))) {
        redV[lid] = ov;
        redI[lid] = oi;
      }
      redN[lid] += redN[lid + s];
    }
    workgroupBarrier();
  }
  if (lid == 0u) { bc = vec4<u32>(redI[0], redN[0], bitcast<u32>(redV[0]), 0u); }
  let top = workgroupUniformLoad(&bc);
  let best = top.x;
  let finite = top.y;
  ymax = bitcast<f32>(top.z);
  if (greedy || best == 0xffffffffu) {
    if (lid == 0u) {
      outIds[row] = best;
      if (best != 0xffffffffu) { counts[cBase + best] += 1u; }
    }
    return;
  }
  // 2. Top-k.
  topKOn = false;
  if (sp.topK > 0u && sp.topK < V && finite >= sp.topK) {
    tauK = radixSelect(0u, vec2<u32>(sp.topK, 0u), lid).x;
    topKOn = true;
  }

  // The fixed-point masses of the top-k survivors, once (every later phase sums them), and their sum.
  var zK = vec2<u32>(0u, 0u);
  for (var i = c0; i < c1; i++) {
    let y = bitcast<f32>(scratch[yBase + i]);
    var m = 0u;
    if (keptK(y)) { m = mass(y); }
    scratch[mBase + i] = m;
    zK = add64(zK, vec2<u32>(m, 0u));
  }

  // 3. Top-p.
  topPOn = false;
  if ((sp.flags & 8u) != 0u) {
    if (lid == 0u) { atomicStore(&tieCount, 0u); }
    _ = crossing(lid, zK, vec2<u32>(0xffffffffu, 0xffffffffu));
    var tgt = mulFrac53(vec2<u32>(sp.topPLo, sp.topPHi), workgroupUniformLoad(&wTotal));
    if (tgt.x == 0u && tgt.y == 0u) { tgt.x = 1u; }
    let sel = radixSelect(1u, tgt, lid);
    tauP = sel.x;
    for (var i = c0; i < c1; i++) {
      let y = bitcast<f32>(scratch[yBase + i]);
      if (keptK(y) && orderKey(y) == tauP) { atomicAdd(&tieCount, 1u); }
    }
    workgroupBarrier();
    if (lid == 0u) { bc.x = atomicLoad(&tieCount); }
    let ties = workgroupUniformLoad(&bc).x;
    idP = 0xffffffffu;
    if (ties > 1u) { idP = ~radixSelect(2u, sel.yz, lid).x; }
    topPOn = true;
  }

  // 4. Min-p.
  minPOn = (sp.flags & 16u) != 0u;
  lnMinP = sp.lnMinP;

  // 5. Draw: the first id whose cumulative mass exceeds u * Z: prefix sums of the chunks' masses find the
  // chunk, whose invocation walks it.
  var z = zK;
  if (topPOn || minPOn) {
    z = vec2<u32>(0u, 0u);
    for (var i = c0; i < c1; i++) {
      let y = bitcast<f32>(scratch[yBase + i]);
      if (kept(i, y)) { z = add64(z, vec2<u32>(scratch[mBase + i], 0u)); }
    }
  }
  _ = crossing(lid, z, vec2<u32>(0xffffffffu, 0xffffffffu));
  let goal = add64(mulFrac53(uDraw, workgroupUniformLoad(&wTotal)), vec2<u32>(1u, 0u)); // cum > u * Z: cum >= floor(u * Z) + 1
  let c = crossing(lid, z, goal);
  if (lid == c.x) {
    var cum = c.yz;
    var pick = 0xffffffffu;
    for (var i = c0; i < c1; i++) {
      let y = bitcast<f32>(scratch[yBase + i]);
      if (!kept(i, y)) { continue; }
      cum = add64(cum, vec2<u32>(scratch[mBase + i], 0u));
      if (ge64(cum, goal)) { pick = i; break; }
    }
    outIds[row] = pick;
    if (pick != 0xffffffffu) { counts[cBase + pick] += 1u; }
  }
}`;

export function packSampleParams(vocab: number): ArrayBuffer {
  return packParams([[vocab, 'u32'], [0, 'u32']]);
}

/** Bytes of one slot's SlotParams. */
export const SLOT_PARAMS_BYTES = 96;

/** The settings a slot samples with (the fields of runtime/generation-types.ts SamplingParams, less the seed). */
export interface SlotSettings {
  temperature: number; // 0 = greedy
  topK: number; // 0 = off
  topP: number; // 1 = off
  minP: number; // 0 = off
  repetitionPenalty: number; // 1 = off
  presencePenalty: number;
  frequencyPenalty: number;
}

/** One slot's SlotParams. */
export function packSlotParams(params: SlotSettings): ArrayBuffer {
  const buf = new ArrayBuffer(SLOT_PARAMS_BYTES);
  const u = new Uint32Array(buf);
  const f = new Float32Array(buf);
  let flags = 0;
  if (params.temperature === 0) flags |= SAMPLE_FLAGS.greedy;
  if (params.repetitionPenalty !== 1) flags |= SAMPLE_FLAGS.repetition;
  if (params.presencePenalty !== 0 || params.frequencyPenalty !== 0) flags |= SAMPLE_FLAGS.presenceFrequency;
  if (params.topP < 1) flags |= SAMPLE_FLAGS.topP;
  if (params.minP > 0) flags |= SAMPLE_FLAGS.minP;
  u[0] = flags;
  u[1] = params.topK > 0 ? Math.min(params.topK, 0xffffffff) : 0;
  if (params.topP < 1) {
    const t53 = BigInt(Math.round(Math.max(0, params.topP) * 2 ** 53));
    u[2] = Number(t53 & 0xffffffffn);
    u[3] = Number(t53 >> 32n);
  }
  f.set(f64Parts3(params.repetitionPenalty), 4);
  f.set(f64Parts3(params.temperature > 0 ? params.temperature : 1), 8);
  f.set(f64Parts3(params.presencePenalty), 12);
  f.set(f64Parts3(params.frequencyPenalty), 16);
  f.set(f64Parts2(params.minP > 0 ? Math.log(params.minP) : 0), 20);
  return buf;
}

/**
 * The xoshiro128** state createPrng(seed) in runtime/sampler.ts starts from: SplitMix64 (Steele et al. 2014)
 * twice, low word first; the all-zero state becomes [1, 0, 0, 0].
 */
export function prngState(seed: bigint): Uint32Array<ArrayBuffer> {
  const mask = (1n << 64n) - 1n;
  const s = new Uint32Array(4);
  let st = seed;
  for (let i = 0; i < 2; i++) {
    st = (st + 0x9e3779b97f4a7c15n) & mask;
    let z = st;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & mask;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & mask;
    z ^= z >> 31n;
    s[2 * i] = Number(z & 0xffffffffn);
    s[2 * i + 1] = Number(z >> 32n);
  }
  if ((s[0]! | s[1]! | s[2]! | s[3]!) === 0) s[0] = 1;
  return s;
}

/** The kernel's draw, on the host: advances `s` (xoshiro128**) by two outputs and returns u in [0, 1). */
export function prngNextRef(s: Uint32Array): number {
  const rotl = (x: number, k: number) => ((x << k) | (x >>> (32 - k))) >>> 0;
  const next32 = (): number => {
    const r = Math.imul(rotl(Math.imul(s[1]!, 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1]! << 9) >>> 0;
    s[2] ^= s[0]!;
    s[3] ^= s[1]!;
    s[1] ^= s[2]!;
    s[0] ^= s[3]!;
    s[2] ^= t;
    s[3] = rotl(s[3]!, 11);
    return r;
  };
  const a = next32() >>> 5;
  const b = next32() >>> 6;
  return (a * 67108864 + b) / 9007199254740992;
}

/** The prompt's entry of a counts row: bit 31 marks ids in the prompt, bits 0-30 count generated ones. */
export function countsRow(vocab: number, promptTokens: readonly number[], generated: readonly number[] = []): Uint32Array<ArrayBuffer> {
  const row = new Uint32Array(vocab);
  for (const id of promptTokens) if (id >= 0 && id < vocab) row[id] = (row[id]! | 0x80000000) >>> 0;
  for (const id of generated) if (id >= 0 && id < vocab) row[id] = (row[id]! + 1) >>> 0;
  return row;
}
