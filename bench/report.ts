// The results of `llama2-webgpu bench generate` as a Markdown table and an SVG bar chart (written by
// hand: no dependency). Both name the machine, the adapter and the date, as the JSON rows do.

/** One runtime's numbers for one (dtype, prompt length). Rates in tokens/s, times in ms. */
export interface RuntimeNumbers {
  prefill_tps: number; // prompt tokens / TTFT
  decode_tps: number; // (generated - 1) / (time of the last token - time of the first)
  ttft_ms: number; // from the start of the request to the first generated token
  weight_bytes_per_token: number; // weight bytes one decode step reads
}

export interface LlamaCppNumbers extends RuntimeNumbers {
  gguf_type: string; // F16, Q8_0, Q4_0
  threads: number;
  same_tokens: number; // length of the common prefix of its greedy tokens and ours
}

export interface BenchRow {
  model: string;
  dtype: string;
  prompt_tokens: number;
  gen_tokens: number;
  ours: RuntimeNumbers;
  llamacpp: LlamaCppNumbers | null;
  ratio_decode: number | null; // ours / llama.cpp
  ratio_prefill: number | null;
  bound_decode_tps: number; // bandwidth / our weight bytes per token
  fraction_of_bound: number; // ours.decode_tps / bound_decode_tps
  bandwidth_gb_s: number; // the adapter's streaming-read bandwidth, measured in the same run
  adapter: string;
  cpu: string;
  cores: number;
  date: string; // ISO 8601
}

export interface BenchMeta {
  model: string; // name given (tinyllama-1.1b, a directory, ...)
  shape: string; // e.g. "dim 2048, 22 layers, 32 heads (4 KV), FFN 5632, vocab 32000"
  weights: string; // "random (seed 1234)" or the directory
  adapter: string;
  cpu: string;
  cores: number;
  date: string;
  bandwidth_gb_s: number;
  bandwidth_bytes: number;
  runs: number; // runs per row (medians reported)
  llamacpp: { version: string; release: string; threads: number } | null;
}

/** 3 significant digits, no exponent; '-' for a missing value. */
export function fmt(x: number | null | undefined): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return '-';
  const a = Math.abs(x);
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  if (a >= 1) return x.toFixed(2);
  return x.toPrecision(3);
}

const pct = (x: number | null): string => (x === null || !Number.isFinite(x) ? '-' : `${(100 * x).toFixed(0)}%`);
const ratio = (x: number | null): string => (x === null || !Number.isFinite(x) ? '-' : x.toFixed(2));

export function markdownReport(meta: BenchMeta, rows: BenchRow[]): string {
  const lc = meta.llamacpp;
  const lines = [
    `### Generation: ${meta.model}, ${meta.weights}`,
    '',
    `- shape: ${meta.shape}`,
    `- machine: ${meta.cpu}, ${meta.cores} cores; WebGPU adapter: ${meta.adapter}`,
    `- date: ${meta.date}`,
    `- adapter streaming-read bandwidth: ${fmt(meta.bandwidth_gb_s)} GB/s (${(meta.bandwidth_bytes / 2 ** 20).toFixed(0)} MiB buffer, measured in this run)`,
    lc ? `- llama.cpp: node-llama-cpp ${lc.version} (${lc.release}), CPU build, ${lc.threads} threads` : '- llama.cpp: not run (add --vs llamacpp)',
    `- ${meta.runs > 1 ? `median of ${meta.runs} runs` : 'one run'} per row; greedy, from token ids, wall clock`,
    '',
    '| dtype | prompt | gen | prefill tok/s ours | llama.cpp | ratio | TTFT ms ours | llama.cpp | decode tok/s ours | llama.cpp | ratio | bound | ours / bound |',
    '|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
  ];
  for (const r of rows) {
    const l = r.llamacpp;
    lines.push(
      `| ${r.dtype}${l ? ` (${l.gguf_type})` : ''} | ${r.prompt_tokens} | ${r.gen_tokens} | ${fmt(r.ours.prefill_tps)} | ${fmt(l?.prefill_tps)} | ${ratio(r.ratio_prefill)} | ` +
        `${fmt(r.ours.ttft_ms)} | ${fmt(l?.ttft_ms)} | ${fmt(r.ours.decode_tps)} | ${fmt(l?.decode_tps)} | ${ratio(r.ratio_decode)} | ${fmt(r.bound_decode_tps)} | ${pct(r.fraction_of_bound)} |`,
    );
  }
  lines.push(
    '',
    'prefill tok/s = prompt tokens / TTFT; TTFT = start of the request to the first generated token; decode tok/s over ' +
      'the generated tokens after the first; ratio = ours / llama.cpp; bound = streaming-read bandwidth / weight bytes one ' +
      'decode step reads (ours), the most decode tok/s any kernel on this adapter could reach.',
  );
  const wb = rows.filter((r, i) => rows.findIndex((s) => s.dtype === r.dtype) === i);
  if (wb.length) {
    lines.push(
      'Weight bytes per token: ' +
        wb.map((r) => `${r.dtype} ${(r.ours.weight_bytes_per_token / 2 ** 20).toFixed(1)} MiB${r.llamacpp ? ` (llama.cpp ${r.llamacpp.gguf_type} ${(r.llamacpp.weight_bytes_per_token / 2 ** 20).toFixed(1)} MiB)` : ''}`).join(', ') + '.',
    );
  }
  return lines.join('\n') + '\n';
}

function xmlEscape(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);
}

/** The smallest of 1, 2, 2.5, 5 x 10^k at or above x (axis maximum). */
function niceCeil(x: number): number {
  if (!(x > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(x));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= x) return m * p;
  return 10 * p;
}

const SERIES = [
  { key: 'ours', label: 'llama2-webgpu', color: '#2b6cb0' },
  { key: 'llamacpp', label: 'llama.cpp (CPU)', color: '#dd6b20' },
  { key: 'bound', label: 'bandwidth bound', color: '#a0aec0' },
] as const;

/** Grouped bars of decode tok/s per (dtype, prompt length): ours, llama.cpp, the bandwidth bound. */
export function svgChart(meta: BenchMeta, rows: BenchRow[]): string {
  const series = SERIES.filter((s) => s.key !== 'llamacpp' || rows.some((r) => r.llamacpp));
  const value = (r: BenchRow, key: string): number | null =>
    key === 'ours' ? r.ours.decode_tps : key === 'llamacpp' ? (r.llamacpp?.decode_tps ?? null) : r.bound_decode_tps;
  const bar = 22;
  const left = 64;
  const right = 20;
  const top = 92;
  const plotH = 260;
  const bottom = 64;
  const width = Math.max(760, left + right + rows.length * (series.length * bar + 26));
  const groupW = (width - left - right) / Math.max(1, rows.length);
  const height = top + plotH + bottom;
  const vmax = niceCeil(Math.max(1e-9, ...rows.flatMap((r) => series.map((s) => value(r, s.key) ?? 0).filter(Number.isFinite))));
  const y = (v: number): number => top + plotH - (plotH * v) / vmax;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`);
  out.push(`<text x="${left}" y="22" font-size="15" font-weight="bold">${xmlEscape(`Decode tokens/s: ${meta.model}, ${meta.weights}`)}</text>`);
  const lc = meta.llamacpp ? `; llama.cpp ${meta.llamacpp.release.split('@').pop()} (node-llama-cpp ${meta.llamacpp.version}), ${meta.llamacpp.threads} threads` : '';
  out.push(`<text x="${left}" y="40" fill="#4a5568">${xmlEscape(`${meta.cpu}, ${meta.cores} cores; ${meta.date.slice(0, 10)}${lc}`)}</text>`);
  out.push(`<text x="${left}" y="56" fill="#4a5568" font-size="11">${xmlEscape(`WebGPU adapter: ${meta.adapter}`)}</text>`);
  // legend
  let lx = left;
  for (const s of series) {
    out.push(`<rect x="${lx}" y="66" width="12" height="12" fill="${s.color}"/>`);
    out.push(`<text x="${lx + 16}" y="76">${xmlEscape(s.label)}</text>`);
    lx += 24 + s.label.length * 7;
  }
  // axis and grid
  for (let i = 0; i <= 5; i++) {
    const v = (vmax * i) / 5;
    out.push(`<line x1="${left}" y1="${y(v).toFixed(1)}" x2="${width - right}" y2="${y(v).toFixed(1)}" stroke="${i === 0 ? '#2d3748' : '#e2e8f0'}"/>`);
    out.push(`<text x="${left - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${Number(v.toPrecision(3))}</text>`);
  }
  out.push(`<text x="16" y="${top + plotH / 2}" transform="rotate(-90 16 ${top + plotH / 2})" text-anchor="middle">tokens/s</text>`);
  rows.forEach((r, g) => {
    const gx = left + g * groupW + (groupW - series.length * bar) / 2;
    series.forEach((s, i) => {
      const v = value(r, s.key);
      if (v === null || !Number.isFinite(v)) return;
      const x = gx + i * bar;
      out.push(`<rect x="${x}" y="${y(v).toFixed(1)}" width="${bar - 2}" height="${(top + plotH - y(v)).toFixed(1)}" fill="${s.color}"><title>${xmlEscape(`${s.label}: ${fmt(v)} tok/s`)}</title></rect>`);
      out.push(`<text x="${x + (bar - 2) / 2}" y="${(y(v) - 3).toFixed(1)}" text-anchor="middle" font-size="9">${xmlEscape(fmt(v))}</text>`);
    });
    const cx = gx + (series.length * bar) / 2;
    out.push(`<text x="${cx}" y="${top + plotH + 16}" text-anchor="middle">${xmlEscape(r.dtype)}</text>`);
    out.push(`<text x="${cx}" y="${top + plotH + 30}" text-anchor="middle" fill="#4a5568">${xmlEscape(`${r.prompt_tokens} + ${r.gen_tokens}`)}</text>`);
  });
  out.push(`<text x="${left}" y="${height - 8}" fill="#4a5568" font-size="10">${xmlEscape(`groups: weight format, prompt + generated tokens; bound = streaming-read bandwidth (${fmt(meta.bandwidth_gb_s)} GB/s) / weight bytes per token`)}</text>`);
  out.push('</svg>');
  return out.join('\n') + '\n';
}
