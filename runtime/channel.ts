// A single-consumer async queue: the scheduler pushes tokens, the request's generator pulls them.

export class Channel<T> implements AsyncIterable<T> {
  private items: T[] = [];
  private waiter: (() => void) | null = null;
  private closed = false;
  private error: unknown = null;

  push(v: T): void {
    this.items.push(v);
    this.wake();
  }
  close(): void {
    this.closed = true;
    this.wake();
  }
  fail(e: unknown): void {
    this.error = e ?? new Error('failed');
    this.closed = true;
    this.wake();
  }
  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }
  async *[Symbol.asyncIterator](): AsyncGenerator<T> {
    for (;;) {
      if (this.items.length) {
        yield this.items.shift()!;
        continue;
      }
      if (this.error) throw this.error;
      if (this.closed) return;
      await new Promise<void>((r) => (this.waiter = r));
    }
  }
}
