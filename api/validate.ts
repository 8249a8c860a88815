// Request validation: wire JSON (unknown) -> ValidatedChatRequest, or a BadRequestError (400)
// whose `param` names the offending parameter ("temperature", "messages[2].role", ...).
// Checks that need the prompt's token count (context length) are in the engine.

import type { SamplingParams } from '../runtime/generation-types.ts';
import { MAX_SEED } from '../runtime/sampler.ts';
import { BadRequestError } from './errors.ts';
import { checkSchema } from './json-schema-check.ts';
import type { ChatCompletionMessageToolCall, ChatCompletionTool, JsonSchema } from './types.ts';

export type ValidatedMessage =
  | { role: 'system'; content: string }
  | { role: 'user'; content: string }
  | { role: 'assistant'; content: string | null; toolCalls: ChatCompletionMessageToolCall[] }
  | { role: 'tool'; content: string; toolCallId: string; toolName: string };

export type ToolChoice =
  | { type: 'none' }
  | { type: 'auto' }
  | { type: 'required' }
  | { type: 'function'; name: string };

/** response_format: free text, any JSON object, or JSON valid for a schema. */
export type ResponseFormat =
  | { type: 'text' }
  | { type: 'json_object' }
  | { type: 'json_schema'; name: string; schema: JsonSchema; strict: boolean };

export interface ValidatedChatRequest {
  model: string;
  messages: ValidatedMessage[];
  sampling: SamplingParams;
  /** null: as many as the context leaves. */
  maxTokens: number | null;
  stop: string[];
  stream: boolean;
  includeUsage: boolean;
  user: string | null;
  tools: ChatCompletionTool[];
  toolChoice: ToolChoice;
  /** Choices to generate from the prompt (1..8). */
  n: number;
  /** null: no logprobs; else the number of alternatives per token (0..20). */
  topLogprobs: number | null;
  responseFormat: ResponseFormat;
}

export const LIMITS = {
  temperature: { min: 0, max: 2, default: 1 },
  top_p: { min: 0, max: 1, default: 1 }, // (0, 1]
  min_p: { min: 0, max: 1, default: 0 },
  top_k: { min: 0, max: 999, default: 0 },
  max_tokens: { min: 0, max: 1_000_000 },
  presence_penalty: { min: -2, max: 2, default: 0 },
  frequency_penalty: { min: -2, max: 2, default: 0 },
  repetition_penalty: { min: 0.01, max: 5, default: 1 },
  stop: { maxCount: 4 },
  n: { min: 1, max: 8, default: 1 },
  top_logprobs: { min: 0, max: 20, default: 0 },
} as const;

const TOOL_NAME = /^[a-zA-Z0-9_-]{1,64}$/;

type Obj = Record<string, unknown>;

function isObject(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

function invalidType(param: string, expected: string, got: unknown): BadRequestError {
  return new BadRequestError(`Invalid type for '${param}': expected ${expected}, but got ${typeName(got)}.`, param, 'invalid_type');
}

function missing(param: string): BadRequestError {
  return new BadRequestError(`Missing required parameter: '${param}'.`, param, 'missing_required_parameter');
}

/** A finite number in [min, max] (bounds open where asked), or the default when absent/null. */
function numberIn(
  body: Obj,
  param: string,
  range: { min: number; max: number; default?: number },
  opts: { integer?: boolean; openMin?: boolean } = {},
): number | undefined {
  const v = body[param];
  if (v === undefined || v === null) return range.default;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw invalidType(param, opts.integer ? 'an integer' : 'a number', v);
  if (opts.integer && !Number.isInteger(v)) throw invalidType(param, 'an integer', v);
  const low = opts.openMin ? v <= range.min : v < range.min;
  if (low || v > range.max) {
    const lo = opts.openMin ? `greater than ${range.min}` : `at least ${range.min}`;
    throw new BadRequestError(
      `Invalid value for '${param}': ${v}. It must be ${lo} and at most ${range.max}.`,
      param,
      'invalid_value',
    );
  }
  return v;
}

function parseSeed(v: unknown): bigint | undefined {
  if (v === undefined || v === null) return undefined;
  let seed: bigint;
  if (typeof v === 'bigint') seed = v;
  else if (typeof v === 'number' && Number.isInteger(v)) {
    // Above 2^53 a JS number has already lost digits; the HTTP server passes such seeds as bigint.
    if (!Number.isSafeInteger(v) && v > 0 && v < 2 ** 63) {
      throw new BadRequestError(
        `Invalid value for 'seed': ${v} is above 2^53 and cannot be represented exactly as a number; pass a bigint.`,
        'seed',
      );
    }
    seed = BigInt(v);
  } else throw invalidType('seed', 'an integer', v);
  if (seed < 0n || seed > MAX_SEED) {
    throw new BadRequestError(`Invalid value for 'seed': ${seed}. It must be between 0 and 2^63-1.`, 'seed');
  }
  return seed;
}

/** Text of a message's content: a string, or an array of {type: "text", text} parts joined. */
function contentText(v: unknown, param: string): string {
  if (typeof v === 'string') return v;
  if (!Array.isArray(v)) throw invalidType(param, 'a string or an array of text parts', v);
  let text = '';
  v.forEach((part, j) => {
    const p = `${param}[${j}]`;
    if (!isObject(part)) throw invalidType(p, 'an object', part);
    if (part.type !== 'text') {
      throw new BadRequestError(`Invalid value for '${p}.type': only "text" content parts are supported.`, `${p}.type`);
    }
    if (typeof part.text !== 'string') throw invalidType(`${p}.text`, 'a string', part.text);
    text += part.text;
  });
  return text;
}

function parseToolCalls(v: unknown, param: string): ChatCompletionMessageToolCall[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw invalidType(param, 'an array', v);
  return v.map((call, j) => {
    const p = `${param}[${j}]`;
    if (!isObject(call)) throw invalidType(p, 'an object', call);
    if (typeof call.id !== 'string') throw call.id === undefined ? missing(`${p}.id`) : invalidType(`${p}.id`, 'a string', call.id);
    if (call.type !== 'function') throw new BadRequestError(`Invalid value for '${p}.type': expected "function".`, `${p}.type`);
    const fn = call.function;
    if (!isObject(fn)) throw invalidType(`${p}.function`, 'an object', fn);
    if (typeof fn.name !== 'string') throw invalidType(`${p}.function.name`, 'a string', fn.name);
    if (typeof fn.arguments !== 'string') throw invalidType(`${p}.function.arguments`, 'a string', fn.arguments);
    return { id: call.id, type: 'function', function: { name: fn.name, arguments: fn.arguments } };
  });
}

/**
 * Messages: roles system/user/assistant/tool. The conversation is (user, assistant, tool)* then a
 * user or tool message, with at most one system message anywhere: it starts with a user message,
 * no two assistant messages follow each other, and each tool message answers a call of the
 * assistant message just before its run of tool messages.
 */
function parseMessages(v: unknown): ValidatedMessage[] {
  if (v === undefined) throw missing('messages');
  if (!Array.isArray(v)) throw invalidType('messages', 'an array', v);
  if (v.length === 0) throw new BadRequestError("Invalid value for 'messages': the conversation is empty.", 'messages', 'invalid_value');
  const out: ValidatedMessage[] = [];
  let systemSeen = false;
  let prev: ValidatedMessage | null = null; // previous non-system message
  let openCalls: ChatCompletionMessageToolCall[] = []; // calls the current run of tool messages answers
  v.forEach((m, i) => {
    const p = `messages[${i}]`;
    if (!isObject(m)) throw invalidType(p, 'an object', m);
    const role = m.role;
    if (role === undefined) throw missing(`${p}.role`);
    if (m.name !== undefined && typeof m.name !== 'string') throw invalidType(`${p}.name`, 'a string', m.name);
    let msg: ValidatedMessage;
    switch (role) {
      case 'developer': // OpenAI's newer name for the system message
      case 'system':
        if (systemSeen) throw new BadRequestError(`Invalid value for '${p}.role': at most one system (or developer) message is allowed.`, `${p}.role`);
        systemSeen = true;
        if (m.content === undefined) throw missing(`${p}.content`);
        out.push({ role: 'system', content: contentText(m.content, `${p}.content`) });
        return;
      case 'user':
        if (m.content === undefined) throw missing(`${p}.content`);
        msg = { role: 'user', content: contentText(m.content, `${p}.content`) };
        break;
      case 'assistant': {
        const toolCalls = parseToolCalls(m.tool_calls, `${p}.tool_calls`);
        const content = m.content === undefined || m.content === null ? null : contentText(m.content, `${p}.content`);
        if (content === null && toolCalls.length === 0) {
          throw new BadRequestError(`Invalid value for '${p}.content': an assistant message needs content or tool_calls.`, `${p}.content`);
        }
        if (prev === null || prev.role === 'assistant') {
          throw new BadRequestError(
            `Invalid value for '${p}.role': an assistant message must follow a user or tool message.`,
            `${p}.role`,
          );
        }
        msg = { role: 'assistant', content, toolCalls };
        break;
      }
      case 'tool': {
        if (m.content === undefined) throw missing(`${p}.content`);
        const content = contentText(m.content, `${p}.content`);
        if (m.tool_call_id === undefined) throw missing(`${p}.tool_call_id`);
        if (typeof m.tool_call_id !== 'string') throw invalidType(`${p}.tool_call_id`, 'a string', m.tool_call_id);
        const id = m.tool_call_id;
        if (prev?.role === 'assistant') openCalls = prev.toolCalls;
        else if (prev?.role !== 'tool') openCalls = [];
        const call = openCalls.find((c) => c.id === id);
        if (!call) {
          throw new BadRequestError(
            `Invalid value for '${p}.tool_call_id': a tool message must answer a tool call of the preceding assistant message.`,
            `${p}.tool_call_id`,
          );
        }
        msg = { role: 'tool', content, toolCallId: id, toolName: call.function.name };
        break;
      }
      default:
        throw new BadRequestError(
          `Invalid value for '${p}.role': ${JSON.stringify(role)}. Supported roles: system (or developer), user, assistant, tool.`,
          `${p}.role`,
        );
    }
    if (prev === null && msg.role !== 'user') {
      throw new BadRequestError(`Invalid value for '${p}.role': the conversation must start with a user message.`, `${p}.role`);
    }
    out.push(msg);
    prev = msg;
  });
  const last = prev as ValidatedMessage | null;
  if (last === null) throw new BadRequestError("Invalid value for 'messages': the conversation has no user message.", 'messages');
  if (last.role === 'assistant') {
    throw new BadRequestError("Invalid value for 'messages': the last message must be a user or tool message.", 'messages');
  }
  return out;
}

function parseStop(v: unknown): string[] {
  if (v === undefined || v === null) return [];
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list) || list.some((s) => typeof s !== 'string')) throw invalidType('stop', 'a string or an array of strings', v);
  if (list.length > LIMITS.stop.maxCount) {
    throw new BadRequestError(`Invalid value for 'stop': at most ${LIMITS.stop.maxCount} stop sequences are allowed.`, 'stop');
  }
  if (list.some((s) => s === '')) throw new BadRequestError("Invalid value for 'stop': stop sequences must not be empty.", 'stop');
  return list as string[];
}

function parseTools(v: unknown): ChatCompletionTool[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw invalidType('tools', 'an array', v);
  const names = new Set<string>();
  return v.map((t, i) => {
    const p = `tools[${i}]`;
    if (!isObject(t)) throw invalidType(p, 'an object', t);
    if (t.type !== 'function') throw new BadRequestError(`Invalid value for '${p}.type': expected "function".`, `${p}.type`);
    const fn = t.function;
    if (!isObject(fn)) throw fn === undefined ? missing(`${p}.function`) : invalidType(`${p}.function`, 'an object', fn);
    if (typeof fn.name !== 'string') throw fn.name === undefined ? missing(`${p}.function.name`) : invalidType(`${p}.function.name`, 'a string', fn.name);
    if (!TOOL_NAME.test(fn.name)) {
      throw new BadRequestError(`Invalid value for '${p}.function.name': use 1-64 of a-z, A-Z, 0-9, _ and -.`, `${p}.function.name`);
    }
    if (names.has(fn.name)) throw new BadRequestError(`Invalid value for '${p}.function.name': duplicate tool name "${fn.name}".`, `${p}.function.name`);
    names.add(fn.name);
    if (fn.description !== undefined && typeof fn.description !== 'string') {
      throw invalidType(`${p}.function.description`, 'a string', fn.description);
    }
    if (fn.parameters !== undefined && !isObject(fn.parameters)) throw invalidType(`${p}.function.parameters`, 'an object', fn.parameters);
    if (fn.parameters !== undefined) checkSchema(fn.parameters, `${p}.function.parameters`);
    const tool: ChatCompletionTool = { type: 'function', function: { name: fn.name } };
    if (fn.description !== undefined) tool.function.description = fn.description;
    if (fn.parameters !== undefined) tool.function.parameters = fn.parameters as JsonSchema;
    return tool;
  });
}

function parseToolChoice(v: unknown, tools: ChatCompletionTool[]): ToolChoice {
  if (v === undefined || v === null) return { type: tools.length > 0 ? 'auto' : 'none' };
  if (v === 'none') return { type: 'none' };
  if (tools.length === 0) throw new BadRequestError("Invalid value for 'tool_choice': it is only allowed when 'tools' are given.", 'tool_choice');
  if (v === 'auto' || v === 'required') return { type: v };
  if (isObject(v) && v.type === 'function' && isObject(v.function) && typeof v.function.name === 'string') {
    const name = v.function.name;
    if (!tools.some((t) => t.function.name === name)) {
      throw new BadRequestError(`Invalid value for 'tool_choice': no tool named "${name}" in 'tools'.`, 'tool_choice');
    }
    return { type: 'function', name };
  }
  throw new BadRequestError(
    `Invalid value for 'tool_choice': expected "none", "auto", "required" or {"type": "function", "function": {"name": ...}}.`,
    'tool_choice',
  );
}

/** Validates a Chat Completions request body. Unknown extra fields are ignored. */
export function validateChatRequest(body: unknown): ValidatedChatRequest {
  if (!isObject(body)) throw new BadRequestError('The request body must be a JSON object.', null, 'invalid_type');
  if (body.model === undefined) throw missing('model');
  if (typeof body.model !== 'string') throw invalidType('model', 'a string', body.model);
  const messages = parseMessages(body.messages);

  const temperature = numberIn(body, 'temperature', LIMITS.temperature)!;
  const topP = numberIn(body, 'top_p', LIMITS.top_p, { openMin: true })!;
  const minP = numberIn(body, 'min_p', LIMITS.min_p)!;
  const topK = numberIn(body, 'top_k', LIMITS.top_k, { integer: true })!;
  const presencePenalty = numberIn(body, 'presence_penalty', LIMITS.presence_penalty)!;
  const frequencyPenalty = numberIn(body, 'frequency_penalty', LIMITS.frequency_penalty)!;
  const repetitionPenalty = numberIn(body, 'repetition_penalty', LIMITS.repetition_penalty)!;
  const seed = parseSeed(body.seed);
  // Both names are checked; max_tokens wins when both are given.
  const maxTokensParam = numberIn(body, 'max_tokens', LIMITS.max_tokens, { integer: true });
  const maxCompletionTokens = numberIn(body, 'max_completion_tokens', LIMITS.max_tokens, { integer: true });
  const maxTokens = maxTokensParam ?? maxCompletionTokens;

  const n = numberIn(body, 'n', LIMITS.n, { integer: true })!;
  if (body.logprobs !== undefined && body.logprobs !== null && typeof body.logprobs !== 'boolean') throw invalidType('logprobs', 'a boolean', body.logprobs);
  const logprobs = body.logprobs === true;
  const topLogprobs = numberIn(body, 'top_logprobs', LIMITS.top_logprobs, { integer: true })!;
  if (!logprobs && body.top_logprobs !== undefined && body.top_logprobs !== null) {
    throw new BadRequestError("Invalid value for 'top_logprobs': 'logprobs' must be true when 'top_logprobs' is given.", 'top_logprobs');
  }
  const responseFormat = parseResponseFormat(body.response_format);

  const stop = parseStop(body.stop);
  if (body.stream !== undefined && body.stream !== null && typeof body.stream !== 'boolean') throw invalidType('stream', 'a boolean', body.stream);
  const stream = body.stream === true;
  let includeUsage = false;
  const so = body.stream_options;
  if (so !== undefined && so !== null) {
    if (!isObject(so)) throw invalidType('stream_options', 'an object', so);
    if (!stream) throw new BadRequestError("Invalid value for 'stream_options': only allowed when 'stream' is true.", 'stream_options');
    const iu = so.include_usage;
    if (iu !== undefined && iu !== null && typeof iu !== 'boolean') throw invalidType('stream_options.include_usage', 'a boolean', iu);
    includeUsage = iu === true;
  }
  if (body.user !== undefined && body.user !== null && typeof body.user !== 'string') throw invalidType('user', 'a string', body.user);
  const tools = parseTools(body.tools);
  const toolChoice = parseToolChoice(body.tool_choice, tools);

  const sampling: SamplingParams = { temperature, topP, topK, minP, presencePenalty, frequencyPenalty, repetitionPenalty };
  if (seed !== undefined) sampling.seed = seed;
  return {
    model: body.model,
    messages,
    sampling,
    maxTokens: maxTokens ?? null,
    stop,
    stream,
    includeUsage,
    user: typeof body.user === 'string' ? body.user : null,
    tools,
    toolChoice,
    n,
    topLogprobs: logprobs ? topLogprobs : null,
    responseFormat,
  };
}

const SCHEMA_NAME = /^[a-zA-Z0-9_-]{1,64}$/;

function parseResponseFormat(v: unknown): ResponseFormat {
  if (v === undefined || v === null) return { type: 'text' };
  if (!isObject(v)) throw invalidType('response_format', 'an object', v);
  switch (v.type) {
    case 'text':
      return { type: 'text' };
    case 'json_object':
      return { type: 'json_object' };
    case 'json_schema': {
      const js = v.json_schema;
      const p = 'response_format.json_schema';
      if (js === undefined) throw missing(p);
      if (!isObject(js)) throw invalidType(p, 'an object', js);
      if (js.name === undefined) throw missing(`${p}.name`);
      if (typeof js.name !== 'string') throw invalidType(`${p}.name`, 'a string', js.name);
      if (!SCHEMA_NAME.test(js.name)) throw new BadRequestError(`Invalid value for '${p}.name': use 1-64 of a-z, A-Z, 0-9, _ and -.`, `${p}.name`);
      if (js.strict !== undefined && js.strict !== null && typeof js.strict !== 'boolean') throw invalidType(`${p}.strict`, 'a boolean', js.strict);
      if (js.description !== undefined && typeof js.description !== 'string') throw invalidType(`${p}.description`, 'a string', js.description);
      const schema = js.schema ?? {};
      if (!isObject(schema)) throw invalidType(`${p}.schema`, 'an object', schema);
      checkSchema(schema, `${p}.schema`, { enforceable: true });
      return { type: 'json_schema', name: js.name, schema: schema as JsonSchema, strict: js.strict === true };
    }
    default:
      if (v.type === undefined) throw missing('response_format.type');
      throw new BadRequestError(
        `Invalid value for 'response_format.type': ${JSON.stringify(v.type)}. Supported: "text", "json_object", "json_schema".`,
        'response_format.type',
      );
  }
}
