// The OpenAI-compatible HTTP server on node:http (runs on Node and on Deno).
//
// Routes:
//   POST /v1/openai/chat/completions, POST /v1/chat/completions   JSON, or SSE with "stream": true
//   GET  /v1/openai/models, GET /v1/models                         {"object": "list", "data": [...]}
//   GET  /health                                                   {"status": "ok"} (no API key needed)
//   GET  /metrics                                                  Prometheus text (behind the key, if any)
//   OPTIONS *                                                      CORS preflight
// Errors carry OpenAI's body {"error": {"message", "type", "param", "code"}}: malformed JSON 400,
// validation 400, missing/wrong Bearer key 401, a browser origin that is not allowed 403, unknown model
// or route 404, wrong method 405, a body not received within bodyTimeoutMs 408, body over maxBodyBytes
// 413, headers over Node's limit 431, anything else 500. A failed request never affects the others.
// A client that disconnects mid-generation aborts it (the AbortSignal reaches the backend).
//
// Browsers: by default only pages served from loopback origins (http://localhost:*, 127.0.0.1, [::1])
// may call the server; a request carrying any other Origin is refused with 403 before its body is read,
// so a web page the user visits cannot drive a local server (corsOrigins widens this; "*" allows all).

import { Buffer } from 'node:buffer';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Engine } from './engine.ts';
import {
  APIError,
  AuthenticationError,
  BadRequestError,
  ForbiddenOriginError,
  MethodNotAllowedError,
  NotFoundError,
  PayloadTooLargeError,
  RateLimitError,
  RequestTimeoutError,
  toAPIError,
} from './errors.ts';
import { parseRequestJson } from './raw-json.ts';
import { SSE_DONE, SSE_HEADERS, sseEvent } from './sse.ts';
import type { ChatCompletionChunk, ChatCompletionCreateParams } from './types.ts';

export interface ServerOptions {
  engine: Engine;
  /** 0 picks a free port. Default 8080. */
  port?: number;
  /** Default 127.0.0.1 (loopback only). */
  host?: string;
  /** Prometheus text exposition for GET /metrics (route absent when unset). */
  metrics?: () => string;
  /** When set, every /v1 route needs "Authorization: Bearer <apiKey>". */
  apiKey?: string;
  /** Largest accepted request body. Default 1 MiB. */
  maxBodyBytes?: number;
  /** Time a client has to send its whole request body, in ms. Default 10 s. */
  bodyTimeoutMs?: number;
  /**
   * Browser origins allowed to call the server ("https://app.example.com"), besides the loopback ones
   * that are always allowed; ["*"] allows every origin. Default: loopback only.
   */
  corsOrigins?: string[];
  /** Serve GET /metrics without the API key. Default false (behind the key when there is one). */
  metricsPublic?: boolean;
  /** One line per request ("POST /v1/chat/completions 200 12ms"). Default: no logging. */
  log?: (line: string) => void;
}

export interface RunningServer {
  url: string; // "http://127.0.0.1:8080", no trailing slash
  close(): Promise<void>;
}

type Handler = (req: IncomingMessage, res: ServerResponse) => Promise<number>;

interface Route {
  methods: Record<string, Handler>;
  auth: boolean;
}

const CORS_HEADERS = {
  'Access-Control-Allow-Methods': 'GET, POST, OPTIONS',
  'Access-Control-Max-Age': '86400',
};

/** True for an origin on this machine: http(s)://localhost, 127.x.x.x or [::1], any port. */
function isLoopbackOrigin(origin: string): boolean {
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return false;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return false;
  const h = url.hostname;
  return h === 'localhost' || h.endsWith('.localhost') || /^127\.\d+\.\d+\.\d+$/.test(h) || h === '[::1]';
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): number {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), ...headers });
  res.end(text);
  return status;
}

function sendError(res: ServerResponse, err: unknown, headers: Record<string, string> = {}): number {
  const e = toAPIError(err);
  if (e instanceof RateLimitError) headers = { ...headers, 'Retry-After': String(e.retryAfterSeconds) };
  if (res.headersSent) {
    res.end();
    return e.status;
  }
  return sendJson(res, e.status, e.toJSON(), headers);
}

/** Constant-time string comparison (the time does not depend on where the strings differ). */
function sameSecret(a: string, b: string): boolean {
  let diff = a.length ^ b.length;
  for (let i = 0; i < Math.max(a.length, b.length); i++) diff |= (a.charCodeAt(i) || 0) ^ (b.charCodeAt(i) || 0);
  return diff === 0;
}

function readBody(req: IncomingMessage, limit: number, timeoutMs: number): Promise<Uint8Array> {
  const tooLarge = () => new PayloadTooLargeError(`The request body is larger than the limit of ${limit} bytes.`);
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) return Promise.reject(tooLarge());
  return new Promise((resolve, reject) => {
    const chunks: Uint8Array[] = [];
    let size = 0;
    const stop = (err: Error) => {
      clearTimeout(timer);
      req.off('data', onData);
      req.resume(); // discard the rest
      reject(err);
    };
    // A client sending its body slowly must not hold a connection for long.
    const timer = setTimeout(() => stop(new RequestTimeoutError(`The request body was not received within ${timeoutMs / 1000} s.`)), timeoutMs);
    const onData = (chunk: Uint8Array) => {
      size += chunk.length;
      if (size > limit) {
        stop(tooLarge());
        return;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.on('end', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks));
    });
    req.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/** Resolves when the response can take more data or the connection is gone. */
function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

function isAsyncIterable(v: unknown): v is AsyncIterable<ChatCompletionChunk> {
  return typeof v === 'object' && v !== null && Symbol.asyncIterator in v;
}

export function startServer(opts: ServerOptions): Promise<RunningServer> {
  const { engine } = opts;
  const host = opts.host ?? '127.0.0.1';
  const maxBodyBytes = opts.maxBodyBytes ?? 1024 * 1024;
  const bodyTimeoutMs = opts.bodyTimeoutMs ?? 10_000;
  const corsOrigins = new Set(opts.corsOrigins ?? []);
  const originAllowed = (origin: string) => corsOrigins.has('*') || corsOrigins.has(origin) || isLoopbackOrigin(origin);
  const log = opts.log;

  const chat: Handler = async (req, res) => {
    const raw = await readBody(req, maxBodyBytes, bodyTimeoutMs);
    let body: unknown;
    try {
      body = parseRequestJson(new TextDecoder('utf-8', { fatal: true }).decode(raw));
    } catch (err) {
      throw new BadRequestError(
        `We could not parse the JSON body of your request: ${err instanceof Error ? err.message : String(err)}. ` +
          'The API expects a JSON payload (Content-Type: application/json).',
        null,
        null,
      );
    }
    const aborter = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) aborter.abort(new Error('client disconnected'));
    });
    const result = await engine.chat.completions.create(body as ChatCompletionCreateParams, { signal: aborter.signal });
    if (!isAsyncIterable(result)) return sendJson(res, 200, result);

    res.writeHead(200, SSE_HEADERS);
    res.flushHeaders();
    try {
      for await (const chunk of result) {
        if (aborter.signal.aborted) break;
        if (!res.write(sseEvent(chunk))) await drained(res);
      }
      if (!aborter.signal.aborted) res.end(SSE_DONE);
    } catch (err) {
      // Headers are gone: report the error as an event, as the OpenAI API does.
      if (!aborter.signal.aborted) res.end(sseEvent(toAPIError(err).toJSON()));
    }
    return 200;
  };

  const models: Handler = async (_req, res) => sendJson(res, 200, engine.models.list());
  const health: Handler = async (_req, res) => sendJson(res, 200, { status: 'ok', model: engine.modelName });
  const metrics: Handler = async (_req, res) => {
    const text = opts.metrics ? opts.metrics() : '';
    res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
    res.end(text);
    return 200;
  };

  const routes: Record<string, Route> = {
    '/v1/openai/chat/completions': { methods: { POST: chat }, auth: true },
    '/v1/chat/completions': { methods: { POST: chat }, auth: true },
    '/v1/openai/models': { methods: { GET: models, HEAD: models }, auth: true },
    '/v1/models': { methods: { GET: models, HEAD: models }, auth: true },
    '/health': { methods: { GET: health, HEAD: health }, auth: false },
    ...(opts.metrics ? { '/metrics': { methods: { GET: metrics }, auth: !opts.metricsPublic } } : {}),
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<number> => {
    const origin = req.headers.origin;
    if (origin !== undefined) {
      if (!originAllowed(origin)) {
        throw new ForbiddenOriginError(`Requests from the origin ${origin} are not allowed. Start the server with --cors-origin ${origin} to allow them.`);
      }
      for (const [k, v] of Object.entries(CORS_HEADERS)) res.setHeader(k, v);
      res.setHeader('Access-Control-Allow-Origin', corsOrigins.has('*') ? '*' : origin);
      res.setHeader('Vary', 'Origin');
    }
    const method = req.method ?? 'GET';
    const path = new URL(req.url ?? '/', 'http://localhost').pathname.replace(/\/+$/, '') || '/';
    const route = routes[path];
    if (!route) throw new NotFoundError(`Invalid URL (${method} ${path}).`, null, 'unknown_url');
    if (method === 'OPTIONS') {
      res.writeHead(204, {
        'Access-Control-Allow-Headers': req.headers['access-control-request-headers'] ?? 'Authorization, Content-Type',
        Allow: [...Object.keys(route.methods), 'OPTIONS'].join(', '),
      });
      res.end();
      return 204;
    }
    const handler = route.methods[method];
    if (!handler) {
      res.setHeader('Allow', [...Object.keys(route.methods), 'OPTIONS'].join(', '));
      throw new MethodNotAllowedError(`Method ${method} is not allowed for ${path}.`);
    }
    if (route.auth && opts.apiKey !== undefined) {
      const m = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '');
      if (!m) throw new AuthenticationError('Missing API key. Pass it as "Authorization: Bearer <key>".');
      if (!sameSecret(m[1]!.trim(), opts.apiKey)) throw new AuthenticationError();
    }
    return handler(req, res);
  };

  // Node's own limit on receiving a whole request (headers included) backs up the body timer above.
  const server = createServer({ requestTimeout: bodyTimeoutMs + 5000, headersTimeout: bodyTimeoutMs, connectionsCheckingInterval: 1000 }, (req, res) => {
    const t0 = Date.now();
    handle(req, res)
      .catch((err: unknown) => {
        // After a 403, 408 or 413 the rest of the body is not read: close the connection once answered.
        const closes = err instanceof PayloadTooLargeError || err instanceof RequestTimeoutError || err instanceof ForbiddenOriginError;
        const headers: Record<string, string> = closes ? { Connection: 'close' } : {};
        if (!(err instanceof APIError)) log?.(`error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
        return sendError(res, err, headers);
      })
      .then((status) => log?.(`${req.method} ${req.url} ${status} ${Date.now() - t0}ms`))
      .catch(() => {}); // a broken socket while answering: nothing left to do
  });

  // Errors before a request exists (headers over Node's 16 KiB limit, malformed HTTP): an OpenAI-shaped
  // body instead of Node's empty one.
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    if (!socket.writable || (err.code === 'ECONNRESET')) {
      socket.destroy();
      return;
    }
    const tooLarge = err.code === 'HPE_HEADER_OVERFLOW';
    const status = tooLarge ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    const e = new APIError(status, tooLarge ? 'The request headers are larger than the server accepts (16 KiB).' : status === 408 ? 'The request was not received in time.' : 'Malformed HTTP request.', {
      code: tooLarge ? 'request_header_fields_too_large' : status === 408 ? 'request_timeout' : 'bad_request',
    });
    const text = JSON.stringify(e.toJSON());
    const reason = tooLarge ? 'Request Header Fields Too Large' : status === 408 ? 'Request Timeout' : 'Bad Request';
    socket.end(`HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`);
  });

  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 8080, host, () => {
      server.off('error', reject);
      const { port } = server.address() as AddressInfo;
      const shownHost = host.includes(':') ? `[${host}]` : host;
      resolve({
        url: `http://${shownHost}:${port}`,
        close: () =>
          new Promise<void>((done, fail) => {
            server.close((err) => (err ? fail(err) : done()));
            server.closeAllConnections?.();
          }),
      });
    });
  });
}
