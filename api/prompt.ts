// Validated messages -> the chat template's messages (the model's own template or Llama-2's): an
// optional system message first (the user's system text, then the tools block), then user/assistant
// alternating, ending with user. User-side text is every user and tool message between two assistant
// messages, joined by a blank line; tool messages render as "[tool result for <id> (<name>)]: <content>",
// whatever the template, so templates without a tool role (Llama-2's, zephyr's) get them too.

import type { TemplateMessage } from './chat-tokenizer.ts';
import { renderToolCalls, renderToolResult, renderToolsPrompt } from './tools.ts';
import type { ValidatedChatRequest } from './validate.ts';

export function buildTemplateMessages(req: Pick<ValidatedChatRequest, 'messages' | 'tools' | 'toolChoice'>): TemplateMessage[] {
  const systemParts: string[] = [];
  const sys = req.messages.find((m) => m.role === 'system');
  if (sys) systemParts.push(sys.content);
  const toolsBlock = renderToolsPrompt(req.tools, req.toolChoice);
  if (toolsBlock) systemParts.push(toolsBlock);

  const out: TemplateMessage[] = [];
  if (systemParts.length > 0) out.push({ role: 'system', content: systemParts.join('\n\n') });
  let userSide: string[] = [];
  for (const m of req.messages) {
    switch (m.role) {
      case 'system':
        break;
      case 'user':
        userSide.push(m.content);
        break;
      case 'tool':
        userSide.push(renderToolResult(m.toolCallId, m.toolName, m.content));
        break;
      case 'assistant': {
        out.push({ role: 'user', content: userSide.join('\n\n') });
        userSide = [];
        const parts: string[] = [];
        if (m.content) parts.push(m.content);
        if (m.toolCalls.length > 0) parts.push(renderToolCalls(m.toolCalls));
        out.push({ role: 'assistant', content: parts.join('\n') });
        break;
      }
    }
  }
  out.push({ role: 'user', content: userSide.join('\n\n') });
  return out;
}
