// Tool calling for Llama-2, which has no native tool format. The format used here:
//
// 1. The tools go into the system prompt (after the user's system message, if any):
//
//      You can call these tools. Each line is one tool as JSON, with the JSON Schema of its arguments:
//      {"name":"get_weather","description":"Current weather","parameters":{"type":"object",...}}
//      To call a tool, answer with only one JSON object and no other text:
//      {"name": "<tool name>", "arguments": {<arguments>}}
//      Results of tool calls come back as: [tool result for <call id> (<tool name>)]: <result>
//      If no tool is needed, answer the user directly.
//
//    plus "You must call the tool "X" now." (tool_choice {"type":"function",...}) or "You must call
//    one of the tools now." (tool_choice "required"). tool_choice "none" leaves the tools out.
// 2. The model's whole answer is parsed: if it is one JSON object {"name": <known tool>,
//    "arguments": {...}} (surrounding spaces and a ```json fence allowed), it becomes
//    message.tool_calls = [{id: "call_...", type: "function", function: {name, arguments: JSON text}}],
//    content null and finish_reason "tool_calls". Anything else is ordinary content.
// 3. An assistant message with tool_calls is rendered back as that JSON (one object per line), and
//    each tool message as user-side text "[tool result for call_x (name)]: <content>".
// 4. When a call is required, decoding is constrained to exactly
//    {"name": "<tool>", "arguments": <JSON for the tool's parameters schema>} (json-constraint.ts).

import type { ToolChoice } from './validate.ts';
import type { ChatCompletionMessageToolCall, ChatCompletionTool } from './types.ts';

/** The system-prompt block that describes the tools; '' when the tools are off. */
export function renderToolsPrompt(tools: ChatCompletionTool[], choice: ToolChoice): string {
  if (tools.length === 0 || choice.type === 'none') return '';
  const lines = [
    'You can call these tools. Each line is one tool as JSON, with the JSON Schema of its arguments:',
    ...tools.map((t) =>
      JSON.stringify({
        name: t.function.name,
        ...(t.function.description !== undefined ? { description: t.function.description } : {}),
        parameters: t.function.parameters ?? { type: 'object', properties: {} },
      }),
    ),
    'To call a tool, answer with only one JSON object and no other text:',
    '{"name": "<tool name>", "arguments": {<arguments>}}',
    'Results of tool calls come back as: [tool result for <call id> (<tool name>)]: <result>',
  ];
  if (choice.type === 'function') lines.push(`You must call the tool "${choice.name}" now.`);
  else if (choice.type === 'required') lines.push('You must call one of the tools now.');
  else lines.push('If no tool is needed, answer the user directly.');
  return lines.join('\n');
}

/** Assistant tool calls as the model would have written them: one JSON object per line. */
export function renderToolCalls(calls: ChatCompletionMessageToolCall[]): string {
  return calls
    .map((c) => {
      try {
        return JSON.stringify({ name: c.function.name, arguments: JSON.parse(c.function.arguments) });
      } catch {
        // Not JSON, or nested too deep to write back: keep the text as it came.
        return JSON.stringify({ name: c.function.name, arguments: c.function.arguments });
      }
    })
    .join('\n');
}

/** A tool message as user-side text. */
export function renderToolResult(callId: string, name: string, content: string): string {
  return `[tool result for ${callId} (${name})]: ${content}`;
}

/** The call in the model's answer, if the whole answer is one call of a known tool. */
export function parseToolCall(text: string, tools: ChatCompletionTool[]): { name: string; arguments: string } | null {
  let t = text.trim();
  const fence = /^```(?:json)?\s*([\s\S]*?)\s*```$/.exec(t);
  if (fence) t = fence[1]!;
  if (!t.startsWith('{')) return null;
  let value: unknown;
  try {
    value = JSON.parse(t);
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return null;
  const { name, arguments: args } = value as { name?: unknown; arguments?: unknown };
  if (typeof name !== 'string' || !tools.some((tool) => tool.function.name === name)) return null;
  if (args === undefined) return { name, arguments: '{}' };
  if (typeof args === 'object' && args !== null && !Array.isArray(args)) return { name, arguments: JSON.stringify(args) };
  return null;
}

/** True while a streamed answer may still turn out to be a tool call (only spaces, or starts with { or `). */
export function mayBeToolCall(textSoFar: string): boolean {
  const t = textSoFar.trimStart();
  return t === '' || t.startsWith('{') || t.startsWith('`');
}

/** A tool call id: "call_" + 24 random alphanumerics. */
export function newToolCallId(): string {
  return `call_${randomAlnum(24)}`;
}

const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** n random characters of [A-Za-z0-9] from the platform CSPRNG. */
export function randomAlnum(n: number): string {
  const bytes = new Uint8Array(n);
  globalThis.crypto.getRandomValues(bytes);
  let s = '';
  for (const b of bytes) s += ALNUM[b % ALNUM.length];
  return s;
}
