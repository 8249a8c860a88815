// Server-sent events as the OpenAI API sends them: `data: <json>\n\n` per event, then
// `data: [DONE]\n\n`. JSON text never contains a raw newline, so one event is one line. Written by the
// server, read back by clients of it (bench serve, tests).

/** One SSE event carrying `value` as JSON. */
export function sseEvent(value: unknown): string {
  return `data: ${JSON.stringify(value)}\n\n`;
}

/** The last event of a stream. */
export const SSE_DONE = 'data: [DONE]\n\n';

/** Headers of an SSE response. */
export const SSE_HEADERS: Readonly<Record<string, string>> = {
  'Content-Type': 'text/event-stream; charset=utf-8',
  'Cache-Control': 'no-cache',
  Connection: 'keep-alive',
  'X-Accel-Buffering': 'no', // proxies (nginx) must not buffer the stream
};

/** The data of each event of such a stream, `[DONE]` included, as they arrive; anything but a data line is an error. */
export async function* sseData(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const reader = body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  for (;;) {
    const r = await reader.read();
    if (r.done) return;
    buf += dec.decode(r.value, { stream: true });
    let k;
    while ((k = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, k);
      buf = buf.slice(k + 2);
      if (!ev.startsWith('data: ')) throw new Error(`not an SSE data event: ${JSON.stringify(ev.slice(0, 80))}`);
      yield ev.slice(6);
    }
  }
}
