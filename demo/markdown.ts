// Answers as Markdown: `marked` (CommonMark + GFM) renders, DOMPurify sanitizes (a model's text is untrusted:
// no scripts, event handlers or javascript: URLs reach the page), and every code block gets a Copy button.

import DOMPurify from 'dompurify';
import { Marked } from 'marked';

const md = new Marked({ gfm: true, breaks: true, async: false });

/** `text` rendered into `el` (replacing its content). */
export function renderMarkdown(el: HTMLElement, text: string): void {
  const html = md.parse(text, { async: false });
  el.innerHTML = DOMPurify.sanitize(html, { USE_PROFILES: { html: true } });
  for (const a of el.querySelectorAll('a')) {
    a.target = '_blank';
    a.rel = 'noopener noreferrer';
  }
  for (const pre of el.querySelectorAll('pre')) {
    const code = pre.querySelector('code');
    const lang = /language-([\w+-]+)/.exec(code?.className ?? '')?.[1] ?? '';
    const wrap = document.createElement('div');
    wrap.className = 'code-block';
    const bar = document.createElement('div');
    bar.className = 'code-bar';
    const label = document.createElement('span');
    label.textContent = lang || 'code';
    const copy = document.createElement('button');
    copy.type = 'button';
    copy.className = 'copy-btn';
    copy.textContent = 'Copy';
    copy.addEventListener('click', () => void copyText(copy, (code ?? pre).textContent ?? ''));
    bar.append(label, copy);
    pre.replaceWith(wrap);
    wrap.append(bar, pre);
  }
}

/** Copies `text` and says so on the button for a moment (or that it could not). */
export async function copyText(button: HTMLButtonElement, text: string): Promise<void> {
  const label = button.textContent;
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = 'Copied';
  } catch {
    button.textContent = 'Copy failed';
  }
  setTimeout(() => (button.textContent = label), 1500);
}
