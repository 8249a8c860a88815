// Stop strings over streamed text. Text is released as soon as it cannot be part of a stop string:
// the matcher holds back only the longest tail that is a prefix of some stop string, so a stop
// string split across tokens is still caught and never emitted, not even in part.

export class StopMatcher {
  private held = '';
  private stopped = false;

  constructor(private readonly stops: readonly string[]) {}

  /** Adds text; returns what can be emitted now and whether a stop string was reached. */
  push(text: string): { text: string; stopped: boolean } {
    if (this.stopped) return { text: '', stopped: true };
    const buf = this.held + text;
    // The earliest occurrence of any stop string ends the output right before it.
    let cut = -1;
    for (const s of this.stops) {
      const at = buf.indexOf(s);
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut >= 0) {
      this.stopped = true;
      this.held = '';
      return { text: buf.slice(0, cut), stopped: true };
    }
    const keep = this.partialTail(buf);
    this.held = buf.slice(buf.length - keep);
    return { text: buf.slice(0, buf.length - keep), stopped: false };
  }

  /** At the end of generation: the held text is not a stop string after all. */
  flush(): string {
    const rest = this.stopped ? '' : this.held;
    this.held = '';
    return rest;
  }

  /** Length of the longest suffix of buf that is a proper prefix of a stop string. */
  private partialTail(buf: string): number {
    let best = 0;
    for (const s of this.stops) {
      for (let n = Math.min(s.length - 1, buf.length); n > best; n--) {
        if (buf.endsWith(s.slice(0, n))) {
          best = n;
          break;
        }
      }
    }
    return best;
  }
}
