// Arithmetic that rounds like the host: WGSL helpers that give, from f32 operands and f64 parameters, the f32
// the CPU gets by computing in f64 (JavaScript numbers) and storing into a Float32Array. kernels/sample.ts uses
// them so that the GPU sampler's penalized and tempered logits equal the CPU sampler's bit for bit.
//
// Method: error-free transformations (Knuth's TwoSum; Dekker's TwoProduct, with a bit-mask split so no
// multiply can be fused into it), an f64 parameter carried as three f32s that sum to it exactly
// (f64Parts3), and, near a halfway point between two f32s, the exact sign of (value - halfway point) from
// Shewchuk's Grow-Expansion ("Adaptive precision floating-point arithmetic", 1997).

/**
 * The WGSL helpers: isFin, twoSum, twoProd, expansionSum, mulRound, divRound, presFreq. `zero` is a WGSL
 * expression of a u32 that is 0 at run time but unknown to the compiler (e.g. a uniform field), for opaque().
 */
export function exactRoundWgsl(zero: string): string {
  return /* wgsl */ `
fn isFin(x: f32) -> bool { return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u; }

// ---- double-f32: error-free transformations (Knuth's TwoSum, Dekker's TwoProduct) ----
// WGSL has no way to mark arithmetic exact, and drivers' optimizers simplify (a + b) - a to b (Mesa's NIR
// does), which turns the rounding error TwoSum computes into 0. opaque() hides a value from such rewrites:
// an XOR with a uniform that is always 0, which the compiler cannot see through.
fn opaque(x: f32) -> f32 { return bitcast<f32>(bitcast<u32>(x) ^ (${zero})); }
fn twoSum(a: f32, b: f32) -> vec2<f32> {
  let s = opaque(a + b);
  let bb = opaque(s - a);
  return vec2<f32>(s, (a - opaque(s - bb)) + (b - bb));
}
// hi keeps 12 significant bits (a bit mask, so no multiply a compiler could fuse), lo the other 12.
fn split(a: f32) -> vec2<f32> {
  let hi = bitcast<f32>(bitcast<u32>(a) & 0xfffff000u);
  return vec2<f32>(hi, a - hi);
}
fn twoProd(a: f32, b: f32) -> vec2<f32> {
  let pr = opaque(a * b);
  let x = split(a);
  let y = split(b);
  return vec2<f32>(pr, ((x.x * y.x - pr) + x.x * y.y + x.y * y.x) + x.y * y.y);
}
// Approximate value (exact sign) of the sum of 12 f32 terms: Shewchuk's Grow-Expansion turns them into
// non-overlapping components with exactly the same sum, the largest of which carries the sign.
fn expansionSum(t: array<f32, 12>) -> f32 {
  var e: array<f32, 12>;
  for (var n = 0u; n < 12u; n++) {
    var q = t[n];
    for (var j = 0u; j < n; j++) {
      let s = twoSum(q, e[j]);
      e[j] = s.y;
      q = s.x;
    }
    e[n] = q;
  }
  var v = 0.0;
  for (var j = 0u; j < 12u; j++) { v += e[j]; }
  return v;
}

// Steps 1-3 round like the CPU: an f64 operation, then f32. Each function below estimates the result r in
// double-f32 and the signed distance of the exact value from the halfway point m between r and its neighbour
// nb on the exact value's side. Far from m (the usual case) that decides. Within 2^-38 (relative) of m, the
// exact value minus m is summed as an expansion of exact products (the f64 parameters are three f32s that sum
// to them exactly): decimal parameters such as 1.1 or 0.03 put many results within 2^-50 of a halfway point.
// Within half an f64 ulp of m, the CPU's f64 result is m itself and f32(m) a tie, to the even neighbour.
const NEAR_HALF: f32 = 3.637978807091713e-12; // 2^-38
const F64_HALF_ULP: f32 = 1.862645149230957e-9; // 2^-29: half an f64 ulp in units of half an f32 ulp

fn neighbour(r: f32, up: bool) -> f32 { // the next f32 away from zero when up, else toward zero
  let bits = bitcast<u32>(r);
  return bitcast<f32>(select(bits - 1u, bits + 1u, up));
}
// r or nb (= r + 2 * half), given dm, the exact (value - m) scaled by a positive factor, and the window.
fn pick(r: f32, nb: f32, half: f32, dm: f32, window: f32) -> f32 {
  if (abs(dm) < window) { return select(nb, r, (bitcast<u32>(r) & 1u) == 0u); }
  return select(r, nb, (dm > 0.0) == (half > 0.0));
}

// f32(f64(x * c)), c = c.x + c.y + c.z exactly.
fn mulRound(x: f32, c: vec4<f32>) -> f32 {
  let a = twoProd(x, c.x);
  let b = twoProd(x, c.y);
  let d = twoProd(x, c.z);
  let r = a.x + (a.y + b.x);
  let e = ((a.x - r) + a.y) + (b.x + (b.y + d.x)); // ~ x * c - r
  if (!isFin(r) || r == 0.0 || e == 0.0) { return r; }
  let nb = neighbour(r, (e > 0.0) == (r > 0.0));
  let half = (nb - r) * 0.5;
  if (abs(abs(e) - abs(half)) > abs(r) * NEAR_HALF) { return select(r, nb, abs(e) > abs(half)); }
  let dm = expansionSum(array<f32, 12>(a.x - r, a.y, b.x, b.y, d.x, d.y, -half, 0.0, 0.0, 0.0, 0.0, 0.0));
  return pick(r, nb, half, dm, abs(half) * F64_HALF_ULP);
}
// x - q * c, with an error ~2^-47 |x| when q ~ x / c.
fn residual(x: f32, q: f32, c: vec2<f32>) -> f32 {
  let pe = twoProd(q, c.x);
  return ((x - pe.x) - pe.y) - q * c.y;
}
// f32(f64(x / c)), c = c.x + c.y + c.z > 0 exactly (WGSL's own x / y may be 2.5 ulp off).
fn divRound(x: f32, c: vec4<f32>) -> f32 {
  if (x == 0.0 || !isFin(x)) { return x; }
  var q = x / c.x;
  q = q + residual(x, q, c.xy) / c.x;
  let r = residual(x, q, c.xy); // x / c = q + r / c
  if (r == 0.0) { return q; }
  let nb = neighbour(q, (r > 0.0) == (q > 0.0));
  let half = (nb - q) * 0.5;
  let halfC = abs(half) * c.x;
  if (abs(abs(r) - halfC) > abs(x) * NEAR_HALF) { return select(q, nb, abs(r) > halfC); }
  // x - m * c, exactly: m = q + half, and half * c is exact (half is a power of two).
  let a = twoProd(q, c.x);
  let b = twoProd(q, c.y);
  let d = twoProd(q, c.z);
  let dm = expansionSum(array<f32, 12>(x, -a.x, -a.y, -b.x, -b.y, -d.x, -d.y, -half * c.x, -half * c.y, -half * c.z, 0.0, 0.0));
  return pick(q, nb, half, dm, halfC * F64_HALF_ULP);
}
// f32(f64(f64(x - pres) - f64(freq * n))), pres and freq each three f32s. The exact value decides, except
// within 0.75 f64 ulp of m, taken as a tie: there the CPU's three f64 roundings (which this does not emulate)
// may land on m, or one f64 ulp beside it. Measured: 1 value in 14,000 differs by 1 ulp (decimal penalties).
fn presFreq(x: f32, pres: vec4<f32>, freq: vec4<f32>, n: u32) -> f32 {
  let cnt = f32(n);
  let fp = twoProd(freq.x, cnt);
  let s1 = twoSum(x, -pres.x);
  let s2 = twoSum(s1.x, -fp.x);
  let tail = (((s1.y + s2.y) - pres.y) - fp.y) - freq.y * cnt;
  let r = s2.x + tail;
  let e = (s2.x - r) + tail; // ~ exact - r
  if (!isFin(r) || r == 0.0 || e == 0.0) { return r; }
  let nb = neighbour(r, (e > 0.0) == (r > 0.0));
  let half = (nb - r) * 0.5;
  let scale = abs(x) + abs(pres.x) + abs(fp.x);
  if (abs(abs(e) - abs(half)) > scale * NEAR_HALF) { return select(r, nb, abs(e) > abs(half)); }
  let f2 = twoProd(freq.y, cnt);
  let f3 = twoProd(freq.z, cnt);
  let dm = expansionSum(array<f32, 12>(x, -pres.x, -pres.y, -pres.z, -fp.x, -fp.y, -f2.x, -f2.y, -f3.x, -f3.y, -r, -half));
  return pick(r, nb, half, dm, abs(half) * F64_HALF_ULP * 1.5);
}

`;
}

/** An f64 as three f32s whose sum is it exactly (the last holds the remaining <= 5 bits). */
export function f64Parts3(v: number): [number, number, number] {
  const a = Math.fround(v);
  const b = Math.fround(v - a);
  return [a, b, v - a - b];
}

/** An f64 as two f32s whose sum is it to ~2^-48 (relative). */
export function f64Parts2(v: number): [number, number] {
  const a = Math.fround(v);
  return [a, Math.fround(v - a)];
}
