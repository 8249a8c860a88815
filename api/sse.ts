// Server-sent events as the OpenAI API sends them: `data: <json>\n\n` per event, then
// `data: [DONE]\n\n`. JSON text never contains a raw newline, so one event is one line.

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
