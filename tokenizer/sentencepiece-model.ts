// The piece strings of a SentencePiece model file (tokenizer.model), read straight from its protobuf:
//   message ModelProto    { repeated SentencePiece pieces = 1; ... }
//   message SentencePiece { optional string piece = 1; optional float score = 2; optional Type type = 3; }
// (sentencepiece_model.proto). Only the pieces are read: enough to recognise Llama-2's vocabulary.

/** Piece strings in id order. Throws on bytes that are not a protobuf of that shape. */
export function readSentencePiecePieces(bytes: Uint8Array, where = 'tokenizer.model'): string[] {
  const bad = (why: string): Error => new Error(`${where}: not a SentencePiece model (${why})`);
  const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }); // piece 30143 of Llama-2 is U+FEFF itself
  let pos = 0;
  const varint = (end: number): number => {
    let v = 0, mul = 1;
    for (;;) {
      if (pos >= end) throw bad('truncated varint');
      const b = bytes[pos++]!;
      v += (b & 0x7f) * mul;
      if (b < 0x80) return v;
      mul *= 128;
      if (mul > 2 ** 63) throw bad('varint too long');
    }
  };
  /** Skips one field's value of wire type `wt`, ending by `end`. */
  const skip = (wt: number, end: number): void => {
    if (wt === 0) varint(end);
    else if (wt === 1) pos += 8;
    else if (wt === 2) {
      const n = varint(end); // not `pos += varint()`: that would add to pos as it was before the length
      pos += n;
    }
    else if (wt === 5) pos += 4;
    else throw bad(`wire type ${wt}`);
    if (pos > end) throw bad('field past the end');
  };
  const pieces: string[] = [];
  while (pos < bytes.length) {
    const tag = varint(bytes.length);
    if (tag >>> 3 === 1 && (tag & 7) === 2) {
      const len = varint(bytes.length);
      const end = pos + len;
      if (end > bytes.length) throw bad('piece past the end');
      let piece: string | undefined;
      while (pos < end) {
        const t = varint(end);
        if (t >>> 3 === 1 && (t & 7) === 2) {
          const n = varint(end);
          if (pos + n > end) throw bad('piece string past the end');
          try {
            piece = utf8.decode(bytes.subarray(pos, pos + n));
          } catch {
            throw bad(`piece ${pieces.length} is not UTF-8`);
          }
          pos += n;
        } else skip(t & 7, end);
      }
      if (piece === undefined) throw bad(`piece ${pieces.length} has no string`);
      pieces.push(piece);
    } else skip(tag & 7, bytes.length);
  }
  return pieces;
}

/** The protobuf of a SentencePiece model holding `pieces` (scores and types left at their defaults): for tests. */
export function encodeSentencePiecePieces(pieces: readonly string[]): Uint8Array {
  const enc = new TextEncoder();
  const out: number[] = [];
  const varint = (v: number): void => {
    while (v >= 0x80) {
      out.push((v & 0x7f) | 0x80);
      v = Math.floor(v / 128);
    }
    out.push(v);
  };
  for (const p of pieces) {
    const s = enc.encode(p);
    const inner = 1 + lenOf(s.length) + s.length + 5; // piece, then score (field 2, fixed32 0)
    out.push(0x0a);
    varint(inner);
    out.push(0x0a);
    varint(s.length);
    for (const b of s) out.push(b);
    out.push(0x15, 0, 0, 0, 0);
  }
  // trainer_spec (field 2) {model_type (field 3): BPE (2)}, which the reader must skip
  out.push(0x12, 2, 0x18, 2);
  return Uint8Array.from(out);
}

function lenOf(v: number): number {
  let n = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}
