// Checks of client-supplied JSON Schemas (tool parameters, response_format) before anything uses them.
//
// Every schema is walked once, iteratively (a schema nested thousands deep must be a 400, not a stack
// overflow): it must be well formed (subschemas are objects, `properties` an object, `required` an
// array of strings, `type` a JSON type or a list of them, `enum`/`anyOf`/`oneOf` non-empty arrays) and
// at most MAX_SCHEMA_DEPTH subschemas deep. For structured output, whose every answer must validate,
// keywords that constrained decoding (json-constraint.ts) does not enforce are refused by name.

import { BadRequestError } from './errors.ts';
import { numberBounds } from './json-constraint.ts';

const MAX_SCHEMA_DEPTH = 64;
/** Nesting of any objects and arrays in a schema (examples, defaults, unknown keywords included). */
const MAX_JSON_DEPTH = 2 * MAX_SCHEMA_DEPTH + 8;

/** Depth of nested objects and arrays in a JSON value, walked without recursion; stops past `limit`. */
function jsonDepth(value: unknown, limit = Infinity): number {
  let max = 0;
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length) {
    const [v, d] = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    const depth = d + 1;
    if (depth > max) max = depth;
    if (max > limit) return max;
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push([child, depth]);
  }
  return max;
}

const TYPES = new Set(['string', 'number', 'integer', 'boolean', 'null', 'object', 'array']);

/** Keywords json-constraint.ts enforces. */
const ENFORCED = new Set(['type', 'properties', 'required', 'items', 'enum', 'const', 'anyOf', 'oneOf', 'additionalProperties']);
const BOUNDS = new Set(['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum']);
/** Keywords that only describe (no effect on which values are valid). */
const ANNOTATIONS = new Set(['title', 'description', '$schema', '$id', '$comment', 'default', 'examples', 'deprecated', 'readOnly', 'writeOnly', 'strict']);

type Obj = Record<string, unknown>;

function isObject(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export interface SchemaCheckOptions {
  /** Refuse keywords that constrained decoding does not enforce (structured output). */
  enforceable?: boolean;
}

/** Throws a BadRequestError (param `param` + the path inside the schema) when `schema` is not acceptable. */
export function checkSchema(schema: unknown, param: string, opts: SchemaCheckOptions = {}): void {
  const bad = (path: string, why: string) => new BadRequestError(`Invalid schema for '${param}': ${path ? `at '${path}', ` : ''}${why}`, param, 'invalid_schema');
  // The schema is also written into the prompt (JSON.stringify recurses): bound its nesting as a whole.
  if (jsonDepth(schema, MAX_JSON_DEPTH) > MAX_JSON_DEPTH) throw bad('', `the schema is nested more than ${MAX_JSON_DEPTH} levels deep.`);
  const unsupported: string[] = [];
  const stack: { node: unknown; path: string; depth: number }[] = [{ node: schema, path: '', depth: 0 }];
  while (stack.length) {
    const { node, path, depth } = stack.pop()!;
    const at = (k: string) => (path ? `${path}.${k}` : k);
    if (depth > MAX_SCHEMA_DEPTH) throw bad(path, `the schema is nested more than ${MAX_SCHEMA_DEPTH} levels deep.`);
    if (!isObject(node)) throw bad(path, `a schema must be an object, got ${node === null ? 'null' : Array.isArray(node) ? 'an array' : typeof node}.`);
    const sub = (v: unknown, p: string) => stack.push({ node: v, path: p, depth: depth + 1 });
    const t = node.type;
    if (t !== undefined) {
      const list = Array.isArray(t) ? t : [t];
      if (list.length === 0 || list.some((x) => typeof x !== 'string' || !TYPES.has(x))) {
        throw bad(at('type'), `'type' must be one of ${[...TYPES].join(', ')} or a non-empty list of them.`);
      }
    }
    if (node.properties !== undefined) {
      if (!isObject(node.properties)) throw bad(at('properties'), "'properties' must be an object of schemas.");
      for (const [k, v] of Object.entries(node.properties)) sub(v, `${at('properties')}.${k}`);
    }
    if (node.required !== undefined && (!Array.isArray(node.required) || node.required.some((k) => typeof k !== 'string'))) {
      throw bad(at('required'), "'required' must be an array of strings.");
    }
    if (node.items !== undefined) {
      if (!isObject(node.items)) throw bad(at('items'), "'items' must be a schema (an object).");
      sub(node.items, at('items'));
    }
    if (node.enum !== undefined && (!Array.isArray(node.enum) || node.enum.length === 0)) throw bad(at('enum'), "'enum' must be a non-empty array.");
    for (const key of ['anyOf', 'oneOf'] as const) {
      const alts = node[key];
      if (alts === undefined) continue;
      if (!Array.isArray(alts) || alts.length === 0) throw bad(at(key), `'${key}' must be a non-empty array of schemas.`);
      alts.forEach((a, i) => sub(a, `${at(key)}[${i}]`));
    }
    const ap = node.additionalProperties;
    if (ap !== undefined && typeof ap !== 'boolean') {
      if (!isObject(ap)) throw bad(at('additionalProperties'), "'additionalProperties' must be a boolean or a schema.");
      sub(ap, at('additionalProperties'));
      // Without `properties` the decoder writes free keys with any values, which need not fit this schema.
      if (!isObject(node.properties) && Object.keys(ap).some((k) => !ANNOTATIONS.has(k))) unsupported.push(at('additionalProperties'));
    }
    if (opts.enforceable) {
      // minimum/maximum are followed when they are loose (e.g. zod's safe-integer bounds) or minimum is 0.
      const numeric = node.type === 'number' || node.type === 'integer';
      const bounds = numeric ? numberBounds(node) : null;
      for (const k of Object.keys(node)) {
        if (ENFORCED.has(k) || ANNOTATIONS.has(k)) continue;
        if (BOUNDS.has(k) && bounds) continue;
        unsupported.push(at(k));
      }
    }
  }
  if (unsupported.length) {
    const list = unsupported.sort();
    throw new BadRequestError(
      `Invalid schema for '${param}': these keywords are not supported by constrained decoding, so answers could not be ` +
        `guaranteed to validate: ${list.slice(0, 20).join(', ')}${list.length > 20 ? `, and ${list.length - 20} more` : ''}. ` +
        'Supported: type, properties, required, items, enum, const, anyOf, oneOf, additionalProperties (with properties), ' +
        'minimum/maximum when 0 or beyond +-(10^15 - 1), and annotations (title, description, default, ...).',
      param,
      'unsupported_schema',
    );
  }
}
