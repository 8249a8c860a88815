// Where a served model's files come from when there is no file system path to name (a browser page or
// worker, or any host with fetch): the embedded default model, files the user picked, one GGUF file, or a
// URL whose files are kept in the Cache Storage API. The result is what loadLlamaEngine's `model` takes;
// reads from weight files are counted for a progress bar.

import { blobSource, mapDir, urlDir, type ByteSource, type ModelDir } from '../checkpoint/byte-source.ts';
import { defaultModelDir } from '../checkpoint/default-model.ts';

export type ModelLocation =
  /** The embedded default model; `baseUrl`: where the page serves assets/tiny-llama-2-kjv/. */
  | { kind: 'default'; baseUrl?: string | URL }
  /** A model directory's files by their path in it (config.json, *.safetensors, tokenizer.json, ...). */
  | { kind: 'files'; name: string; files: Record<string, Blob | Uint8Array> }
  /** One llama.cpp GGUF file. */
  | { kind: 'gguf'; name: string; file: Blob }
  /** A model directory, or one .gguf file, over HTTP. */
  | { kind: 'url'; url: string };

export interface ModelFilesOptions {
  /** Bytes read from the weight files so far, of their total size (which grows as files are opened). */
  onRead?: (read: number, total: number) => void;
  /** A URL's files going into the cache: bytes downloaded so far, of the total announced. */
  onDownload?: (done: number, total: number) => void;
  /**
   * The Cache Storage API cache that keeps a URL's files: the first load downloads each file once, later loads
   * read it from there. Without it (or without the API, or when the cache refuses a file, e.g. over quota)
   * files are read with Range requests.
   */
  urlCache?: string;
}

export interface ModelFiles {
  /** For loadLlamaEngine's `model`. */
  source: ModelDir | ByteSource;
  /** Bytes read from the weight files so far. */
  bytesRead(): number;
  /** URL loads: files found in the cache and files downloaded, so far. */
  cacheHits(): number;
  downloads(): number;
}

/** The model `location` names, as the loader takes it, with its weight files' reads counted. */
export async function openModelFiles(location: ModelLocation, opts: ModelFilesOptions = {}): Promise<ModelFiles> {
  const counter = new ReadCounter(opts.onRead ?? (() => undefined));
  const log = new CacheLog(opts.onDownload ?? (() => undefined));
  const dirAt = (url: string): ModelDir => (opts.urlCache === undefined ? urlDir(url) : cachedUrlDir(url, opts.urlCache, log));
  let source: ModelDir | ByteSource;
  switch (location.kind) {
    case 'default':
      source = counter.wrapDir(defaultModelDir(location.baseUrl));
      break;
    case 'files':
      source = counter.wrapDir(mapDir(location.name, location.files));
      break;
    case 'gguf':
      source = counter.wrap(blobSource(location.name, location.file));
      break;
    case 'url': {
      const { url } = location;
      if (!/\.gguf$/i.test(new URL(url).pathname)) {
        source = counter.wrapDir(dirAt(url));
        break;
      }
      const cut = url.lastIndexOf('/', url.search(/[?#]|$/) - 1);
      const src = await dirAt(url.slice(0, cut + 1)).open(url.slice(cut + 1));
      if (!src) throw new Error(`${url}: not found (HTTP 404)`);
      source = counter.wrap(src);
      break;
    }
  }
  return { source, bytesRead: () => counter.read, cacheHits: () => log.hits, downloads: () => log.downloads };
}

/** What a cached URL load did: files found in the cache, files downloaded, and the download's progress. */
class CacheLog {
  hits = 0;
  downloads = 0;
  done = 0;
  total = 0;
  constructor(readonly onDownload: (done: number, total: number) => void) {}
}

/** A model directory over HTTP whose files are kept whole in the Cache Storage API cache `cacheName`. */
function cachedUrlDir(baseUrl: string, cacheName: string, log: CacheLog): ModelDir {
  const base = baseUrl.endsWith('/') ? baseUrl : baseUrl + '/';
  const plain = urlDir(base);
  if (typeof caches === 'undefined') return plain;
  return {
    name: baseUrl,
    async open(file) {
      const url = base + file;
      const cache = await caches.open(cacheName);
      const hit = await cache.match(url);
      if (hit) {
        if (hit.status === 404) return null; // known to be absent (the loader asks for optional files)
        log.hits++;
        return blobSource(url, await hit.blob());
      }
      const res = await fetch(url);
      if (res.status === 404) {
        // Remembered, so that a later load from the cache does not need the server to say it again.
        await cache.put(url, new Response(null, { status: 404 })).catch(() => undefined);
        return null;
      }
      if (!res.ok || !res.body) throw new Error(`${url}: HTTP ${res.status}`);
      const size = Number(res.headers.get('content-length') ?? 0);
      log.total += size;
      log.downloads++;
      // One stream into the cache, its twin counted for the progress bar.
      const [toCache, toCount] = res.body.tee();
      const putting = cache.put(url, new Response(toCache, { headers: res.headers })).then(() => true, () => false);
      const reader = toCount.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        log.done += value.byteLength;
        log.onDownload(log.done, log.total);
      }
      if (!(await putting)) return plain.open(file);
      const stored = await cache.match(url);
      return stored ? blobSource(url, await stored.blob()) : plain.open(file);
    },
  };
}

const isWeightFile = (file: string): boolean => file.endsWith('.safetensors');

/** Counts what is read from weight files, for the progress bar (bytes so far, and total size). */
class ReadCounter {
  read = 0;
  total = 0;
  constructor(private readonly onChange: (read: number, total: number) => void) {}

  /** `src`, counted: its size joins the total, its reads the bytes read. */
  wrap(src: ByteSource): ByteSource {
    this.total += src.size;
    this.onChange(this.read, this.total);
    const counted: ByteSource = {
      name: src.name,
      size: src.size,
      read: async (offset, length) => {
        const bytes = await src.read(offset, length);
        this.read += bytes.byteLength;
        this.onChange(this.read, this.total);
        return bytes;
      },
    };
    if (src.close) counted.close = () => src.close!();
    return counted;
  }

  /** `dir` with its weight files counted. */
  wrapDir(dir: ModelDir): ModelDir {
    return {
      name: dir.name,
      open: async (file) => {
        const src = await dir.open(file);
        return src && isWeightFile(file) ? this.wrap(src) : src;
      },
    };
  }
}
