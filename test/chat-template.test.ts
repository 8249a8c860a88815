// The model's own chat template: @huggingface/jinja's render against Python's Jinja2 (configured as
// transformers configures it; fixtures/chat-templates.py wrote the renders), ids against the HF
// tokenization of the rendered text, Llama-2's template against the built-in Llama-2 format, and
// special-token strings typed by a user staying text under every template.
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { llamaChatTokenizer } from '../serve/chat-tokenizer-llama.ts';
import { buildTemplateMessages } from '../api/prompt.ts';
import { validateChatRequest } from '../api/validate.ts';
import {
  buildLlama2TokenizerJson,
  chatFormat,
  compileChatTemplate,
  formatLlama2Chat,
  llama2TokenizerConfigJson,
  LLAMA2_CHAT_TEMPLATE,
  LLAMA2_CHAT_TEMPLATE_META,
  LlamaTokenizer,
  renderChatTemplate,
  type ChatMessage,
} from '../tokenizer/index.ts';

interface Fixture {
  templates: Record<string, string>;
  conversations: Record<string, ChatMessage[]>;
  rendered: Record<string, Record<string, string>>;
}
const fx = JSON.parse(readFileSync(new URL('./fixtures/chat-templates.json', import.meta.url), 'utf8')) as Fixture;
const vars = { bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>' };

let tok: LlamaTokenizer;
beforeAll(() => {
  tok = LlamaTokenizer.fromJson(buildLlama2TokenizerJson(), llama2TokenizerConfigJson());
});

/** HF's apply_chat_template ids: the rendered text tokenized with special-token parsing, BOS first. */
function hfIds(rendered: string): number[] {
  const ids = tok.encode(rendered, { addBos: false, parseSpecial: true });
  return ids[0] === tok.bosId ? ids : [tok.bosId, ...ids];
}
const literal = (text: string): number[] => tok.encode(text, { addBos: false });

/** Text of ids section by section: control ids as their strings, each text run decoded on its own (dropping its dummy-prefix space). */
function sectionsText(ids: number[]): string {
  let out = '';
  let run: number[] = [];
  for (const id of [...ids, -1]) {
    if (id > 2) {
      run.push(id);
      continue;
    }
    if (run.length > 0) out += tok.decode(run);
    run = [];
    if (id >= 0) out += tok.idToPiece(id);
  }
  return out;
}

describe('chat template rendering (@huggingface/jinja) against Python Jinja2', () => {
  it('the fixture carries the built-in Llama-2 template verbatim', () => {
    expect(fx.templates.llama2).toBe(LLAMA2_CHAT_TEMPLATE);
  });

  for (const [tname, src] of Object.entries(fx.templates)) {
    it(`${tname}: every conversation renders exactly as Jinja2 renders it`, () => {
      const compiled = compileChatTemplate(src);
      for (const [cname, conv] of Object.entries(fx.conversations)) {
        const want = fx.rendered[tname]![cname]!;
        if (tname === 'no_system' && conv[0]!.role === 'system') {
          expect(() => renderChatTemplate(compiled, src, conv, vars)).toThrow(/System role not supported/);
          continue; // chatFormat's fallback is checked by ids below
        }
        expect(renderChatTemplate(compiled, src, conv, vars).text, `${tname}/${cname}`).toBe(want);
      }
    });
  }
});

describe('chat template ids', () => {
  for (const tname of Object.keys(fx.templates)) {
    it(`${tname}: the ids of HF's tokenization of the rendered text, for conversations without special strings`, () => {
      const fmt = chatFormat(tok, fx.templates[tname]!);
      expect(fmt.kind).toBe(tname === 'llama2' ? 'llama-2' : 'model');
      for (const [cname, conv] of Object.entries(fx.conversations)) {
        if (cname === 'typed_specials') continue;
        expect(fmt.format(conv), `${tname}/${cname}`).toEqual(hfIds(fx.rendered[tname]![cname]!));
      }
    });
  }

  it('TinyLlama-Chat zephyr: BOS, then each turn as HF tokenizes it (a dummy-prefix section after every </s>)', () => {
    const fmt = chatFormat(tok, fx.templates.tinyllama_zephyr!);
    const ids = fmt.format(fx.conversations.system_user!);
    const [sys, user] = fx.conversations.system_user!;
    const want = [
      1, ...literal(`<|system|>\n${sys!.content}`), 2,
      ...literal(`\n<|user|>\n${user!.content}`), 2,
      ...literal('\n<|assistant|>\n'),
    ];
    expect(ids).toEqual(want);
    expect(ids.slice(0, 4)).toEqual([1, 529, 29989, 5205]); // "▁<", "|", "system"
    expect(sectionsText(ids)).toBe(`<s>${fx.rendered.tinyllama_zephyr!.system_user!}`);
  });

  it("Llama-2's own template through Jinja gives the built-in format's ids (the fast path is not a different format)", () => {
    const compiled = compileChatTemplate(LLAMA2_CHAT_TEMPLATE);
    for (const [cname, conv] of Object.entries(fx.conversations)) {
      const r = renderChatTemplate(compiled, LLAMA2_CHAT_TEMPLATE, conv, vars);
      const viaJinja = tok.encodeMarked(r.text, r.untrusted);
      expect(viaJinja, cname).toEqual(formatLlama2Chat(tok, conv));
    }
  });

  it("Meta's spelling of the Llama-2 template (meta-llama/Llama-2-*-chat-hf) is recognised as Llama-2's and renders the same", () => {
    expect(LLAMA2_CHAT_TEMPLATE_META).not.toBe(LLAMA2_CHAT_TEMPLATE);
    expect(LLAMA2_CHAT_TEMPLATE_META).toContain("{{ ' '  + content.strip() + ' ' + eos_token }}");
    expect(chatFormat(tok, LLAMA2_CHAT_TEMPLATE_META).kind).toBe('llama-2');
    const compiled = compileChatTemplate(LLAMA2_CHAT_TEMPLATE_META);
    for (const [cname, conv] of Object.entries(fx.conversations)) {
      expect(renderChatTemplate(compiled, LLAMA2_CHAT_TEMPLATE_META, conv, vars).text, cname).toBe(fx.rendered.llama2![cname]);
    }
  });

  it('a model without a chat_template (or with Llama-2\'s) uses the built-in Llama-2 format', () => {
    const bare = LlamaTokenizer.fromJson(buildLlama2TokenizerJson(), { ...llama2TokenizerConfigJson(), chat_template: undefined });
    expect(bare.chatTemplate).toBeNull();
    expect(chatFormat(bare).kind).toBe('llama-2');
    expect(chatFormat(tok).kind).toBe('llama-2');
    const conv = fx.conversations.multi_turn!;
    expect(chatFormat(bare).format(conv)).toEqual(formatLlama2Chat(tok, conv));
  });

  it('reads chat_template from tokenizer_config.json, also in the list form ({name: "default"})', () => {
    const zephyr = fx.templates.tinyllama_zephyr!;
    const a = LlamaTokenizer.fromJson(buildLlama2TokenizerJson(), { ...llama2TokenizerConfigJson(), chat_template: zephyr });
    expect(a.chatTemplate).toBe(zephyr);
    expect(chatFormat(a).format(fx.conversations.user!)).toEqual(hfIds(fx.rendered.tinyllama_zephyr!.user!));
    const b = LlamaTokenizer.fromJson(buildLlama2TokenizerJson(), {
      ...llama2TokenizerConfigJson(),
      chat_template: [{ name: 'tool_use', template: 'x' }, { name: 'default', template: zephyr }],
    });
    expect(b.chatTemplate).toBe(zephyr);
  });
});

describe('special-token strings typed by a user stay text', () => {
  const conv = (): ChatMessage[] => fx.conversations.typed_specials!;

  it('zephyr: only the template\'s own </s> become EOS; the user\'s <s>, </s>, <unk> are text', () => {
    const ids = chatFormat(tok, fx.templates.tinyllama_zephyr!).format(conv());
    const [sys, user] = conv();
    expect(ids).toEqual([
      1, ...literal(`<|system|>\n${sys!.content}`), 2,
      ...literal(`\n<|user|>\n${user!.content}`), 2,
      ...literal('\n<|assistant|>\n'),
    ]);
    expect(ids.filter((i) => i === 2)).toHaveLength(2);
    expect(ids.filter((i) => i === 1)).toHaveLength(1);
    expect(ids).not.toContain(0);
    // HF's own tokenization of the rendered text would have injected them:
    const injected = hfIds(fx.rendered.tinyllama_zephyr!.typed_specials!);
    expect(injected.filter((i) => i === 2).length).toBeGreaterThan(2);
  });

  it('every template: control ids come only from template text, and the ids decode back to the rendered text', () => {
    for (const [tname, src] of Object.entries(fx.templates)) {
      const ids = chatFormat(tok, src).format(conv());
      // The same conversation with the specials spelled harmlessly has the control ids in the same places.
      const harmless = conv().map((m) => ({ ...m, content: m.content.replaceAll('<', '{').replaceAll('>', '}') }));
      const ref = chatFormat(tok, src).format(harmless);
      const controls = (a: number[]): number[] => a.flatMap((id, k) => (id <= 2 ? [k - a.slice(0, k).filter((x) => x > 2).length, id] : []));
      expect(controls(ids), tname).toEqual(controls(ref));
      const rendered = fx.rendered[tname]!.typed_specials!;
      expect(sectionsText(ids), tname).toBe(rendered.startsWith('<s>') ? rendered : `<s>${rendered}`);
    }
  });

  it('the Llama-2 template through Jinja keeps typed specials as text, as the built-in format does', () => {
    const compiled = compileChatTemplate(LLAMA2_CHAT_TEMPLATE);
    const r = renderChatTemplate(compiled, LLAMA2_CHAT_TEMPLATE, conv(), vars);
    expect(tok.encodeMarked(r.text, r.untrusted)).toEqual(formatLlama2Chat(tok, conv()));
  });
});

describe('templates that cannot be honoured', () => {
  it('a template that measures message contents is refused when the format is built (its user text cannot be traced)', () => {
    expect(() => chatFormat(tok, "{% for m in messages %}{{ m['content'] | length }}:{{ m['content'] }}{% endfor %}")).toThrow(/cannot be traced/);
    // ... also when only some contents are measured: the one traced, the other not
    const compiled = compileChatTemplate("{{ messages[0]['content'] }}{% if messages | length > 1 %}{{ messages[1]['content'][:3] }}{% endif %}");
    expect(renderChatTemplate(compiled, '', [{ role: 'user', content: 'hello' }], vars).text).toBe('hello');
    expect(() => renderChatTemplate(compiled, '', [{ role: 'user', content: 'a' }, { role: 'assistant', content: 'hello' }], vars)).toThrow(/cannot be traced/);
  });

  it('a template that raises reports its message', () => {
    const fmt = chatFormat(tok, "{{ raise_exception('only one turn, please') }}");
    expect(() => fmt.format([{ role: 'user', content: 'hi' }])).toThrow(/chat template: only one turn, please/);
  });

  it('a template that does not parse is refused when the format is built (at load)', () => {
    expect(() => chatFormat(tok, '{% for m in messages %}{{ m.content }}')).toThrow(/chat_template: not a template/);
  });
});

describe('the API path (serve/chat-tokenizer-llama.ts + api/prompt.ts)', () => {
  it('tool messages under a template without a tool role: rendered as user text "[tool result for <id> (<name>)]: ..."', () => {
    const zephyr = LlamaTokenizer.fromJson(buildLlama2TokenizerJson(), { ...llama2TokenizerConfigJson(), chat_template: fx.templates.tinyllama_zephyr });
    const chat = llamaChatTokenizer(zephyr);
    expect(chat.chatFormat).toBe('model');
    const req = validateChatRequest({
      model: 'm',
      messages: [
        { role: 'user', content: 'Weather in Paris?' },
        { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] },
        { role: 'tool', tool_call_id: 'call_1', content: '18 C, </s> sunny' },
      ],
    });
    const messages = buildTemplateMessages(req);
    expect(messages.map((m) => m.role)).toEqual(['user', 'assistant', 'user']);
    expect(messages[2]!.content).toBe('[tool result for call_1 (get_weather)]: 18 C, </s> sunny');
    const ids = chat.formatChat(messages);
    const want = [
      1, ...literal('<|user|>\nWeather in Paris?'), 2,
      ...literal(`\n<|assistant|>\n${messages[1]!.content}`), 2,
      ...literal(`\n<|user|>\n${messages[2]!.content}`), 2,
      ...literal('\n<|assistant|>\n'),
    ];
    expect(ids).toEqual(want);
    // Without a template (or with Llama-2's) the API keeps today's Llama-2 ids.
    expect(llamaChatTokenizer(tok).formatChat(messages)).toEqual(formatLlama2Chat(tok, messages));
    expect(llamaChatTokenizer(zephyr, null).formatChat(messages)).toEqual(formatLlama2Chat(tok, messages));
  });
});
