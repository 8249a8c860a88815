// Shared CLI helpers: argument errors, number parsing, load progress on stderr.

import { parseSize } from '../runtime/planner.ts';
import type { LoadProgress } from '../runtime/weights.ts';

export class UsageError extends Error {}

export function intArg(name: string, v: string | undefined, def: number, min: number, max: number): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`--${name} must be an integer in [${min}, ${max}], got "${v}"`);
  return n;
}

export function numArg(name: string, v: string | undefined, def: number, min: number, max: number): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isFinite(n) || n < min || n > max) throw new UsageError(`--${name} must be a number in [${min}, ${max}], got "${v}"`);
  return n;
}

export function choiceArg<T extends string>(name: string, v: string | undefined, choices: readonly T[], def?: T): T | undefined {
  if (v === undefined) return def;
  if (!(choices as readonly string[]).includes(v)) throw new UsageError(`--${name} must be one of ${choices.join(', ')}, got "${v}"`);
  return v as T;
}

/** A progress line on stderr, rewritten in place on a TTY, one line per ~10% otherwise. */
export function progressPrinter(label: string): (p: LoadProgress) => void {
  const tty = process.stderr.isTTY;
  const t0 = performance.now();
  let lastDecile = -1;
  return (p) => {
    const pct = Math.floor((100 * p.done) / p.total);
    const mb = p.bytes / 2 ** 20;
    const s = (performance.now() - t0) / 1000;
    const line = `${label}: ${p.done}/${p.total} tensors (${pct}%), ${mb.toFixed(1)} MiB on the GPU, ${(mb / Math.max(s, 1e-3)).toFixed(1)} MiB/s`;
    if (tty) {
      process.stderr.write(`\r${line}${p.done === p.total ? '\n' : ''}`);
    } else if (Math.floor(pct / 10) !== lastDecile || p.done === p.total) {
      lastDecile = Math.floor(pct / 10);
      process.stderr.write(line + '\n');
    }
  };
}

/** "24GiB", "512MiB", "48GB" or a byte count -> bytes (the planner's parseSize), as a usage error when bad. */
export function sizeArg(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  try {
    return parseSize(v);
  } catch (e) {
    throw new UsageError(`--${name}: ${(e as Error).message}`);
  }
}
