// Constrained decoding of a tool call: only tokens that keep the output a prefix of
//   {"name": "<tool>", "arguments": <JSON valid for the tool's parameters schema>}
// are allowed, and EOS only once that object is complete.
//
// A character-level pushdown acceptor follows the schema. Its states are immutable linked
// stacks, so one state can be extended by many candidate tokens. Each step, the vocabulary
// (sorted by text, so tokens sharing a prefix are neighbours) is walked once, reusing the
// acceptor states of the shared prefix: the cost is about the number of nodes of the vocabulary
// trie that the acceptor can reach, not vocab * token length.
//
// JSON Schema subset followed: type (string, number, integer, boolean, null, object, array, or a
// list of these), properties + required (an object with `properties` gets only those keys, each
// at most once, and closes only when the required ones are present), items, enum, const,
// anyOf/oneOf (the first alternative that accepts the value's first character wins). Anything
// else (pattern, format, minimum, ...) is not enforced. Whitespace: at most one space where JSON
// allows whitespace, so generation cannot run on in blanks; numbers have at most 24 characters.

import type { ChatCompletionTool } from './types.ts';

export type SchemaNode =
  | { kind: 'any' }
  | { kind: 'object'; props: Map<string, SchemaNode> | null; required: string[]; keyOptions: Map<string, string> }
  | { kind: 'array'; items: SchemaNode }
  | { kind: 'string' }
  | { kind: 'number'; integer: boolean; bounds?: NumberBounds }
  | { kind: 'literal'; options: string[] }
  | { kind: 'union'; options: SchemaNode[] };

type ObjectNode = Extract<SchemaNode, { kind: 'object' }>;

/**
 * The numeric bounds followed: |value| < 10^15 (at most 15 digits before the point, no exponent), which
 * satisfies any minimum <= -(10^15 - 1) and maximum >= 10^15 - 1 (e.g. zod's safe-integer bounds), and
 * optionally no minus sign (minimum 0).
 */
export interface NumberBounds {
  nonNegative: boolean;
}

/** Largest |bound| that a 15-digit number cannot exceed. */
const LOOSE_BOUND = 1e15 - 1;

/** The NumberBounds that satisfy the schema's minimum/maximum, null if they cannot be followed, undefined if none. */
export function numberBounds(schema: Record<string, unknown>): NumberBounds | null | undefined {
  const { minimum, maximum, exclusiveMinimum, exclusiveMaximum } = schema;
  if (minimum === undefined && maximum === undefined && exclusiveMinimum === undefined && exclusiveMaximum === undefined) return undefined;
  const num = (v: unknown) => v === undefined || typeof v === 'number';
  if (!num(minimum) || !num(maximum) || !num(exclusiveMinimum) || !num(exclusiveMaximum)) return null;
  let nonNegative = false;
  if (minimum !== undefined) {
    if (minimum === 0) nonNegative = true;
    else if ((minimum as number) > -LOOSE_BOUND) return null;
  }
  if (exclusiveMinimum !== undefined && (exclusiveMinimum as number) >= -LOOSE_BOUND) return null;
  if (maximum !== undefined && (maximum as number) < LOOSE_BOUND) return null;
  if (exclusiveMaximum !== undefined && (exclusiveMaximum as number) <= LOOSE_BOUND) return null;
  return { nonNegative };
}

const ANY: SchemaNode = { kind: 'any' };
const FREE_OBJECT: ObjectNode = { kind: 'object', props: null, required: [], keyOptions: new Map() };
const MAX_NUMBER_CHARS = 24;

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The acceptor's view of a JSON Schema (the subset in the header). */
export function compileSchema(schema: unknown): SchemaNode {
  if (!isObj(schema)) return ANY;
  if ('const' in schema) return { kind: 'literal', options: [JSON.stringify(schema.const)] };
  if (Array.isArray(schema.enum) && schema.enum.length > 0) {
    return { kind: 'literal', options: schema.enum.map((v) => JSON.stringify(v)) };
  }
  const alts = Array.isArray(schema.anyOf) ? schema.anyOf : Array.isArray(schema.oneOf) ? schema.oneOf : null;
  if (alts) return { kind: 'union', options: alts.map(compileSchema) };
  const type = schema.type;
  if (Array.isArray(type)) return { kind: 'union', options: type.map((t) => compileSchema({ ...schema, type: t })) };
  switch (type) {
    case 'string':
      return { kind: 'string' };
    case 'number':
    case 'integer': {
      const bounds = numberBounds(schema);
      return { kind: 'number', integer: type === 'integer', ...(bounds ? { bounds } : {}) };
    }
    case 'boolean':
      return { kind: 'literal', options: ['true', 'false'] };
    case 'null':
      return { kind: 'literal', options: ['null'] };
    case 'array':
      return { kind: 'array', items: compileSchema(schema.items) };
    case 'object':
      return compileObject(schema);
    default:
      return isObj(schema.properties) ? compileObject(schema) : ANY;
  }
}

function compileObject(schema: Record<string, unknown>): SchemaNode {
  const required = Array.isArray(schema.required) ? schema.required.filter((k): k is string => typeof k === 'string') : [];
  if (!isObj(schema.properties)) {
    if (required.length === 0) return FREE_OBJECT;
    schema = { ...schema, properties: Object.fromEntries(required.map((k) => [k, {}])) };
  }
  const props = new Map<string, SchemaNode>();
  for (const [k, v] of Object.entries(schema.properties as Record<string, unknown>)) props.set(k, compileSchema(v));
  for (const k of required) if (!props.has(k)) props.set(k, ANY);
  // A key is matched as its JSON text without the opening quote: `unit"` for "unit".
  const keyOptions = new Map<string, string>();
  for (const k of props.keys()) keyOptions.set(JSON.stringify(k).slice(1), k);
  return { kind: 'object', props, required, keyOptions };
}

// ---- The acceptor ----

type Frame =
  | { t: 'value'; node: SchemaNode; sp: boolean }
  | { t: 'lit'; opts: string[]; pos: number }
  | { t: 'str'; esc: number } // esc: 0 plain, 1 after '\', 2..5 = hex digits of \u seen + 2
  | { t: 'num'; integer: boolean; st: number; len: number; bounds?: NumberBounds }
  | { t: 'obj'; node: ObjectNode; st: 'first' | 'key' | 'colon' | 'value' | 'after' | 'next'; used: string[]; key: string | null; sp: boolean }
  | { t: 'arr'; items: SchemaNode; st: 'first' | 'value' | 'after' | 'next'; sp: boolean }
  | { t: 'seq'; parts: Array<string[] | SchemaNode>; idx: number }
  | { t: 'alt'; states: AcceptorState[] } // root only: alternatives advanced in parallel
  | { t: 'end' };

/** An acceptor state: a stack of frames, top first. */
export interface AcceptorState {
  readonly frame: Frame;
  readonly parent: AcceptorState | null;
}

function push(parent: AcceptorState | null, frame: Frame): AcceptorState {
  return { frame, parent };
}

const isDigit = (c: string) => c >= '0' && c <= '9';

/** Number DFA: 0 start, 1 '-', 2 '0', 3 int, 4 '.', 5 frac, 6 'e', 7 exp sign, 8 exp; accepting 2, 3, 5, 8. */
function numNext(st: number, c: string, integer: boolean): number {
  const e = c === 'e' || c === 'E';
  switch (st) {
    case 0:
      return c === '-' ? 1 : c === '0' ? 2 : isDigit(c) ? 3 : -1;
    case 1:
      return c === '0' ? 2 : isDigit(c) ? 3 : -1;
    case 2:
      return integer ? -1 : c === '.' ? 4 : e ? 6 : -1;
    case 3:
      return isDigit(c) ? 3 : integer ? -1 : c === '.' ? 4 : e ? 6 : -1;
    case 4:
      return isDigit(c) ? 5 : -1;
    case 5:
      return isDigit(c) ? 5 : e ? 6 : -1;
    case 6:
      return c === '+' || c === '-' ? 7 : isDigit(c) ? 8 : -1;
    default:
      return isDigit(c) ? 8 : -1;
  }
}

const NUM_ACCEPTING = new Set([2, 3, 5, 8]);

/** The parent after its child finished; `info` is the matched literal (object keys use it). */
function childDone(parent: AcceptorState, info: string): AcceptorState | null {
  const f = parent.frame;
  switch (f.t) {
    case 'obj':
      if (f.st === 'key') {
        const key = f.node.props ? (f.node.keyOptions.get(info) ?? null) : null;
        return push(parent.parent, { ...f, st: 'colon', key, sp: false });
      }
      return push(parent.parent, { ...f, st: 'after', used: f.key === null ? f.used : [...f.used, f.key], key: null, sp: false });
    case 'arr':
      return push(parent.parent, { ...f, st: 'after', sp: false });
    case 'seq':
      return f.idx + 1 === f.parts.length ? push(parent.parent, { t: 'end' }) : push(parent.parent, { ...f, idx: f.idx + 1 });
    default:
      return null;
  }
}

function startValue(node: SchemaNode, sp: boolean, parent: AcceptorState, c: string): AcceptorState | null {
  if (c === ' ' && !sp) return push(parent, { t: 'value', node, sp: true });
  switch (node.kind) {
    case 'any':
      if (c === '{') return push(parent, { t: 'obj', node: FREE_OBJECT, st: 'first', used: [], key: null, sp: false });
      if (c === '[') return push(parent, { t: 'arr', items: ANY, st: 'first', sp: false });
      if (c === '"') return push(parent, { t: 'str', esc: 0 });
      if (c === '-' || isDigit(c)) return step(push(parent, { t: 'num', integer: false, st: 0, len: 0 }), c);
      return step(push(parent, { t: 'lit', opts: ['true', 'false', 'null'], pos: 0 }), c);
    case 'object':
      return c === '{' ? push(parent, { t: 'obj', node, st: 'first', used: [], key: null, sp: false }) : null;
    case 'array':
      return c === '[' ? push(parent, { t: 'arr', items: node.items, st: 'first', sp: false }) : null;
    case 'string':
      return c === '"' ? push(parent, { t: 'str', esc: 0 }) : null;
    case 'number':
      if (node.bounds?.nonNegative && c === '-') return null;
      return c === '-' || isDigit(c) ? step(push(parent, { t: 'num', integer: node.integer, st: 0, len: 0, ...(node.bounds ? { bounds: node.bounds } : {}) }), c) : null;
    case 'literal':
      return step(push(parent, { t: 'lit', opts: node.options, pos: 0 }), c);
    case 'union':
      for (const option of node.options) {
        const s = startValue(option, true, parent, c);
        if (s) return s;
      }
      return null;
  }
}

function startKey(s: AcceptorState, f: Extract<Frame, { t: 'obj' }>): AcceptorState {
  const self = push(s.parent, { ...f, st: 'key', sp: false });
  if (!f.node.props) return push(self, { t: 'str', esc: 0 });
  const opts = [...f.node.keyOptions].filter(([, k]) => !f.used.includes(k)).map(([o]) => o);
  return push(self, { t: 'lit', opts, pos: 0 });
}

function requiredDone(f: Extract<Frame, { t: 'obj' }>): boolean {
  return f.node.required.every((k) => f.used.includes(k));
}

/** The state after one more character (one UTF-16 code unit), or null if it is not allowed. */
export function step(s: AcceptorState, c: string): AcceptorState | null {
  const f = s.frame;
  switch (f.t) {
    case 'end':
      return null;
    case 'alt': {
      const next = f.states.map((a) => step(a, c)).filter((a): a is AcceptorState => a !== null);
      if (next.length <= 1) return next[0] ?? null;
      return push(null, { t: 'alt', states: next });
    }
    case 'value':
      return startValue(f.node, f.sp, s.parent!, c);
    case 'lit': {
      const alive = f.opts.filter((o) => o[f.pos] === c);
      if (alive.length === 0) {
        if (!f.opts.some((o) => o.length === f.pos)) return null;
        const up = childDone(s.parent!, f.opts.find((o) => o.length === f.pos)!);
        return up && step(up, c);
      }
      const pos = f.pos + 1;
      if (alive.length === 1 && alive[0]!.length === pos) return childDone(s.parent!, alive[0]!);
      return push(s.parent, { t: 'lit', opts: alive, pos });
    }
    case 'str': {
      if (f.esc === 0) {
        if (c === '"') return childDone(s.parent!, '');
        if (c === '\\') return push(s.parent, { t: 'str', esc: 1 });
        return c < ' ' ? null : s;
      }
      if (f.esc === 1) {
        if (c === 'u') return push(s.parent, { t: 'str', esc: 2 });
        return '"\\/bfnrt'.includes(c) ? push(s.parent, { t: 'str', esc: 0 }) : null;
      }
      if (!/^[0-9a-fA-F]$/.test(c)) return null;
      return push(s.parent, { t: 'str', esc: f.esc === 5 ? 0 : f.esc + 1 });
    }
    case 'num': {
      let next = f.len < MAX_NUMBER_CHARS ? numNext(f.st, c, f.integer) : -1;
      // Bounded: no exponent, at most 15 characters before the point (sign included), so |value| < 10^15.
      if (f.bounds && (next === 6 || (next === 3 && f.len >= 15))) next = -1;
      if (next >= 0) return push(s.parent, { ...f, st: next, len: f.len + 1 });
      if (!NUM_ACCEPTING.has(f.st)) return null;
      const up = childDone(s.parent!, '');
      return up && step(up, c);
    }
    case 'obj':
      switch (f.st) {
        case 'first':
        case 'next':
          if (c === ' ' && !f.sp) return push(s.parent, { ...f, sp: true });
          if (c === '"') return startKey(s, f);
          if (c === '}' && f.st === 'first' && requiredDone(f)) return childDone(s.parent!, '');
          return null;
        case 'colon':
          if (c !== ':') return null;
          return push(push(s.parent, { ...f, st: 'value' }), {
            t: 'value',
            node: f.node.props ? (f.node.props.get(f.key!) ?? ANY) : ANY,
            sp: false,
          });
        case 'after':
          if (c === ' ' && !f.sp) return push(s.parent, { ...f, sp: true });
          if (c === '}') return requiredDone(f) ? childDone(s.parent!, '') : null;
          if (c === ',') {
            if (f.node.props && f.used.length >= f.node.props.size) return null;
            return push(s.parent, { ...f, st: 'next', sp: false });
          }
          return null;
        default:
          return null; // 'key' and 'value' always have a child on top
      }
    case 'arr':
      switch (f.st) {
        case 'first':
        case 'next':
          if (c === ' ' && !f.sp) return push(s.parent, { ...f, sp: true });
          if (c === ']' && f.st === 'first') return childDone(s.parent!, '');
          return startValue(f.items, true, push(s.parent, { ...f, st: 'value' }), c);
        case 'after':
          if (c === ' ' && !f.sp) return push(s.parent, { ...f, sp: true });
          if (c === ']') return childDone(s.parent!, '');
          return c === ',' ? push(s.parent, { ...f, st: 'next', sp: false }) : null;
        default:
          return null;
      }
    case 'seq': {
      const part = f.parts[f.idx]!;
      if (Array.isArray(part)) return step(push(s, { t: 'lit', opts: part, pos: 0 }), c);
      return startValue(part, false, s, c);
    }
  }
}

/** Feeds a whole string; null as soon as a character is not allowed. */
export function feed(s: AcceptorState | null, text: string): AcceptorState | null {
  for (let i = 0; s && i < text.length; i++) s = step(s, text[i]!);
  return s;
}

/** True when the value is complete and nothing more may follow. */
export function isComplete(s: AcceptorState): boolean {
  return s.frame.t === 'end' || (s.frame.t === 'alt' && s.frame.states.some(isComplete));
}

/** Acceptor for a tool call of one of `tools`: {"name": "<name>", "arguments": <its schema>}. */
export function toolCallAcceptor(tools: ChatCompletionTool[]): AcceptorState {
  const alternatives = tools.map(
    (t): AcceptorState =>
      push(null, {
        t: 'seq',
        parts: [
          ['{"name": "', ' {"name": "'],
          [`${t.function.name}", "arguments": `],
          compileSchema(t.function.parameters ?? { type: 'object' }),
          ['}'],
        ],
        idx: 0,
      }),
  );
  if (alternatives.length === 0) throw new Error('toolCallAcceptor: no tools');
  return alternatives.length === 1 ? alternatives[0]! : push(null, { t: 'alt', states: alternatives });
}

// ---- Budget: the fewest characters that complete a state ----
//
// Constrained output must also end within max_tokens, or it is cut off as invalid JSON. cost(state) is
// the length of the shortest text that completes the value from `state` (closing strings, arrays and
// objects, adding the required keys with their shortest values). Every ASCII character is one token of
// the vocabulary (Llama-2's byte pieces), so a state of cost c can always be completed in c tokens; the
// mask then allows only tokens after which cost <= tokens left.

const valueCostCache = new WeakMap<SchemaNode, number>();

/** min of f over xs (a loop: an enum from a client may be too long to spread into Math.min). */
function minOf<T>(xs: readonly T[], f: (x: T) => number): number {
  let m = Infinity;
  for (const x of xs) m = Math.min(m, f(x));
  return m;
}

/** Characters of the shortest JSON text valid for `node`. */
function valueCost(node: SchemaNode): number {
  const cached = valueCostCache.get(node);
  if (cached !== undefined) return cached;
  let c: number;
  switch (node.kind) {
    case 'any':
    case 'number':
      c = 1; // 0
      break;
    case 'string':
    case 'array':
      c = 2; // "" or []
      break;
    case 'literal':
      c = minOf(node.options, (o) => o.length);
      break;
    case 'union':
      c = minOf(node.options, valueCost);
      break;
    case 'object':
      c = 1 + membersCost(node, [], node.required, true);
      break;
  }
  valueCostCache.set(node, c);
  return c;
}

/** `"key":value` at its shortest. */
function keyCost(node: ObjectNode, key: string): number {
  return JSON.stringify(key).length + 1 + valueCost(node.props?.get(key) ?? ANY);
}

/** The required keys not yet written, each with a leading comma unless `first`, then '}'. */
function membersCost(node: ObjectNode, used: readonly string[], required: readonly string[], first: boolean): number {
  let c = 1; // }
  let n = 0;
  for (const k of required) {
    if (used.includes(k)) continue;
    c += keyCost(node, k);
    n++;
  }
  return c + Math.max(0, first ? n - 1 : n);
}

function strCost(esc: number): number {
  return esc === 0 ? 1 : esc === 1 ? 2 : 4 - (esc - 2) + 1;
}

function partCost(part: string[] | SchemaNode): number {
  return Array.isArray(part) ? minOf(part, (p) => p.length) : valueCost(part);
}

/** Characters of the shortest text that completes the value from `state`. */
export function completionCost(state: AcceptorState): number {
  let total = 0;
  let s: AcceptorState | null = state;
  let top = true;
  while (s) {
    const f: Frame = s.frame;
    const parent: AcceptorState | null = s.parent;
    // A key being written: its rest, the colon, the key's shortest value, then what the object still needs.
    if (parent && parent.frame.t === 'obj' && parent.frame.st === 'key') {
      const o = parent.frame;
      if (f.t === 'lit') {
        let best = Infinity;
        for (const opt of f.opts) {
          const key = o.node.keyOptions.get(opt);
          if (key === undefined) continue;
          const used = [...o.used, key];
          best = Math.min(best, opt.length - f.pos + 1 + valueCost(o.node.props?.get(key) ?? ANY) + membersCost(o.node, used, o.node.required, false));
        }
        total += best;
      } else if (f.t === 'str') {
        total += strCost(f.esc) + 2 + membersCost(o.node, o.used, o.node.required, false); // ":0"
      }
      s = parent.parent;
      top = false;
      continue;
    }
    switch (f.t) {
      case 'end':
        break;
      case 'alt':
        total += minOf(f.states, completionCost);
        break;
      case 'value':
        total += valueCost(f.node);
        break;
      case 'lit':
        total += minOf(f.opts, (o) => o.length - f.pos);
        break;
      case 'str':
        total += strCost(f.esc);
        break;
      case 'num':
        total += NUM_ACCEPTING.has(f.st) ? 0 : 1;
        break;
      case 'obj': {
        const usedNow = f.key !== null && (f.st === 'colon' || f.st === 'value') ? [...f.used, f.key] : f.used;
        if (f.st === 'first') total += membersCost(f.node, f.used, f.node.required, true);
        else if (f.st === 'next') {
          const missing = f.node.required.filter((k) => !f.used.includes(k));
          if (missing.length) total += membersCost(f.node, f.used, f.node.required, true);
          else if (!f.node.props) total += 4 + 1; // "":0}
          else total += minOf([...f.node.props.keys()].filter((k) => !f.used.includes(k)), (k) => keyCost(f.node, k)) + 1;
        } else if (f.st === 'colon') total += 1 + valueCost(f.node.props?.get(f.key!) ?? ANY) + membersCost(f.node, usedNow, f.node.required, false);
        else total += membersCost(f.node, usedNow, f.node.required, false); // 'value' (child below) or 'after'
        break;
      }
      case 'arr':
        total += f.st === 'next' ? valueCost(f.items) + 1 : 1;
        break;
      case 'seq':
        for (let i = top ? f.idx : f.idx + 1; i < f.parts.length; i++) total += partCost(f.parts[i]!);
        break;
    }
    if (f.t === 'alt') break; // the root of alternatives: each state counted whole
    s = parent;
    top = false;
  }
  return total;
}

/** Acceptor for one JSON value of `schema` (response_format), at most one space before it. */
export function valueAcceptor(schema: unknown): AcceptorState {
  return push(null, { t: 'seq', parts: [compileSchema(schema)], idx: 0 });
}
