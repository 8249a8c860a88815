// Shared CLI helpers: argument parsing and its errors, number parsing, load progress on stderr.

import { parseArgs, type ParseArgsConfig } from 'node:util';
import { parseSize } from '../runtime/planner.ts';
import type { LoadProgress } from '../runtime/weights.ts';

/** A mistake in the command line: exit status 2, with the command's usage hint. */
export class UsageError extends Error {}

/** Whether `e` is a mistake in the command line: a UsageError, or one of node:util parseArgs' own. */
export function isUsageError(e: unknown): e is Error {
  const code = (e as { code?: unknown } | null)?.code;
  return e instanceof UsageError || (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS'));
}

/** Says a usage error on stderr with `command`'s help hint; returns the exit status, 2. */
export function reportUsageError(command: string, e: Error): number {
  process.stderr.write(`llama2-webgpu: ${e.message}\nRun "llama2-webgpu ${command} --help" for usage.\n`);
  return 2;
}

/** Levenshtein distance (insertions, deletions, substitutions), for "did you mean". */
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = row;
  }
  return prev[b.length]!;
}

/** The candidate closest to `word` when it is a plausible typo of it (at most 2 edits, or a prefix), else null. */
export function closest(word: string, candidates: readonly string[]): string | null {
  let best: string | null = null;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = c.startsWith(word) && word.length >= 3 ? 0.5 : editDistance(word, c);
    if (d < bestD) [best, bestD] = [c, d];
  }
  return bestD <= Math.min(2, Math.max(1, Math.floor(word.length / 3))) ? best : null;
}

/**
 * node:util parseArgs (strict), with two fixes for people: a negative number after an option that takes
 * a value ("--max-tokens -1") is that option's value, so the range check answers it, and an unknown option
 * is a usage error that suggests the nearest known one.
 */
type Options = NonNullable<ParseArgsConfig['options']>;
type Parsed<O extends Options> = ReturnType<typeof parseArgs<{ args: string[]; options: O; strict: true; allowPositionals: false }>>;

export function parseCommandArgs<O extends Options>(argv: string[], options: O): Parsed<O> {
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const name = a.startsWith('--') ? a.slice(2) : null;
    const next = argv[i + 1];
    if (name !== null && options[name]?.type === 'string' && next !== undefined && /^-(\d|\.\d|Infinity)/.test(next)) {
      args.push(`${a}=${next}`);
      i++;
    } else args.push(a);
  }
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false });
  } catch (e) {
    const err = e as Error & { code?: string };
    const unknown = /^Unknown option '(-{1,2}[^']*)'/.exec(err.message);
    if (err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && unknown) {
      const guess = closest(unknown[1]!.replace(/^-+/, ''), Object.keys(options));
      throw new UsageError(`unknown option ${unknown[1]}${guess ? ` (did you mean --${guess}?)` : ''}`);
    }
    if (err.code?.startsWith('ERR_PARSE_ARGS')) throw new UsageError(err.message.split('\n')[0]!);
    throw e;
  }
}

/** An interval as people write it: [0, 2], (0, 1]. */
function interval(min: number, max: number, minExclusive: boolean): string {
  return `${minExclusive ? '(' : '['}${min}, ${max}]`;
}

export function intArg(name: string, v: string | undefined, def: number, min: number, max: number): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (v.trim() === '' || !Number.isInteger(n) || n < min || n > max) throw new UsageError(`--${name} must be an integer in ${interval(min, max, false)}, got "${v}"`);
  return n;
}

/** A number in [min, max], or in (min, max] with `minExclusive`. */
export function numArg(name: string, v: string | undefined, def: number, min: number, max: number, minExclusive = false): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || (minExclusive ? n <= min : n < min) || n > max) {
    throw new UsageError(`--${name} must be a number in ${interval(min, max, minExclusive)}, got "${v}"`);
  }
  return n;
}

export function choiceArg<T extends string>(name: string, v: string | undefined, choices: readonly T[], def?: T): T | undefined {
  if (v === undefined) return def;
  if (!(choices as readonly string[]).includes(v)) throw new UsageError(`--${name} must be one of ${choices.join(', ')}, got "${v}"`);
  return v as T;
}

/** A progress line on stderr, rewritten in place on a TTY, one line per ~10% otherwise. */
export function progressPrinter(label: string): (p: LoadProgress) => void {
  // bin/llama2-webgpu.js pipes the command's stderr through its filter and says whether it is a terminal.
  const tty = process.stderr.isTTY || process.env.LLAMA2_WEBGPU_STDERR_TTY === '1';
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

/**
 * "24GiB", "512MiB", "48GB" or a byte count -> bytes (the planner's parseSize), as a usage error when bad;
 * with `positive`, 0 bytes is bad too.
 */
export function sizeArg(name: string, v: string, positive?: boolean): number;
export function sizeArg(name: string, v: string | undefined, positive?: boolean): number | undefined;
export function sizeArg(name: string, v: string | undefined, positive = false): number | undefined {
  if (v === undefined) return undefined;
  try {
    const bytes = parseSize(v);
    if (positive && bytes <= 0) throw new RangeError(`must be more than 0 bytes, got "${v}"`);
    return bytes;
  } catch (e) {
    throw new UsageError(`--${name}: ${(e as Error).message}`);
  }
}
