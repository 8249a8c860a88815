// StreamDecoder: incremental detokenization for streaming generation.
//
// It runs Llama-2's tokenizer.json decoder one id at a time:
//   Replace("▁" -> " ") on every piece that is not a byte piece,
//   ByteFallback: a run of consecutive byte pieces <0xNN> is decoded as one UTF-8 byte string,
//   Fuse: concatenation,
//   Strip: one leading space of the whole text (only with `continuation: false`).
// A byte run goes through a streaming TextDecoder, which emits a character only once all of its
// bytes have arrived and decodes exactly as the one-shot TextDecoder that the HF decoder applies
// to the whole run (same U+FFFD replacement, same BOM handling at a run's start). The run ends at
// the next non-byte piece or at flush(); bytes of an unfinished character then become U+FFFD.
// Hence: concat(push(id) for id in ids) + flush() === tok.decode(ids, { skipSpecial, continuation }).

import type { LlamaTokenizer } from './tokenizer.ts';

export interface StreamDecoderOptions {
  /** Drop special tokens (<s>, </s>, <unk>); they neither print nor end a byte run. Default true. */
  skipSpecial?: boolean;
  /**
   * The ids continue a prompt: keep the leading space of the first "▁word" piece (" Hello world").
   * With false the first leading space is stripped, as decode() does. Default true.
   */
  continuation?: boolean;
}

/** Byte value of a byte-fallback piece "<0xNN>", else -1. Same test as the HF ByteFallback decoder. */
function pieceByte(piece: string): number {
  if (piece.length !== 6 || !piece.startsWith('<0x') || !piece.endsWith('>')) return -1;
  const byte = parseInt(piece.slice(3, 5), 16);
  return Number.isNaN(byte) ? -1 : byte;
}

export class StreamDecoder {
  private readonly tok: LlamaTokenizer;
  private readonly skipSpecial: boolean;
  /** Streaming UTF-8 decoder of the current byte run; holds the bytes of an unfinished character. */
  private bytes = new TextDecoder();
  private inByteRun = false;
  /** True until the first non-empty text goes out, when `continuation` is false. */
  private stripPending: boolean;
  /** (1) scratch for one byte; avoids an allocation per byte piece. */
  private readonly one = new Uint8Array(1);

  constructor(tok: LlamaTokenizer, opts: StreamDecoderOptions = {}) {
    this.tok = tok;
    this.skipSpecial = opts.skipSpecial ?? true;
    this.stripPending = !(opts.continuation ?? true);
  }

  /** Feeds one generated id; returns the text it completes (possibly ""). */
  push(id: number): string {
    const checked = this.tok.checkId(id);
    if (this.skipSpecial && this.tok.isSpecial(checked)) return '';
    const piece = this.tok.idToPiece(checked);
    const byte = pieceByte(piece);
    if (byte >= 0) {
      this.one[0] = byte;
      this.inByteRun = true;
      return this.emit(this.bytes.decode(this.one, { stream: true }));
    }
    return this.emit(this.endByteRun() + piece.replaceAll('▁', ' '));
  }

  /** Ends the stream: returns held text, with an unfinished UTF-8 sequence as U+FFFD. */
  flush(): string {
    return this.emit(this.endByteRun());
  }

  private endByteRun(): string {
    if (!this.inByteRun) return '';
    this.inByteRun = false;
    // A call without {stream: true} flushes and resets the decoder for the next run.
    return this.bytes.decode();
  }

  private emit(text: string): string {
    if (this.stripPending && text.length > 0) {
      this.stripPending = false;
      if (text.startsWith(' ')) return text.slice(1);
    }
    return text;
  }
}
