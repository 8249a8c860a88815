// Random-access byte sources for model files: in memory, a browser Blob/File, a URL with Range requests,
// or a file on disk (node:fs, which Deno also provides). Weights are read tensor by tensor through these,
// so host memory stays bounded by the largest tensor, not the model.

import { nodeFs } from './node-fs.ts';

export interface ByteSource {
  readonly name: string; // file name, for error messages
  readonly size: number; // bytes
  /** Reads exactly `length` bytes at `offset`; throws naming the file if the file is shorter. */
  read(offset: number, length: number): Promise<Uint8Array>;
  close?(): Promise<void>;
}

/** A folder of model files (an HF model directory, a converted directory, ...). */
export interface ModelDir {
  readonly name: string;
  /** Opens `file` (relative name), or returns null when it does not exist. */
  open(file: string): Promise<ByteSource | null>;
}

/**
 * A source of `size` bytes whose reads are checked against its size (an error naming the file) before
 * `read` fetches them.
 */
function checkedSource(name: string, size: number, read: (offset: number, length: number) => Promise<Uint8Array>, close?: () => Promise<void>): ByteSource {
  return {
    name,
    size,
    async read(offset, length) {
      if (offset < 0 || length < 0 || offset + length > size) {
        throw new Error(`${name}: read of ${length} bytes at offset ${offset} is past the end of the file (${size} bytes); the file is truncated or corrupt`);
      }
      return read(offset, length);
    },
    ...(close ? { close } : {}),
  };
}

export function bytesSource(name: string, bytes: Uint8Array): ByteSource {
  return checkedSource(name, bytes.byteLength, async (offset, length) => bytes.subarray(offset, offset + length));
}

export function blobSource(name: string, blob: Blob): ByteSource {
  return checkedSource(name, blob.size, async (offset, length) => new Uint8Array(await blob.slice(offset, offset + length).arrayBuffer()));
}

/** A file on disk, read with node:fs (Node and Deno). */
export async function fileSource(path: string): Promise<ByteSource> {
  const fs = await nodeFs();
  const handle = await fs.open(path, 'r');
  const { size } = await handle.stat();
  return checkedSource(path, size, async (offset, length) => {
    const out = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await handle.read(out, done, length - done, offset + done);
      if (bytesRead === 0) throw new Error(`${path}: unexpected end of file at offset ${offset + done}`);
      done += bytesRead;
    }
    return out;
  }, () => handle.close());
}

export function nodeDir(path: string): ModelDir {
  return {
    name: path,
    async open(file) {
      const fs = await nodeFs();
      const full = path.replace(/\/$/, '') + '/' + file;
      // stat, not access: Deno's node:fs access() also asks for --allow-sys (it reads the uid)
      if (!(await fs.stat(full).catch(() => null))?.isFile()) return null;
      return fileSource(full);
    },
  };
}

/** In-memory files (tests, the embedded default model, a browser folder pick as Blobs). */
export function mapDir(name: string, files: Record<string, Uint8Array | Blob>): ModelDir {
  return {
    name,
    async open(file) {
      const f = files[file];
      if (f === undefined) return null;
      return f instanceof Uint8Array ? bytesSource(`${name}/${file}`, f) : blobSource(`${name}/${file}`, f);
    },
  };
}

/** Files served over HTTP(S); tensors are fetched with Range requests. */
export function urlDir(baseUrl: string): ModelDir {
  const base = baseUrl.endsWith('/') ? baseUrl : baseUrl + '/';
  return {
    name: baseUrl,
    async open(file) {
      const url = base + file;
      const head = await fetch(url, { method: 'HEAD' });
      if (head.status === 404) return null;
      if (!head.ok) throw new Error(`${url}: HTTP ${head.status}`);
      const size = Number(head.headers.get('content-length') ?? NaN);
      if (!Number.isFinite(size)) throw new Error(`${url}: server did not send Content-Length`);
      return checkedSource(url, size, async (offset, length) => {
        if (length === 0) return new Uint8Array(0);
        const r = await fetch(url, { headers: { Range: `bytes=${offset}-${offset + length - 1}` } });
        if (!r.ok) throw new Error(`${url}: HTTP ${r.status} for bytes ${offset}-${offset + length - 1}`);
        const buf = new Uint8Array(await r.arrayBuffer());
        if (r.status === 200) return buf.subarray(offset, offset + length); // server ignored Range
        if (buf.byteLength !== length) throw new Error(`${url}: short read (${buf.byteLength} of ${length} bytes)`);
        return buf;
      });
    },
  };
}

/** Reads a whole small file (config.json, tokenizer.json) as text, or null when absent. */
export async function readText(dir: ModelDir, file: string): Promise<string | null> {
  const src = await dir.open(file);
  if (!src) return null;
  try {
    return new TextDecoder().decode(await src.read(0, src.size));
  } finally {
    await src.close?.();
  }
}
