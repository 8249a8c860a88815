// Typed API errors. Each carries the HTTP status and OpenAI's error body
// {"error": {"message", "type", "param", "code"}}.

import type { ErrorBody } from './types.ts';

export class APIError extends Error {
  readonly status: number;
  readonly type: string;
  readonly param: string | null;
  readonly code: string | null;

  constructor(status: number, message: string, opts: { type?: string; param?: string | null; code?: string | null } = {}) {
    super(message);
    this.name = new.target.name;
    this.status = status;
    this.type = opts.type ?? 'invalid_request_error';
    this.param = opts.param ?? null;
    this.code = opts.code ?? null;
  }

  toJSON(): ErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** 400: a parameter is missing, of the wrong type or out of range (`param` names it). */
export class BadRequestError extends APIError {
  constructor(message: string, param: string | null = null, code: string | null = 'invalid_value') {
    super(400, message, { param, code });
  }
}

/** 401: missing or wrong API key. */
export class AuthenticationError extends APIError {
  constructor(message = 'Incorrect API key provided. Pass it as "Authorization: Bearer <key>".') {
    super(401, message, { code: 'invalid_api_key' });
  }
}

/** 404: unknown model (code "model_not_found") or unknown route. */
export class NotFoundError extends APIError {
  constructor(message: string, param: string | null = null, code: string | null = null) {
    super(404, message, { param, code });
  }
}

/** An APIError class whose instances differ only in their message: one status and one code. */
function fixedError(status: number, code: string): new (message: string) => APIError {
  return class extends APIError {
    constructor(message: string) {
      super(status, message, { code });
    }
  };
}

/** 405: the route exists with another method. */
export class MethodNotAllowedError extends fixedError(405, 'method_not_allowed') {}

/** 413: the request body is over the server's limit. */
export class PayloadTooLargeError extends fixedError(413, 'request_too_large') {}

/** 403: a browser page from an origin this server does not allow (CORS). */
export class ForbiddenOriginError extends fixedError(403, 'origin_not_allowed') {}

/** 408: the client did not send its whole request body in time. */
export class RequestTimeoutError extends fixedError(408, 'request_timeout') {}

/** 500: a failure inside the server or the model. */
export class InternalServerError extends APIError {
  constructor(message = 'The server had an error while processing your request.') {
    super(500, message, { type: 'server_error', code: null });
  }
}

/** The caller's AbortSignal fired; the generation was cancelled. */
export class APIUserAbortError extends Error {
  constructor(message = 'Request was aborted.') {
    super(message);
    this.name = 'APIUserAbortError';
  }
}

/** 429: the server's request queue is full; retry after `retryAfterSeconds`. */
export class RateLimitError extends APIError {
  constructor(message: string, readonly retryAfterSeconds: number) {
    super(429, message, { type: 'rate_limit_exceeded', code: 'queue_full' });
  }
}

/** Maps any thrown value to an APIError (unknown errors become a 500 that hides the details). */
export function toAPIError(err: unknown): APIError {
  if (err instanceof APIError) return err;
  const retry = (err as { retryAfterSeconds?: unknown } | null)?.retryAfterSeconds;
  if (typeof retry === 'number') return new RateLimitError((err as Error).message, retry);
  return new InternalServerError();
}
