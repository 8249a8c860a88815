// Exact integers from JSON text. JSON.parse turns every number into a double, so a seed above 2^53
// loses digits; this reads the literal text of a top-level member instead.

/** Index just past the JSON value starting at `i` (the text is known to be valid JSON). */
function skipValue(text: string, i: number): number {
  const c = text[i];
  if (c === '"') {
    for (i++; text[i] !== '"'; i++) if (text[i] === '\\') i++;
    return i + 1;
  }
  if (c === '{' || c === '[') {
    let depth = 0;
    for (; i < text.length; i++) {
      const d = text[i];
      if (d === '"') i = skipValue(text, i) - 1;
      else if (d === '{' || d === '[') depth++;
      else if ((d === '}' || d === ']') && --depth === 0) return i + 1;
    }
    return i;
  }
  while (i < text.length && !/[\s,}\]]/.test(text[i]!)) i++; // number, true, false, null
  return i;
}

function skipSpace(text: string, i: number): number {
  while (i < text.length && /\s/.test(text[i]!)) i++;
  return i;
}

/**
 * The source text of member `key` of the top-level object in `text` (valid JSON), the last one if
 * repeated (as JSON.parse keeps the last); undefined if absent or the top level is not an object.
 */
export function topLevelMemberSource(text: string, key: string): string | undefined {
  let i = skipSpace(text, 0);
  if (text[i] !== '{') return undefined;
  let found: string | undefined;
  i = skipSpace(text, i + 1);
  while (i < text.length && text[i] !== '}') {
    const keyEnd = skipValue(text, i);
    const name = JSON.parse(text.slice(i, keyEnd)) as string;
    i = skipSpace(text, skipSpace(text, keyEnd) + 1); // past ':'
    const valueEnd = skipValue(text, i);
    if (name === key) found = text.slice(i, valueEnd);
    i = skipSpace(text, valueEnd);
    if (text[i] === ',') i = skipSpace(text, i + 1);
  }
  return found;
}

/** JSON.parse, with `seed` read exactly as a bigint when it is an integer literal. */
export function parseRequestJson(text: string): unknown {
  const body: unknown = JSON.parse(text);
  if (typeof body === 'object' && body !== null && !Array.isArray(body) && typeof (body as { seed?: unknown }).seed === 'number') {
    const src = topLevelMemberSource(text, 'seed');
    if (src !== undefined && /^-?\d+$/.test(src)) (body as { seed: unknown }).seed = BigInt(src);
  }
  return body;
}
