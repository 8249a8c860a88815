// node:fs in Node and Deno. A variable specifier keeps bundlers from resolving it in browser builds, where
// models come as Blobs or URLs and the code that uses it never runs. A module of its own so that no
// declaration a browser app reads names node:fs (only this file's does, and none imports it).

const NODE_FS = 'node:fs/promises';

/** node:fs/promises (Node and Deno), imported so that browser bundles never resolve it. */
export async function nodeFs(): Promise<typeof import('node:fs/promises')> {
  return import(/* @vite-ignore */ NODE_FS);
}
