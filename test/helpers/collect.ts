// Draining async iterables in tests.

/** Every item of `items` (a token generator, a chunk stream), in order. */
export async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of items) out.push(x);
  return out;
}
